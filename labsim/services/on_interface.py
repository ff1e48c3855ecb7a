"""`labsim serve` on a real interface: every service where the phones are.

With ``services.dhcp.interface`` named, the DHCP server answers broadcast clients on that
interface; the phones it leases to then reach the other services at an address on the
same segment. So every service whose ``address`` the scenario leaves at its default
(127.0.0.1) listens on the interface's address instead; an address the scenario writes
is kept as written.
"""

from __future__ import annotations

from labsim.net.udp import interface_ipv4

SERVICE_NAMES = ("dhcp", "tftp", "http", "ftp", "dns", "pnp")


def services_on_interface(spec):
    """(services, the interface's address or None): ``spec`` with default addresses moved
    to the DHCP interface's address. ValueError when the interface has no IPv4 address."""
    interface = spec.dhcp.interface if spec.dhcp is not None else None
    if not interface:
        return spec, None
    address = interface_ipv4(interface)
    moved = {}
    for name in SERVICE_NAMES:
        service = getattr(spec, name, None)
        if service is not None and "address" not in service.model_fields_set:
            moved[name] = service.model_copy(update={"address": address})
    return spec.model_copy(update=moved), address

"""The lab's safety rule: phones only ever reach loopback addresses.

labsim sends nothing to any address outside 127.0.0.0/8 and ::1 unless it runs inside a
network namespace it made itself. A provisioning URL that names another address is
refused here, before any packet leaves, and the phone records why.
"""

from __future__ import annotations

import ipaddress

LOCAL_NAMES = {"localhost": "127.0.0.1", "localhost.localdomain": "127.0.0.1", "ip6-localhost": "::1"}


class NotLoopback(ValueError):
    pass


def loopback_address(host: str) -> str:
    """The loopback address to use for ``host``, or NotLoopback."""
    host = host.strip("[]").lower()
    if host in LOCAL_NAMES:
        return LOCAL_NAMES[host]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise NotLoopback(f"host name {host!r} cannot be resolved in a loopback lab (use an address in 127.0.0.0/8)") from None
    if not address.is_loopback:
        raise NotLoopback(f"{host} is outside the loopback lab (127.0.0.0/8, ::1): refused, nothing sent")
    return str(address)

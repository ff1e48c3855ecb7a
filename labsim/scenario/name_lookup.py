"""Host names a scenario points the phones at that the lab cannot look up, said before a
run starts.

The phones look a URL's host name up through the lab's DNS only (``services.dns``, or
``network.dns_server``; never the machine's own resolver: transport/dns_lookup.py). A
provisioning server named by host name in DHCP option 66, 159 or 160, in another
option's URL, in a PnP URL or in a phone's pre-loaded flash therefore needs

- a DNS server at all: without one, every download from it is refused;
- with ``services.dns``, an A record for it (or a CNAME to one): otherwise every lookup
  fails and every download from it has status ``dns``;
- the lab's DNS among the DNS servers the lease gives (DHCP option 6; labsim's DHCP gives
  the lab's DNS when the scenario sets no option 6): a phone asks only those.

A lab may want exactly that (students find why the phones cannot resolve the server), so
these are notes, like scenario.sizing's, not refusals: ``labsim validate`` prints them
and ``labsim run`` prints them before the fleet starts and keeps them in the report's
``notes``. With ``network.dns_server`` (a real DNS server) labsim cannot know its records
and says nothing.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from labsim.wire.dhcp import OPTION_DNS_SERVERS
from labsim.wire.dhcp_options import OPTION_NAMES

# Options whose whole value is a provisioning server (a bare host is a TFTP server's).
SERVER_OPTIONS = frozenset({66, 159, 160})
_URL = re.compile(r"\b(?:https?|tftp|ftp)://[^\s,;\"'<>]+", re.IGNORECASE)
# Names the phones never look up (transport.guard answers them itself).
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def host_of(value: str, *, bare_is_server: bool) -> str | None:
    """The host name ``value`` points at, or None (an address, or no host).
    ``bare_is_server``: a value without ``scheme://`` is a server (option 66's TFTP host)."""
    value = value.strip().strip("\x00").strip()
    if "://" not in value:
        if not bare_is_server or not value:
            return None
        value = "tftp://" + value
    try:
        host = urlsplit(value).hostname or ""
    except ValueError:
        return None
    if not host or host.lower() in LOCAL_NAMES or _is_address(host):
        return None
    return host.lower().rstrip(".")


def _option_code(key) -> int | None:
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    if isinstance(key, str):
        return int(key) if key.isdigit() else OPTION_NAMES.get(key)
    return None


def _dhcp_option_sets(data: dict) -> list[tuple[tuple, dict]]:
    """(path, options) of labsim's DHCP: its global options and each class's."""
    services = data.get("services") if isinstance(data.get("services"), dict) else {}
    dhcp = services.get("dhcp") if isinstance(services.get("dhcp"), dict) else {}
    sets = [(("services", "dhcp", "options"), dhcp.get("options"))]
    classes = dhcp.get("classes") if isinstance(dhcp.get("classes"), list) else []
    sets += [(("services", "dhcp", "classes", index, "options"), c.get("options"))
             for index, c in enumerate(classes) if isinstance(c, dict)]
    return [(path, options) for path, options in sets if isinstance(options, dict)]


def named_hosts(data: dict) -> list[tuple[tuple, str]]:
    """(path, host name) for each place of the raw scenario ``data`` that points the
    phones at a server by name."""
    found: list[tuple[tuple, str]] = []

    def option_hosts(path: tuple, options: dict) -> None:
        for key, value in options.items():
            if not isinstance(value, str):
                continue
            if _option_code(key) in SERVER_OPTIONS:
                host = host_of(value, bare_is_server=True)
                if host:
                    found.append((path + (key,), host))
                continue
            for url in _URL.findall(value):
                host = host_of(url, bare_is_server=False)
                if host:
                    found.append((path + (key,), host))

    for path, options in _dhcp_option_sets(data):
        option_hosts(path, options)
    services = data.get("services") if isinstance(data.get("services"), dict) else {}
    pnp = services.get("pnp") if isinstance(services.get("pnp"), dict) else {}
    urls = [(("services", "pnp", "url"), pnp.get("url"))]
    for key in ("per_vendor", "per_model"):
        if isinstance(pnp.get(key), dict):
            urls += [(("services", "pnp", key, name), url) for name, url in pnp[key].items()]
    fleets = data.get("fleets") if isinstance(data.get("fleets"), list) else []
    for index, fleet in enumerate(fleets):
        flash = fleet.get("flash") if isinstance(fleet, dict) else None
        settings = flash.get("settings") if isinstance(flash, dict) else None
        if isinstance(settings, dict):
            urls += [(("fleets", index, "flash", "settings", key), value) for key, value in settings.items()]
    for path, value in urls:
        if isinstance(value, str):
            for url in _URL.findall(value):
                host = host_of(url, bare_is_server=False)
                if host:
                    found.append((path, host))
    return found


def _listed_addresses(value) -> list[str]:
    """An option 6 as written: one address, or a list of them."""
    return [str(part).strip() for part in value] if isinstance(value, list) else [str(value).strip()]


def name_server_notes(data: dict, dns_address: str) -> list[tuple[tuple, str]]:
    """(path, note) for each option 6 of labsim's DHCP (global or a class's) that gives
    the phones DNS servers without the lab's DNS at ``dns_address``: they ask those,
    hear nothing, and no host name resolves (labsim sends nowhere but the lab's DNS)."""
    notes = []
    for path, options in _dhcp_option_sets(data):
        for key, value in options.items():
            addresses = _listed_addresses(value) if _option_code(key) == OPTION_DNS_SERVERS else None
            if addresses and dns_address not in addresses:
                notes.append((path + (key,), f"gives the phones {', '.join(addresses)} as their DNS servers, not the "
                                              f"lab's DNS {dns_address}: they ask those and hear nothing, so no host "
                                              "name resolves (without option 6, labsim's DHCP gives the lab's DNS)"))
    return notes


def lookup_notes(data: dict, scenario) -> list[tuple[tuple, str]]:
    """(path, note) for each host name the phones are pointed at that the lab cannot
    look up. ``data``: the raw file (for the places as written); ``scenario``: the same,
    loaded. Nothing with network.dns_server, whose records labsim cannot know."""
    if scenario.network.dns_server is not None:
        return []
    hosts = named_hosts(data)
    if not hosts:
        return []
    dns = scenario.services.dns
    if dns is None:
        return [(path, f"names the host {host!r}, and the lab has no DNS server (services.dns or "
                       "network.dns_server): the phones cannot look it up, and every download from it will be "
                       "refused") for path, host in hosts]
    blocked = name_server_notes(data, dns.address)
    if blocked:  # no name resolves at all: that is the note, not each name's
        return blocked
    from dnslib import QTYPE, DNSLabel

    from labsim.wire.dns_records import Zone, dns_name_problem

    zone = Zone(dns.record_configs())
    notes = []
    for path, host in hosts:
        problem = dns_name_problem(host)
        if problem is not None:
            notes.append((path, f"names the host {host!r}, which is no DNS name ({problem}): no lookup of it "
                                "can succeed, and every download from it will fail with status dns"))
            continue
        _, answers = zone.resolve(DNSLabel(host), QTYPE.A)
        if not any(answer.rtype == QTYPE.A for answer in answers):
            notes.append((path, f"names the host {host!r}, and services.dns has no A record for it (nor a CNAME "
                                "to one): every lookup will fail, and every download from it will fail with "
                                "status dns"))
    return notes

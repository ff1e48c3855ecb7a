"""The lab's safety rule: phones only ever reach the addresses they are allowed to.

By default that is loopback: labsim sends nothing to any address outside 127.0.0.0/8
and ::1. A scenario may name a real interface and an allow-list
(``network: {interface: eth1, allow: [10.20.0.0/24]}``); then the phones may reach the
allow-list's addresses and nothing else. Either way a provisioning URL that names
another address is refused here, before any packet leaves, and the phone records why.
"""

from __future__ import annotations

import functools
import ipaddress

LOCAL_NAMES = {"localhost": "127.0.0.1", "localhost.localdomain": "127.0.0.1", "ip6-localhost": "::1"}
LOOPBACK_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class NotLoopback(ValueError):
    """A destination the lab may not send to (the name is older than the allow-list)."""


NotAllowed = NotLoopback


@functools.lru_cache(maxsize=4096)
def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an IP address, or None when it is not one. Cached: every phone of a
    fleet names the same few servers, and ``ipaddress`` parses in pure Python (measured:
    ~10 % of a 5,000-phone storm's CPU was parsing the same server address again)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def loopback_address(host: str) -> str:
    """The loopback address to use for ``host``, or NotLoopback."""
    host = host.strip("[]").lower()
    if host in LOCAL_NAMES:
        return LOCAL_NAMES[host]
    address = parse_ip(host)
    if address is None:
        raise NotLoopback(f"host name {host!r} cannot be resolved in a loopback lab (use an address in 127.0.0.0/8)") from None
    if not address.is_loopback:
        raise NotLoopback(f"{host} is outside the loopback lab (127.0.0.0/8, ::1): refused, nothing sent")
    return str(address)


class AllowList:
    """The destinations of a real-network run: ``network.allow`` (addresses and subnets).

    ``check(host)`` returns the address to send to or raises NotAllowed naming the key
    and the address. Loopback stays reachable only when the list includes it."""

    def __init__(self, allow: list[str], key: str = "network.allow"):
        self.networks = [ipaddress.ip_network(item, strict=False) for item in allow]
        self.key = key

    def describe(self) -> str:
        return ", ".join(str(network) for network in self.networks)

    def allows(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def check(self, host: str) -> str:
        host = host.strip("[]").lower()
        try:
            address = ipaddress.ip_address(LOCAL_NAMES.get(host, host))
        except ValueError:
            raise NotAllowed(f"host name {host!r} has no address here (it is resolved only through the lab's DNS)") from None
        if not any(address in network for network in self.networks):
            raise NotAllowed(f"{address} is outside {self.key} ({self.describe()}): refused, nothing sent")
        return str(address)

"""The rules of ``network:`` that decide where a run may send, checked on the raw data
so that ``labsim validate`` and ``labsim run`` refuse exactly the same files.

Loopback is the default: without BOTH ``network.interface`` and ``network.allow``,
every server the fleet is pointed at must be a loopback address. With both, every
server named in ``network`` must be inside the allow-list. Each problem is placed at
the key that causes it and names the key and the address.
"""

from __future__ import annotations

import ipaddress

# The keys of network: that name a server the fleet sends to, and their default ports.
SERVER_KEYS = ("dhcp_server", "dns_server", "pnp_server")
LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")
REAL_NETWORK_HINT = "to reach a real server, name network.interface and network.allow (README: Testing your own servers)"


def network_problems(network: dict) -> list[tuple[tuple, str]]:
    """(path, message) for each way ``network`` would send somewhere it may not."""
    interface = network.get("interface")
    allow = network.get("allow")
    problems: list[tuple[tuple, str]] = []
    if interface is not None and not allow:
        where = ("network", "allow") if "allow" in network else ("network", "interface")
        return [(where, f"network.interface {interface!r} needs network.allow: the addresses or subnets the phones "
                        "may reach (e.g. allow: [10.20.0.0/24]); nothing else is ever sent to")]
    if allow and interface is None:
        return [(("network", "allow"), "network.allow needs network.interface: the interface the phones use "
                                       "(without both, labsim sends to loopback only)")]
    networks = _networks(allow) if interface is not None else None
    if networks is None and interface is not None:
        return []  # a malformed allow item: the schema reports it at the item
    for key in SERVER_KEYS + (() if interface is not None else ("relay_address",)):
        host = _host_of(network.get(key))
        if host is None:
            continue
        if interface is None and not host.is_loopback:
            problems.append((("network", key), f"{host} is outside the loopback lab (127.0.0.0/8); "
                                               f"{REAL_NETWORK_HINT}"))
        elif interface is not None and not any(host in net for net in networks):
            problems.append((("network", key), f"{host} is outside network.allow "
                                               f"({', '.join(map(str, networks))}): refused, nothing would be sent"))
    if interface == "lo" and networks:
        for index, net in enumerate(networks):
            if not (net.version == 4 and net.subnet_of(LOOPBACK_V4)) and str(net) != "::1/128":
                problems.append((("network", "allow", index), f"{net} is not on interface 'lo' "
                                                              "(loopback only: 127.0.0.0/8)"))
    if interface is not None and network.get("dhcp_mode") == "relay" and network.get("dhcp_server") is None:
        problems.append((("network", "dhcp_mode"), "network.dhcp_mode relay needs network.dhcp_server: the server "
                                                   "the fleet relays to"))
    return problems


def _networks(allow) -> list | None:
    if not isinstance(allow, list):
        return None
    try:
        return [ipaddress.ip_network(str(item), strict=False) for item in allow]
    except ValueError:
        return None


def _host_of(value) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address in ``HOST`` or ``HOST:PORT``; None when absent or not an address (the
    schema reports that)."""
    if not isinstance(value, str):
        return None
    try:
        return ipaddress.ip_address(value.strip().partition(":")[0])
    except ValueError:
        return None

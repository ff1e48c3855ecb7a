"""What a scenario cannot have in virtual time (``clock: virtual`` in the file, or
``labsim run --clock virtual``): the parts that need real sockets. A file that says
``clock: virtual`` and has one is refused by ``labsim validate`` and ``labsim run`` alike,
at its line; ``--clock virtual`` on the command line refuses it before the run starts.
"""

from __future__ import annotations


def virtual_time_problems(scenario) -> list[tuple[tuple, str]]:
    """(the key's path, why) for each part of ``scenario`` a run in virtual time cannot do.
    Every service labsim has has an in-memory form (labsim/virtual/lab.py); what needs
    real sockets is an external server or a network interface."""
    problems = []
    network = scenario.network
    if network.dhcp_server:
        problems.append((("network", "dhcp_server"), "an external DHCP server needs real sockets"))
    if network.interface:
        problems.append((("network", "interface"), "a real network interface needs real sockets"))
    for key in ("dns_server", "pnp_server"):
        if getattr(network, key):
            problems.append((("network", key), "an external server needs real sockets"))
    if network.http_connections == "pooled":
        problems.append((("network", "http_connections"), "a fleet's pool of connections is a sockets' matter "
                         "(in virtual time every request is its own exchange)"))
    for name in ("dhcp", "tftp", "http", "ftp", "dns", "pnp"):
        if getattr(getattr(scenario.services, name, None), "interface", None):
            problems.append((("services", name, "interface"), "a network interface needs real sockets"))
    return problems

"""What a scenario cannot have in virtual time (``clock: virtual`` in the file, or
``labsim run --clock virtual``): the parts that need real sockets. A file that says
``clock: virtual`` and has one is refused by ``labsim validate`` and ``labsim run`` alike,
at its line; ``--clock virtual`` on the command line refuses it before the run starts.
"""

from __future__ import annotations

# Services with an in-memory form (labsim/virtual/lab.py): every one labsim has.
SUPPORTED_SERVICES = ("dhcp", "tftp", "http", "ftp", "dns", "pnp")


def virtual_time_problems(scenario) -> list[tuple[tuple, str]]:
    """(the key's path, why) for each part of ``scenario`` a run in virtual time cannot do."""
    problems = []
    network = scenario.network
    if network.dhcp_server:
        problems.append((("network", "dhcp_server"), "an external DHCP server needs real sockets"))
    if getattr(network, "interface", None):
        problems.append((("network", "interface"), "a real network interface needs real sockets"))
    for key in ("dns_server", "pnp_server"):
        if getattr(network, key, None):
            problems.append((("network", key), "an external server needs real sockets"))
    services = scenario.services
    for name in ("dhcp", "tftp", "http", "ftp", "dns", "pnp"):
        spec = getattr(services, name, None)
        if spec is None:
            continue
        if name not in SUPPORTED_SERVICES:
            problems.append((("services", name), "has no in-memory form yet: run it with the real clock"))
        if getattr(spec, "interface", None):
            problems.append((("services", name, "interface"), "a network interface needs real sockets"))
    return problems

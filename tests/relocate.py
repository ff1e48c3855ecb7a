"""A bundled scenario on ports nobody else uses.

The bundled scenarios listen on fixed ports (DHCP 6767, TFTP 6969, HTTP 8080 ...), which
a `labsim serve` of the quickstart a user left running also holds. Tests run a copy whose
every service port (and every mention of it: DHCP options, provisioning files) is a
fresh one from tests.peers, so they never meet such a process.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from labsim.scenario.loader import load_scenario
from tests.peers import free_port_udp_and_tcp, free_tcp_port, free_udp_port

# What each service listens on: a port must be free for that (DNS takes both).
_PICKERS = {"dhcp": free_udp_port, "tftp": free_udp_port, "pnp": free_udp_port, "http": free_tcp_port,
            "ftp": free_tcp_port, "dns": free_port_udp_and_tcp}


def relocated(scenario: str | Path, into: Path, text: str | None = None) -> tuple[Path, dict[int, int]]:
    """(path of the copy in ``into``, {old port: new port}). ``text``: the scenario's
    text with a test's edits, instead of the file's own."""
    scenario = Path(scenario)
    loaded = load_scenario(str(scenario)).scenario
    services = loaded.services
    moves = {}
    for name, pick in _PICKERS.items():
        spec = getattr(services, name, None)
        if spec is not None and spec.port:
            moves[spec.port] = pick()
    into.mkdir(parents=True, exist_ok=True)
    body = moved_ports(scenario.read_text() if text is None else text, moves)
    directory = loaded.provisioning.directory
    if directory:  # relative to the scenario file, so it goes beside the copy
        folder = scenario.parent / directory
        shutil.copytree(folder, into / directory, dirs_exist_ok=True)
        for path in (into / directory).rglob("*"):
            try:
                path.write_text(moved_ports(path.read_text(encoding="utf-8"), moves), encoding="utf-8")
            except (UnicodeDecodeError, IsADirectoryError):
                pass  # an encrypted file or a folder: no port to move in it
    copy = into / scenario.name
    copy.write_text(body)
    return copy, moves


def moved_ports(text: str, moves: dict[int, int]) -> str:
    for old, new in moves.items():
        text = re.sub(rf"(?<![\d.]){old}(?!\d)", str(new), text)
    return text

"""A two-namespace lab on a Linux bridge, for labsim's phones on a real segment.

    [server namespace]  lss<tag> 198.18.N.1/24 --+
                                                 +-- bridge lsb<tag> (the test's namespace, no address)
    [phones namespace]  lsp<tag> 198.18.N.2/24 --+

Real servers (Kea, dnsmasq, tftpd-hpa, nginx, labsim serve) run in the server namespace,
labsim's fleet in the phones namespace; a capture on the bridge sees what crosses the
segment. Every address is in 198.18.0.0/15 (the benchmarking range), no namespace has a
route anywhere else, and namespaces, links and the bridge are deleted in ``finally``.
Needs root and ``ip``: skips on a laptop, fails under CI=true (tests/peers.py).
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

from tests.interop.netns import run_ip
from tests.peers import require_binary, require_root


@dataclass
class BridgeLab:
    server_ns: str
    phones_ns: str
    bridge: str
    server_if: str  # inside server_ns
    phones_if: str  # inside phones_ns
    prefix: str  # "198.18.N"

    @property
    def server_ip(self) -> str:
        return f"{self.prefix}.1"

    @property
    def phones_ip(self) -> str:
        return f"{self.prefix}.2"

    @property
    def subnet(self) -> str:
        return f"{self.prefix}.0/24"

    def in_server(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.server_ns, *args]

    def in_phones(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.phones_ns, *args]


@contextlib.contextmanager
def bridge_lab():
    require_root("network namespaces, veth pairs and a bridge")
    require_binary("ip")
    tag = f"{os.getpid() % 1000:03d}{random.randrange(100):02d}"
    lab = BridgeLab(f"labsim-s-{tag}", f"labsim-p-{tag}", f"lsb{tag}", f"lss{tag}", f"lsp{tag}",
                    f"198.18.{random.randrange(1, 250)}")
    outer = {lab.server_if: f"lso{tag}", lab.phones_if: f"lsq{tag}"}
    try:
        run_ip("link", "add", lab.bridge, "type", "bridge")
        run_ip("link", "set", lab.bridge, "up")
        for namespace, inner, address in ((lab.server_ns, lab.server_if, lab.server_ip),
                                          (lab.phones_ns, lab.phones_if, lab.phones_ip)):
            run_ip("netns", "add", namespace)
            run_ip("link", "add", outer[inner], "type", "veth", "peer", "name", inner)
            run_ip("link", "set", inner, "netns", namespace)
            run_ip("link", "set", outer[inner], "master", lab.bridge, "up")
            run_ip("-n", namespace, "addr", "add", f"{address}/24", "dev", inner)
            run_ip("-n", namespace, "link", "set", inner, "up")
            run_ip("-n", namespace, "link", "set", "lo", "up")
        yield lab
    finally:
        for link in outer.values():
            run_ip("link", "del", link, check=False)
        run_ip("link", "del", lab.bridge, check=False)
        for namespace in (lab.server_ns, lab.phones_ns):
            run_ip("netns", "del", namespace, check=False)
        listed = run_ip("netns", "list", check=False).stdout
        assert lab.server_ns not in listed and lab.phones_ns not in listed

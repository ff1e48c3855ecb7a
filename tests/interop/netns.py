"""A network namespace joined to the host by a veth pair, for tests of labsim's services on
a real link (broadcast DHCP, the PnP multicast group). Needs root and ``ip``; without
them the test skips locally and fails under CI=true (tests/peers.py).

Traffic stays inside the pair: the addresses (a random 198.18.N.0/24, in the benchmarking
range 198.18.0.0/15 that nothing routes) are put on the veth only, and the namespace and
links are deleted in ``finally``, also when the test fails.

Use it by importing the fixture into the test module::

    from tests.interop.netns import VethLab, veth_lab  # noqa: F401 (a fixture)
"""

from __future__ import annotations

import os
import random
import subprocess
from dataclasses import dataclass

import pytest

from tests.peers import require_binary, require_root


@dataclass
class VethLab:
    namespace: str
    host_if: str  # the server's side, in the host's namespace; it has address {prefix}.1
    client_if: str  # inside the namespace; no address unless a test gives it one
    prefix: str  # "198.18.N" (198.18.0.0/15: the benchmarking range, never routed out)


def run_ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``ip ARGS``; AssertionError with ip's message when it fails and ``check``."""
    ip = require_binary("ip")
    done = subprocess.run([ip, *args], capture_output=True, text=True, timeout=10)
    if check and done.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@pytest.fixture
def veth_lab():
    require_root("network namespaces and veth pairs")
    require_binary("ip")
    tag = f"{os.getpid() % 1000:03d}{random.randrange(100):02d}"
    lab = VethLab(f"labsim-t-{tag}", f"lsh{tag}", f"lsn{tag}", f"198.18.{random.randrange(1, 250)}")
    try:
        run_ip("netns", "add", lab.namespace)
        run_ip("link", "add", lab.host_if, "type", "veth", "peer", "name", lab.client_if)
        run_ip("link", "set", lab.client_if, "netns", lab.namespace)
        run_ip("addr", "add", f"{lab.prefix}.1/24", "dev", lab.host_if)
        run_ip("link", "set", lab.host_if, "up")
        run_ip("-n", lab.namespace, "link", "set", lab.client_if, "up")
        run_ip("-n", lab.namespace, "link", "set", "lo", "up")
        yield lab
    finally:
        # Deleting one end of a veth pair deletes both; the namespace goes last.
        run_ip("link", "del", lab.host_if, check=False)
        run_ip("netns", "del", lab.namespace, check=False)
        assert lab.namespace not in run_ip("netns", "list", check=False).stdout

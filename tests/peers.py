"""Finding the real third-party peers that interop tests run against.

A peer that is missing skips the test on a laptop, but under CI (``CI=true``) a
missing peer is a failure: a skipped interop test in CI would hide a broken install.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import time

import pytest

SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Skip locally, fail in CI."""
    if in_ci():
        pytest.fail(f"interop peer unavailable under CI: {reason}")
    pytest.skip(reason)


def require_binary(name: str) -> str:
    """Path of a peer's executable, looked up on PATH and in the sbin folders."""
    path = shutil.which(name) or next(
        (os.path.join(d, name) for d in SBIN_DIRS if os.access(os.path.join(d, name), os.X_OK)),
        None,
    )
    if path is None:
        missing(f"{name} is not installed (bash .ci/install-peers installs it)")
    return path


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        missing(f"needs root: {why}")


# Ports for servers a test starts in another process (labsim run/serve, in.tftpd, Kea ...).
# Not bind(0): that hands out a port from the kernel's ephemeral range, which the kernel
# then hands to the next socket anyone binds to port 0 or connects from — thousands of
# them in a phone storm — so between the pick and the child's bind the port was often
# taken ("in.tftpd exited at start (71)", "Address already in use"). Ports below the
# ephemeral range are never handed out implicitly: only a process that asks for that
# number can hold one. Each is handed out once per test process, from a random start,
# and never one of the bundled scenarios' defaults (a `labsim serve` a user left running).
_BUNDLED_DEFAULTS = {67, 68, 69, 2121, 5060, 5070, 5353, 5354, 6767, 6969, 8008, 8080, 8443}
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_range() -> tuple[int, int]:
    """Below the ephemeral range; under pytest-xdist (``-n``) each worker process takes
    its own slice, so two workers never pick the same number for their children."""
    low, high = 10000, max(12000, _ephemeral_low())
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if worker.startswith("gw") and worker[2:].isdigit() and count > 1:
        index = int(worker[2:]) % count
        size = (high - low) // count
        low, high = low + index * size, low + (index + 1) * size
    return low, high


_RANGE = _port_range()
_next = [random.randrange(*_RANGE)]


def _free_port(host: str, kinds: tuple[int, ...]) -> int:
    low, high = _RANGE
    for _ in range(high - low):
        port = _next[0]
        _next[0] = low + (port + 1 - low) % (high - low)
        if port in _handed_out or port in _BUNDLED_DEFAULTS:
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sockets = [socket.socket(family, kind) for kind in kinds]
        try:
            for sock in sockets:
                sock.bind((host, port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        _handed_out.add(port)
        return port
    raise OSError(f"no free port on {host} in {low}-{high}")


def free_udp_port(host: str = "127.0.0.1") -> int:
    return _free_port(host, (socket.SOCK_DGRAM,))


def free_tcp_port(host: str = "127.0.0.1") -> int:
    return _free_port(host, (socket.SOCK_STREAM,))


def free_port_udp_and_tcp(host: str = "127.0.0.1") -> int:
    """A port number free for both UDP and TCP on ``host`` (a DNS server binds both)."""
    return _free_port(host, (socket.SOCK_DGRAM, socket.SOCK_STREAM))


def udp_bound(port: int, hosts=("127.0.0.1", "0.0.0.0")) -> bool:
    """Whether a UDP socket of this network namespace is bound to ``port`` on one of
    ``hosts`` (IPv4, from /proc/net/udp: a server that only listens cannot be asked)."""
    wanted = {f"{socket.inet_aton(host)[::-1].hex().upper()}:{port:04X}" for host in hosts}
    with open("/proc/net/udp", encoding="ascii") as table:
        next(table)  # the header
        return any(line.split()[1] in wanted for line in table)


def wait_for_udp(port: int, timeout: float = 10.0, hosts=("127.0.0.1", "0.0.0.0")) -> None:
    """Until a peer has bound its UDP ``port`` (a fixed sleep is too short on a loaded
    machine: the phones' first DISCOVERs or RRQs are lost and they back off for seconds)."""
    deadline = time.monotonic() + timeout
    while not udp_bound(port, hosts):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing bound to UDP port {port} after {timeout}s")
        time.sleep(0.02)


def wait_for_tcp(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")

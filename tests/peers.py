"""Finding the real third-party peers that interop tests run against.

A peer that is missing skips the test on a laptop, but under CI (``CI=true``) a
missing peer is a failure: a skipped interop test in CI would hide a broken install.
"""

from __future__ import annotations

import os
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


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_port_udp_and_tcp(host: str = "127.0.0.1", attempts: int = 50) -> int:
    """A port number free for both UDP and TCP on ``host`` (a DNS server binds both).

    ``free_udp_port`` alone may hand out a number whose TCP twin is taken: both sockets
    are held at once here, so the answer was free for both at that moment."""
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise OSError(f"no port free for both UDP and TCP on {host} after {attempts} tries")


def wait_for_tcp(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")

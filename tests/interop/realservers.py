"""Start real third-party servers on loopback for interop tests, and always stop them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time

from tests.peers import require_binary, require_root, wait_for_tcp


@contextlib.contextmanager
def running(args: list[str], *, env=None, ready=None, name: str = "peer"):
    """Run a peer in the foreground of its own process group; kill the group on exit."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        if ready is not None:
            ready()
        else:
            time.sleep(0.5)
        if proc.poll() is not None:
            output = proc.stdout.read().decode(errors="replace")
            raise RuntimeError(f"{name} exited at start ({proc.returncode}): {output[-2000:]}")
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()


def kea_config(tmp, *, subnet: str, pool: str, relay: str, options: list[dict]) -> str:
    config = {
        "Dhcp4": {
            "interfaces-config": {"interfaces": ["lo"], "dhcp-socket-type": "udp"},
            "lease-database": {"type": "memfile", "persist": False},
            "valid-lifetime": 3600,
            "subnet4": [{
                "id": 1, "subnet": subnet, "pools": [{"pool": pool}],
                "relay": {"ip-addresses": [relay]},
                "option-data": options,
            }],
            "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "WARN"}],
        }
    }
    path = os.path.join(tmp, "kea-dhcp4.json")
    with open(path, "w") as handle:
        json.dump(config, handle)
    return path


@contextlib.contextmanager
def kea(tmp, **config):
    """kea-dhcp4 on lo, answering the fleet's relay (Kea 2.2 answers relays on port 67)."""
    binary = require_binary("kea-dhcp4")
    require_root("Kea listens on port 67 and answers the relay on port 67")
    path = kea_config(str(tmp), **config)
    env = dict(os.environ, KEA_PIDFILE_DIR=str(tmp), KEA_LOCKFILE_DIR=str(tmp), KEA_LOG_CHECK_VERBOSE="0")
    with running([binary, "-c", path], env=env, name="kea-dhcp4") as proc:
        time.sleep(1.0)
        if proc.poll() is not None:
            raise RuntimeError("kea-dhcp4 exited: " + proc.stdout.read().decode(errors="replace")[-2000:])
        yield proc


@contextlib.contextmanager
def tftpd_hpa(root: str, port: int):
    binary = require_binary("in.tftpd")
    require_root("in.tftpd drops privileges to a user")
    with running([binary, "--foreground", "--listen", "--address", f"127.0.0.1:{port}", "--user", "root",
                  "--secure", root], name="in.tftpd") as proc:
        yield proc


@contextlib.contextmanager
def nginx(root: str, port: int, tmp):
    binary = require_binary("nginx")
    conf = os.path.join(str(tmp), "nginx.conf")
    with open(conf, "w") as handle:
        # pytest's temporary folders are private to root: let the worker read them.
        user = "user root;" if os.geteuid() == 0 else ""
        handle.write(f"""
{user}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000;
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
""")
    with running([binary, "-c", conf, "-g", "daemon off;"], name="nginx",
                 ready=lambda: wait_for_tcp("127.0.0.1", port)) as proc:
        yield proc

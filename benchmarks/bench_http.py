"""labsim's HTTP server against nginx: 4 KB GETs over keep-alive connections.

    python benchmarks/bench_http.py [--seconds 5] [--connections 16] [--driver wrk|python]

Both servers run as subprocesses on 127.0.0.1 serving the same folder; both are one
process (nginx: ``worker_processes 1``, access log buffered to a file; labsim: one
reactor, in-memory access log). The same load driver hits each in turn: ``wrk``
(``apt-get install wrk``) when present, else a small single-process Python driver
(selectors, one outstanding request per connection), which tops out well below nginx
and so flatters the ratio: prefer wrk.
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.peers import free_tcp_port, wait_for_tcp  # noqa: E402

FILE_NAME = "file4k.cfg"
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {tmp}/nginx-access.log combined buffer=64k;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def start_labsim(root: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "labsim.services.http", "--root", root, "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    match = re.search(r":(\d+)/", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"labsim http did not start: {line!r}")
    return proc, int(match.group(1))


def start_nginx(root: str, tmp: str) -> tuple[subprocess.Popen, int]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_tcp_port()
    conf = os.path.join(tmp, "nginx.conf")
    Path(conf).write_text(NGINX_CONF.format(tmp=tmp, port=port, root=root))
    proc = subprocess.Popen([nginx, "-c", conf, "-p", tmp], stderr=subprocess.DEVNULL)
    wait_for_tcp("127.0.0.1", port)
    return proc, port


def run_wrk(port: int, seconds: float, connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"http://127.0.0.1:{port}/{FILE_NAME}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error responses:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def run_python(port: int, seconds: float, connections: int) -> float:
    """Keep-alive GETs on ``connections`` sockets, one outstanding request on each."""
    request = f"GET /{FILE_NAME} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(connections):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        s.sendall(request)
        sel.register(s, selectors.EVENT_READ, bytearray())
        socks.append(s)
    done = 0
    deadline = time.monotonic() + seconds
    start = time.monotonic()
    try:
        while time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                buf = key.data
                chunk = key.fileobj.recv(65536)
                if not chunk:
                    raise RuntimeError("server closed a keep-alive connection")
                buf += chunk
                while True:  # every complete response in the buffer
                    head_end = buf.find(b"\r\n\r\n")
                    if head_end < 0:
                        break
                    if not buf.startswith(b"HTTP/1.1 200"):
                        raise RuntimeError(f"unexpected response {bytes(buf[:40])!r}")
                    length = int(re.search(rb"(?i)content-length:\s*(\d+)", buf[:head_end]).group(1))
                    end = head_end + 4 + length
                    if len(buf) < end:
                        break
                    del buf[:end]
                    done += 1
                    key.fileobj.sendall(request)
    finally:
        for s in socks:
            sel.unregister(s)
            s.close()
    return done / (time.monotonic() - start)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="alternate the servers; keep each one's best")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--driver", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python")
    args = parser.parse_args()
    drive = run_wrk if args.driver == "wrk" else run_python

    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        os.chmod(tmp, 0o755)  # nginx's worker drops root and must read the files
        root = os.path.join(tmp, "root")
        os.makedirs(root, mode=0o755)
        Path(root, FILE_NAME).write_bytes(os.urandom(4096))
        servers = {"labsim": lambda: start_labsim(root), "nginx": lambda: start_nginx(root, tmp)}
        results = {name: [] for name in servers}
        # The machine is shared: alternate rounds and keep each server's best, the run
        # least disturbed by other work.
        for _ in range(args.rounds):
            for name, starter in servers.items():
                proc, port = starter()
                try:
                    drive(port, 1, args.connections)  # warm-up: caches, connection setup
                    results[name].append(drive(port, args.seconds, args.connections))
                finally:
                    stop(proc)
        for name, runs in results.items():
            print(f"{name:7s} best {max(runs):8.0f} req/s   runs: {', '.join(f'{r:.0f}' for r in runs)}")
        results = {name: max(runs) for name, runs in results.items()}
    ratio = results["labsim"] / results["nginx"]
    print(f"driver {args.driver}, {args.connections} keep-alive connections, 4 KB file: labsim/nginx = {ratio:.2f} (best of {args.rounds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""labsim's HTTP server against nginx: 4 KB GETs over keep-alive connections; and the
phones' HTTP client (labsim's lean client against twisted.web's Agent).

    python benchmarks/bench_http.py [--seconds 5] [--connections 16] [--driver wrk|python]
    python benchmarks/bench_http.py --clients [--seconds 3] [--connections 16]

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
        [sys.executable, "-m", "labsim.services.http_web", "--root", root, "--port", "0"],
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


# --- the phones' client -------------------------------------------------------------------


def agent_getter(reactor, timeout_s: float = 30.0):
    """What labsim's phones used before the lean client: twisted.web's Agent with a
    persistent pool, a User-Agent header, readBody, a timeout (HttpFetcher.get as it was)."""
    from twisted.web.client import Agent, HTTPConnectionPool, readBody
    from twisted.web.http_headers import Headers

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 1000
    pool.cachedConnectionTimeout = 30
    agent = Agent(reactor, pool=pool, connectTimeout=timeout_s)

    def get(url: str):
        headers = Headers({b"User-Agent": [b"Yealink SIP-T46S 66.85.0.5 00:15:65:00:00:01"]})
        d = agent.request(b"GET", url.encode(), headers, None)
        d.addTimeout(timeout_s, reactor)
        return d.addCallback(lambda response: readBody(response).addCallback(lambda body: (response.code, body)))

    return get, pool.closeCachedConnections


def lean_getter(reactor, timeout_s: float = 30.0):
    from labsim.transport.http_fetch import HttpFetcher

    fetcher = HttpFetcher(reactor, timeout_s=timeout_s)

    def get(url: str):
        d = fetcher.get(url, "Yealink SIP-T46S 66.85.0.5 00:15:65:00:00:01")
        return d.addCallback(lambda result: (200 if result.ok else result.detail, result.body))

    return get, fetcher.close


def drive_client(reactor, get, url: str, seconds: float, concurrency: int):
    """``concurrency`` phones each GET ``url`` back to back for ``seconds``; fires with
    (GETs per second, CPU seconds of this process per GET)."""
    from twisted.internet import defer

    done = defer.Deferred()
    state = {"count": 0, "running": concurrency}
    deadline = time.monotonic() + seconds
    cpu0, wall0 = time.process_time(), time.monotonic()

    def one(_=None):
        if time.monotonic() >= deadline:
            state["running"] -= 1
            if not state["running"]:
                n = state["count"]
                done.callback((n / (time.monotonic() - wall0), (time.process_time() - cpu0) / max(n, 1)))
            return
        get(url).addCallbacks(answered, failed)

    def answered(result):
        code, body = result
        if code != 200 or len(body) != 4096:
            failed(RuntimeError(f"bad answer {code!r}"))
            return
        state["count"] += 1
        one()

    def failed(why):
        if not done.called:
            done.errback(why)

    for _ in range(concurrency):
        one()
    return done


def bench_clients(args) -> int:
    """Agent and the lean client, alternated in one run: against nginx (a server in its
    own process, so the CPU measured is the client's), and against labsim's server in the
    same reactor (a boot storm's shape: client and server share one process)."""
    from twisted.internet import defer, reactor

    from labsim.services.http import HttpServerConfig
    from labsim.services.http_web import start_http_server

    results: dict[tuple[str, str], list[tuple[float, float]]] = {}

    @defer.inlineCallbacks
    def run(root, nginx_port):
        handle = start_http_server(reactor, HttpServerConfig(root=root), port=0)
        servers = {"nginx (own process)": nginx_port, "labsim server (same process)": handle.port}
        try:
            for _ in range(args.rounds):
                for server_name, port in servers.items():
                    url = f"http://127.0.0.1:{port}/{FILE_NAME}"
                    for client_name, make in (("Agent", agent_getter), ("lean client", lean_getter)):
                        get, close = make(reactor)
                        yield drive_client(reactor, get, url, 0.5, args.connections)  # warm-up
                        measured = yield drive_client(reactor, get, url, args.seconds, args.connections)
                        results.setdefault((server_name, client_name), []).append(measured)
                        yield close()
        finally:
            yield handle.stop()
            reactor.stop()

    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        os.chmod(tmp, 0o755)
        root = os.path.join(tmp, "root")
        os.makedirs(root, mode=0o755)
        Path(root, FILE_NAME).write_bytes(os.urandom(4096))
        nginx, nginx_port = start_nginx(root, tmp)
        try:
            reactor.callWhenRunning(run, root, nginx_port)
            reactor.run()
        finally:
            stop(nginx)
    print(f"{args.connections} phones, each GETting a 4 KB file back to back; best of {args.rounds} rounds:")
    for (server_name, client_name), runs in results.items():
        rate, cpu = max(runs)
        print(f"  {server_name:30s} {client_name:12s} {rate:7.0f} GET/s  {cpu * 1e6:6.1f} us CPU per GET"
              f"   runs: {', '.join(f'{r:.0f}' for r, _ in runs)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="alternate the servers; keep each one's best")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--driver", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--clients", action="store_true", help="compare the phones' HTTP clients instead")
    args = parser.parse_args()
    if args.clients:
        return bench_clients(args)
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
        # Each round measures both servers back to back, so its ratio compares like with like
        # even when other work on the machine changes between rounds.
        paired = sorted(a / b for a, b in zip(results["labsim"], results["nginx"]))
        results = {name: max(runs) for name, runs in results.items()}
    ratio = results["labsim"] / results["nginx"]
    print(f"driver {args.driver}, {args.connections} keep-alive connections, 4 KB file: labsim/nginx = {ratio:.2f} (best of {args.rounds})")
    print(f"labsim/nginx round by round: {', '.join(f'{r:.2f}' for r in paired)} (median {paired[len(paired) // 2]:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: one service port served by N processes, two ways.

- ``reuseport``: each process binds its own socket with SO_REUSEPORT (what
  ``labsim run --workers`` does; labsim/net/reuseport.py): the kernel hashes each UDP
  flow / TCP connection to one socket and wakes only that process.
- ``handed``: the parent binds one socket and every process inherits it (one receive
  queue, one accept queue, every process polling the same descriptor).

Each server process is a plain epoll loop (UDP: echo each datagram; TCP: accept, echo one
message, close) that counts what it served and its *empty wake-ups* (woken, then nothing
to read: another process took it). A client process keeps ``--flows`` UDP sockets (each
its own source port, one request in flight each), or opens TCP connections one after the
other from ``--flows`` threads, for ``--seconds``. Prints requests/s, each server's share,
empty wake-ups per request and the CPU seconds of servers and client (the honest number
on a shared machine). Loopback only.

    python benchmarks/bench_shared_port.py [--servers 2] [--seconds 5] [--flows 64]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"


def serve(kind: str, sock: socket.socket, stop_at: float) -> dict:
    sock.setblocking(False)
    poller = select.epoll()
    poller.register(sock.fileno(), select.EPOLLIN)
    served = empty = 0
    while time.monotonic() < stop_at:
        if not poller.poll(0.2):
            continue
        got = 0
        while True:
            try:
                if kind == "udp":
                    data, peer = sock.recvfrom(2048)
                    sock.sendto(data, peer)
                else:
                    conn, _ = sock.accept()
                    conn.setblocking(True)
                    conn.settimeout(2)
                    try:
                        conn.sendall(conn.recv(64))
                    except OSError:
                        pass
                    conn.close()
            except BlockingIOError:
                break
            got += 1
        served += got
        empty += got == 0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"served": served, "empty_wakeups": empty, "cpu_s": usage.ru_utime + usage.ru_stime}


def server_main(args) -> None:
    kind = socket.SOCK_DGRAM if args.kind == "udp" else socket.SOCK_STREAM
    if args.mode == "handed":
        sock = socket.socket(fileno=3)
    else:
        sock = socket.socket(socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((HOST, args.port))
        if args.kind == "tcp":
            sock.listen(1024)
    print(json.dumps(serve(args.kind, sock, args.stop_at)), flush=True)


def udp_client(port: int, flows: int, seconds: float) -> int:
    socks = []
    poller = select.epoll()
    for _ in range(flows):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.connect((HOST, port))
        s.send(b"x" * 32)
        poller.register(s.fileno(), select.EPOLLIN)
        socks.append(s)
    by_fd = {s.fileno(): s for s in socks}
    done, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for fd, _ in poller.poll(0.5):
            s = by_fd[fd]
            try:
                s.recv(2048)
            except BlockingIOError:
                continue
            done += 1
            s.send(b"x" * 32)
        if not poller.poll(0):  # a lost datagram (a full queue): send again on every idle flow
            for s in socks:
                s.send(b"x" * 32)
    return done


def tcp_client(port: int, flows: int, seconds: float) -> int:
    counts = [0] * flows
    end = time.monotonic() + seconds

    def loop(i):
        while time.monotonic() < end:
            try:
                with socket.create_connection((HOST, port), timeout=2) as c:
                    c.sendall(b"x")
                    c.recv(8)
                counts[i] += 1
            except OSError:
                pass

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(flows)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts)


def one(kind: str, mode: str, servers: int, seconds: float, flows: int) -> dict:
    sock_kind = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    holder = socket.socket(socket.AF_INET, sock_kind)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, mode == "reuseport")
    holder.bind((HOST, 0))
    port = holder.getsockname()[1]
    if kind == "tcp":
        holder.listen(1024)
    stop_at = time.monotonic() + seconds + 1.5
    procs = []
    for _ in range(servers):
        command = [sys.executable, __file__, "--serve", "--kind", kind, "--mode", mode, "--port", str(port),
                   "--stop-at", repr(stop_at)]
        if mode == "handed":
            procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True, pass_fds=(3,),
                                          preexec_fn=lambda fd=holder.fileno(): os.dup2(fd, 3)))
        else:
            procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
    time.sleep(0.5)
    if mode == "reuseport":
        holder.close()  # the servers joined: the parent leaves the group (as labsim's parent does)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    done = (udp_client if kind == "udp" else tcp_client)(port, flows, seconds)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    results = [json.loads(p.communicate()[0]) for p in procs]
    if mode == "handed":
        holder.close()
    served = sum(r["served"] for r in results) or 1
    return {"kind": kind, "mode": mode, "per_s": done / wall,
            "shares": [round(r["served"] / served, 3) for r in results],
            "empty_per_request": sum(r["empty_wakeups"] for r in results) / served,
            "server_cpu_s": sum(r["cpu_s"] for r in results),
            "client_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--flows", type=int, default=64)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stop-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        server_main(args)
        return 0
    print(f"{args.servers} server processes, {args.flows} flows, {args.seconds:g} s each; loopback")
    print(f"{'':4} {'mode':10} {'req/s':>8} {'shares':>16} {'empty wake-ups/req':>19} {'CPU servers':>12} "
          f"{'CPU client':>11} {'CPU per 1k req':>15}")
    for kind in ("udp", "tcp"):
        for mode in ("reuseport", "handed"):
            r = one(kind, mode, args.servers, args.seconds, args.flows if kind == "udp" else min(args.flows, 8))
            print(f"{kind:4} {mode:10} {r['per_s']:8.0f} {str(r['shares']):>16} {r['empty_per_request']:19.3f} "
                  f"{r['server_cpu_s']:11.2f}s {r['client_cpu_s']:10.2f}s "
                  f"{1000 * r['server_cpu_s'] / max(1, r['per_s'] * args.seconds):14.3f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

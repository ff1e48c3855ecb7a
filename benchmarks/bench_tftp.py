"""labsim's TFTP server against dnsmasq's: 4 KB files, 100 downloads in flight.

Both servers run in their own process on 127.0.0.1; the same load driver (labsim's
own ``tftp_get``, at most ``--concurrency`` downloads in flight, a fixed total) runs in
this process against each in turn and prints transfers/s and the ratio.

    python benchmarks/bench_tftp.py [--transfers 3000] [--concurrency 100] [--blksize N]

dnsmasq's TFTP port is fixed at 69, so its half needs root and a free port 69; without
them only labsim's number is printed. With 2 cores the driver (Python, like the server)
competes for CPU: the numbers are an end-to-end rate, the same handicap for both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILE_SIZE = 4096
FILE_COUNT = 100
DNSMASQ_PORT = 69


def make_root(root: Path) -> list[str]:
    names = []
    for i in range(FILE_COUNT):
        name = f"phone{i:03d}.cfg"
        (root / name).write_bytes(os.urandom(FILE_SIZE))
        names.append(name)
    root.chmod(0o755)  # dnsmasq drops to "nobody"
    return names


def serve_labsim(root: str) -> None:
    """Child-process mode: run labsim's server on a free port and print the port."""
    sys.path.insert(0, str(REPO))
    from twisted.internet import reactor

    from labsim.services.tftp import TftpServerConfig
    from labsim.services.tftp_udp import start_tftp_server

    server = start_tftp_server(reactor, TftpServerConfig(root), "127.0.0.1", 0)
    print(server.port, flush=True)
    reactor.run()


def start_labsim(root: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-labsim", str(root)], stdout=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.kill()
        raise RuntimeError("labsim TFTP server did not start")
    return proc, int(line)


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_dnsmasq(root: Path) -> subprocess.Popen | None:
    binary = shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else None)
    if binary is None:
        print("dnsmasq: not installed, skipped")
        return None
    if os.geteuid() != 0:
        print("dnsmasq: needs root for port 69, skipped")
        return None
    if not port_free(DNSMASQ_PORT):
        print("dnsmasq: 127.0.0.1:69 is busy, skipped")
        return None
    proc = subprocess.Popen(
        [
            binary,
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--pid-file=",
            "--port=0",  # no DNS
            "--enable-tftp",
            f"--tftp-root={root}",
            "--tftp-max=1000",  # default 50 would cap our 100 in flight
            "--quiet-tftp",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while port_free(DNSMASQ_PORT):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            print("dnsmasq: did not start, skipped")
            return None
        time.sleep(0.05)
    return proc


def drive(port: int, names: list[str], transfers: int, concurrency: int, blksize: int | None) -> tuple:
    """Start ``transfers`` downloads, ``concurrency`` at a time; returns (all-done Deferred, outcome counts, start time)."""
    from twisted.internet import defer, reactor

    from labsim.transport.tftp_client import tftp_get

    outcome = {"ok": 0, "failed": 0, "bad": 0}
    started = 0
    done = defer.Deferred()
    t0 = time.perf_counter()

    def launch() -> None:
        nonlocal started
        name = names[started % len(names)]
        started += 1
        d = tftp_get(reactor, "127.0.0.1", port, name, blksize=blksize, timeout_s=1.0, max_retransmits=3)
        d.addCallbacks(finished_ok, finished_bad)

    def finished_ok(data: bytes) -> None:
        outcome["ok" if len(data) == FILE_SIZE else "bad"] += 1
        next_one()

    def finished_bad(_failure) -> None:
        outcome["failed"] += 1
        next_one()

    def next_one() -> None:
        if started < transfers:
            launch()
        elif outcome["ok"] + outcome["failed"] + outcome["bad"] == transfers and not done.called:
            done.callback(None)

    for _ in range(min(concurrency, transfers)):
        launch()
    return done, outcome, t0


def run_driver(port: int, names: list[str], args) -> float:
    """Drive one server from a child process (a fresh reactor each time) and return transfers/s."""
    cmd = [
        sys.executable,
        __file__,
        "--drive",
        str(port),
        "--transfers",
        str(args.transfers),
        "--concurrency",
        str(args.concurrency),
        "--names",
        ",".join(names),
    ]
    if args.blksize:
        cmd += ["--blksize", str(args.blksize)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout.split()
    ok, failed, bad, elapsed = int(out[0]), int(out[1]), int(out[2]), float(out[3])
    rate = ok / elapsed
    print(f"    {ok} ok, {failed} failed, {bad} wrong size in {elapsed:.2f}s -> {rate:,.0f} transfers/s")
    return rate


def drive_main(args) -> None:
    sys.path.insert(0, str(REPO))
    from twisted.internet import reactor

    names = args.names.split(",")
    result = {}

    def go():
        done, outcome, t0 = drive(args.drive, names, args.transfers, args.concurrency, args.blksize)

        def stop(_):
            result["elapsed"] = time.perf_counter() - t0
            result.update(outcome)
            reactor.stop()

        done.addCallback(stop)

    reactor.callWhenRunning(go)
    reactor.run()
    print(result["ok"], result["failed"], result["bad"], f"{result['elapsed']:.6f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--blksize", type=int, default=None, help="request this blksize (default: none, 512)")
    parser.add_argument("--serve-labsim", metavar="ROOT", help=argparse.SUPPRESS)
    parser.add_argument("--drive", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--names", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_labsim:
        serve_labsim(args.serve_labsim)
        return
    if args.drive:
        drive_main(args)
        return

    print(
        f"TFTP: {args.transfers} downloads of {FILE_SIZE} B files, {args.concurrency} in flight, "
        f"blksize {args.blksize or 512}, driver: labsim tftp_get"
    )
    with tempfile.TemporaryDirectory(prefix="bench-tftp-") as tmp:
        root = Path(tmp)
        names = make_root(root)
        rates = {}
        proc, port = start_labsim(root)
        try:
            print(f"  labsim (port {port}):")
            rates["labsim"] = run_driver(port, names, args)
        finally:
            proc.kill()
            proc.wait()
        proc = start_dnsmasq(root)
        if proc is not None:
            try:
                print(f"  dnsmasq (port {DNSMASQ_PORT}):")
                rates["dnsmasq"] = run_driver(DNSMASQ_PORT, names, args)
            finally:
                proc.kill()
                proc.wait()
        if len(rates) == 2:
            print(f"  ratio labsim/dnsmasq: {rates['labsim'] / rates['dnsmasq']:.2f}")


if __name__ == "__main__":
    main()

"""labsim's TFTP server against dnsmasq's: 4 KB files, 100 downloads in flight.

Both servers run in their own process on 127.0.0.1; the load driver runs in
``--drivers`` processes of its own (at most ``--concurrency`` downloads in flight, a
fixed total), so the servers are measured, not this script. Rounds alternate labsim /
dnsmasq ``--rounds`` times (the machine is shared: one number means little). Each round
prints transfers/s, the **server process's CPU time per transfer** (utime + stime from
/proc, read just before and after the round), how often the server slept, and the
drivers' CPU per transfer; the ratio labsim/dnsmasq per round and as a range.

    python benchmarks/bench_tftp.py [--rounds 3] [--transfers 3000] [--concurrency 100]
        [--driver labsim|raw] [--drivers 1] [--no-pin] [--blksize N] [--windowsize N]
        [--labsim-tree DIR] [--profile FILE] [--labsim-only]

Drivers: ``labsim`` is labsim's own ``tftp_get`` (what the virtual phones use). One
such process needs ~220-320 us of CPU per download, more than either server, so both
servers run at the driver's pace and the ratio says whether labsim keeps up. ``raw``
is a lean plain-socket client (about a third of that CPU) that saturates either server
from one CPU: then the rate is the server's capacity. By default servers are pinned
to the last CPU and drivers to the others (see ``--pin``). Numbers and their reading:
docs/performance.md.

dnsmasq's TFTP port is fixed at 69, so its half needs root and a free port 69; without
them only labsim's numbers are printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILE_SIZE = 4096
FILE_COUNT = 100
DNSMASQ_PORT = 69
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def make_root(root: Path) -> list[str]:
    names = []
    for i in range(FILE_COUNT):
        name = f"phone{i:03d}.cfg"
        (root / name).write_bytes(os.urandom(FILE_SIZE))
        names.append(name)
    root.chmod(0o755)  # dnsmasq drops to "nobody"
    return names


def process_cpu_s(pid: int) -> tuple[float, float]:
    """(user, system) CPU time of a process (its threads included), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


# --- the servers -----------------------------------------------------------------------


def serve_labsim(root: str, profile: str | None, tree: str | None) -> None:
    """Child-process mode: run labsim's server on a free port and print the port."""
    sys.path.insert(0, tree or str(REPO))
    import signal

    from twisted.internet import reactor

    from labsim.services.tftp import TftpServerConfig
    from labsim.services.tftp_udp import start_tftp_server

    server = start_tftp_server(reactor, TftpServerConfig(root), "127.0.0.1", 0)
    print(server.port, flush=True)
    # SIGTERM: stop cleanly (and write the profile if one was asked for).
    signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))
    if profile:
        import cProfile

        cProfile.runctx("reactor.run()", globals(), {"reactor": reactor}, profile)
    else:
        reactor.run()


def start_labsim(root: Path, profile: str | None, tree: str | None) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, __file__, "--serve-labsim", str(root)]
    if profile:
        cmd += ["--profile", profile]
    if tree:
        cmd += ["--labsim-tree", tree]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
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
            "--keep-in-foreground",  # one process: TFTP runs in dnsmasq's main loop
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


# --- the load driver -------------------------------------------------------------------


def drive(port: int, names: list[str], transfers: int, concurrency: int, blksize) -> tuple:
    """Start ``transfers`` downloads, ``concurrency`` at a time; returns (all-done Deferred, outcome counts)."""
    from twisted.internet import defer, reactor

    from labsim.transport.tftp_client import tftp_get

    outcome = {"ok": 0, "failed": 0, "bad": 0}
    started = 0
    done = defer.Deferred()

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
    return done, outcome


class _RawDownload:
    """One download of the raw driver: RFC 1350 receive side, plus blksize / RFC 7440
    windowsize when asked (ACK each window's last block; a block out of order: ACK the
    last one in order). A server that ignores the options is followed at 512 / 1."""

    __slots__ = ("sock", "options", "blksize", "windowsize", "expected", "unacked", "size", "tid", "last", "since", "tries")

    def __init__(self, name: str, port: int, blksize, windowsize, now: float):
        import socket as s

        self.sock = s.socket(s.AF_INET, s.SOCK_DGRAM | s.SOCK_NONBLOCK)
        self.sock.bind(("127.0.0.1", 0))
        options = b""
        if blksize:
            options += b"blksize\x00%d\x00" % blksize
        if windowsize:
            options += b"windowsize\x00%d\x00" % windowsize
        self.options = bool(options)
        self.blksize, self.windowsize = 512, 1
        self.expected, self.unacked, self.size, self.tid = 1, 0, 0, None
        self.last = (b"\x00\x01" + name.encode() + b"\x00octet\x00" + options, ("127.0.0.1", port))
        self.since, self.tries = now, 0
        self.sock.sendto(*self.last)

    def received(self, datagram: bytes, addr, now: float, asked_blksize, asked_windowsize):
        """None: going on; True: complete; False: failed."""
        if self.tid is None:
            self.tid = addr
        opcode = datagram[1] if len(datagram) >= 4 else 0
        if opcode == 6 and self.expected == 1:  # OACK
            fields = datagram[2:].split(b"\x00")
            options = dict(zip(fields[0:-1:2], fields[1::2]))
            self.blksize = int(options.get(b"blksize", 512))
            self.windowsize = int(options.get(b"windowsize", 1))
            return self._ack(0, now)
        if opcode != 3:
            return False  # ERROR or nonsense
        block = (datagram[2] << 8) | datagram[3]
        if block != self.expected % 65536:
            if self.expected > 1:
                self._ack(self.expected - 1, now)  # tell the sender where we are
            return None
        payload = len(datagram) - 4
        self.size += payload
        self.expected += 1
        self.unacked += 1
        if payload < self.blksize:
            self.sock.sendto(struct_ack(block), self.tid)
            return True
        if self.unacked >= self.windowsize:
            return self._ack(block, now)
        self.since = now
        return None

    def _ack(self, block: int, now: float):
        self.unacked = 0
        self.last = (struct_ack(block), self.tid)
        self.since, self.tries = now, 0
        self.sock.sendto(*self.last)
        return None


def struct_ack(block: int) -> bytes:
    return bytes((0, 4, (block >> 8) & 0xFF, block & 0xFF))


def raw_drive(port: int, names: list[str], transfers: int, concurrency: int, blksize, windowsize) -> dict:
    """A lean load driver: plain sockets and one epoll, no Twisted (~1/3 of tftp_get's CPU
    per download), so one driver process can saturate a server on another CPU."""
    import select

    epoll = select.epoll()
    running: dict[int, _RawDownload] = {}
    outcome = {"ok": 0, "failed": 0, "bad": 0}
    started = 0

    def launch(now: float) -> None:
        nonlocal started
        download = _RawDownload(names[started % len(names)], port, blksize, windowsize, now)
        started += 1
        running[download.sock.fileno()] = download
        epoll.register(download.sock.fileno(), select.EPOLLIN)

    def finish(fd: int, result: str, now: float) -> None:
        download = running.pop(fd)
        epoll.unregister(fd)
        download.sock.close()
        outcome[result] += 1
        if started < transfers:
            launch(now)

    now = last_scan = time.monotonic()
    for _ in range(min(concurrency, transfers)):
        launch(now)
    while running:
        events = epoll.poll(0.1)
        now = time.monotonic()
        for fd, _ in events:
            download = running.get(fd)
            if download is None:
                continue
            try:
                datagram, addr = download.sock.recvfrom(65536)
            except OSError:
                continue
            done = download.received(datagram, addr, now, blksize, windowsize)
            if done is not None:
                finish(fd, ("ok" if download.size == FILE_SIZE else "bad") if done else "failed", now)
        if now - last_scan > 0.1:  # retransmission: after 1 s of silence, at most 3 times
            last_scan = now
            for fd, download in list(running.items()):
                if now - download.since > 1.0:
                    if download.tries >= 3:
                        finish(fd, "failed", now)
                        continue
                    download.tries += 1
                    download.since = now
                    download.sock.sendto(*download.last)
    epoll.close()
    return outcome


def drive_main(args) -> None:
    """Child-process mode: say "ready", wait for a line on stdin, drive, print the outcome."""
    sys.path.insert(0, str(REPO))
    names = args.names.split(",")
    print("ready", flush=True)
    sys.stdin.readline()
    if args.driver == "raw":
        cpu0, t0 = time.process_time(), time.perf_counter()
        outcome = raw_drive(args.drive, names, args.transfers, args.concurrency, args.blksize, args.windowsize)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        print(outcome["ok"], outcome["failed"], outcome["bad"], f"{elapsed:.6f}", f"{cpu:.6f}")
        return

    from twisted.internet import reactor

    result = {}

    def go():
        cpu0, t0 = time.process_time(), time.perf_counter()
        done, outcome = drive(args.drive, names, args.transfers, args.concurrency, args.blksize)

        def stop(_):
            result["elapsed"] = time.perf_counter() - t0
            result["cpu"] = time.process_time() - cpu0
            result.update(outcome)
            reactor.stop()

        done.addCallback(stop)

    reactor.callWhenRunning(go)
    reactor.run()
    print(result["ok"], result["failed"], result["bad"], f"{result['elapsed']:.6f}", f"{result['cpu']:.6f}")


def context_switches(pid: int) -> int:
    """Voluntary context switches so far: how often the process went to sleep waiting."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def pin(pid: int, cpus: set[int] | None) -> None:
    if cpus:
        os.sched_setaffinity(pid, cpus)


def run_round(port: int, server_pid: int, names: list[str], args) -> dict:
    """One round against one server: every driver process at once; returns the measurements."""
    drivers = []
    for i in range(args.drivers):
        share = args.transfers // args.drivers + (1 if i < args.transfers % args.drivers else 0)
        cmd = [sys.executable, __file__, "--drive", str(port), "--transfers", str(share), "--driver", args.driver,
               "--concurrency", str(max(1, args.concurrency // args.drivers)), "--names", ",".join(names)]
        if args.blksize:
            cmd += ["--blksize", str(args.blksize)]
        if args.windowsize:
            cmd += ["--windowsize", str(args.windowsize)]
        drivers.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        pin(drivers[-1].pid, args.driver_cpus)
    try:
        for proc in drivers:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("load driver did not start")
        cpu0, sleeps0 = process_cpu_s(server_pid), context_switches(server_pid)
        for proc in drivers:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outs = [proc.communicate(timeout=300)[0].split() for proc in drivers]
        cpu1, sleeps = process_cpu_s(server_pid), context_switches(server_pid) - sleeps0
        server_user, server_sys = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    finally:
        for proc in drivers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    ok = sum(int(o[0]) for o in outs)
    failed = sum(int(o[1]) for o in outs)
    bad = sum(int(o[2]) for o in outs)
    elapsed = max(float(o[3]) for o in outs)
    driver_cpu = sum(float(o[4]) for o in outs)
    rate = ok / elapsed
    per = 1e6 / max(ok, 1)
    # How much of the round the drivers spent on the CPU: ~100% means the drivers, not
    # the server, set the pace (they never waited for a reply).
    driver_busy = driver_cpu / (elapsed * len(drivers))
    result = {"rate": rate, "server_us": per * (server_user + server_sys), "driver_us": per * driver_cpu,
              "driver_busy": driver_busy}
    print(f"    {ok} ok, {failed} failed, {bad} wrong size in {elapsed:.2f}s -> {rate:,.0f} transfers/s; "
          f"CPU per transfer: server {result['server_us']:.0f} us (user {per * server_user:.0f}, "
          f"system {per * server_sys:.0f}; {sleeps / max(ok, 1):.1f} sleeps), drivers {result['driver_us']:.0f} us "
          f"(busy {driver_busy:.0%})")
    return result


def span(values: list[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    return format(lo, fmt) if len(values) == 1 or f"{lo:{fmt}}" == f"{hi:{fmt}}" else f"{lo:{fmt}}-{hi:{fmt}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--drivers", type=int, default=1, help="load-driver processes (the load is split between them)")
    parser.add_argument("--rounds", type=int, default=3, help="alternate labsim / dnsmasq this many times")
    parser.add_argument("--blksize", type=int, default=None, help="request this blksize (default: none, 512)")
    parser.add_argument("--windowsize", type=int, default=None, help="request this RFC 7440 windowsize (raw driver)")
    parser.add_argument("--driver", choices=("labsim", "raw"), default="labsim",
                        help="labsim: labsim's own tftp_get (a phone's client; ~250-300 us of CPU per download, so "
                        "one process cannot saturate either server); raw: a lean plain-socket client that can")
    parser.add_argument("--labsim-only", action="store_true")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                        help="servers on the last CPU, drivers on the others (default: on, with 2+ CPUs). "
                        "Unpinned, the scheduler often puts a server and its driver on one CPU for some rounds "
                        "and not for others (ping-pong wake-ups): rates then vary by 1.5x between rounds")
    parser.add_argument("--profile", metavar="FILE", help="cProfile labsim's server into FILE (pstats format)")
    parser.add_argument("--labsim-tree", metavar="DIR", help="serve labsim from this checkout instead (before/after "
                        "comparisons: e.g. `git archive OLD labsim | tar -x -C DIR`)")
    parser.add_argument("--serve-labsim", metavar="ROOT", help=argparse.SUPPRESS)
    parser.add_argument("--drive", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--names", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_labsim:
        serve_labsim(args.serve_labsim, args.profile, args.labsim_tree)
        return
    if args.drive:
        drive_main(args)
        return

    print(
        f"TFTP: {args.transfers} downloads of {FILE_SIZE} B files, {args.concurrency} in flight, "
        f"blksize {args.blksize or 512}, windowsize {args.windowsize or 1}, "
        f"driver: {'labsim tftp_get' if args.driver == 'labsim' else 'raw sockets'} in {args.drivers} process(es); load average {os.getloadavg()[0]:.2f}"
    )
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus = args.driver_cpus = None
    if args.pin and len(cpus) >= 2:
        server_cpus, args.driver_cpus = {cpus[-1]}, set(cpus[:-1])
        print(f"  pinned: servers on CPU {cpus[-1]}, drivers on CPU {','.join(map(str, cpus[:-1]))}")
    with tempfile.TemporaryDirectory(prefix="bench-tftp-") as tmp:
        root = Path(tmp)
        names = make_root(root)
        servers = {}
        try:
            proc, port = start_labsim(root, args.profile, args.labsim_tree)
            servers["labsim"] = (proc, port)
            pin(proc.pid, server_cpus)
            if not args.labsim_only:
                proc = start_dnsmasq(root)
                if proc is not None:
                    servers["dnsmasq"] = (proc, DNSMASQ_PORT)
                    pin(proc.pid, server_cpus)
            results: dict[str, list[dict]] = {name: [] for name in servers}
            for round_no in range(1, args.rounds + 1):
                for name, (proc, port) in servers.items():
                    print(f"  round {round_no}, {name} (port {port}):")
                    results[name].append(run_round(port, proc.pid, names, args))
                if len(servers) == 2:
                    print(f"  round {round_no} ratio labsim/dnsmasq: "
                          f"{results['labsim'][-1]['rate'] / results['dnsmasq'][-1]['rate']:.2f}")
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        print(f"  summary over {args.rounds} round(s); load average now {os.getloadavg()[0]:.2f}:")
        for name, rounds in results.items():
            print(f"    {name:8s} {span([r['rate'] for r in rounds], ',.0f')} transfers/s, "
                  f"server CPU {span([r['server_us'] for r in rounds], '.0f')} us/transfer, "
                  f"drivers busy {span([100 * r['driver_busy'] for r in rounds], '.0f')}%")
        if len(servers) == 2:
            ratios = [a["rate"] / b["rate"] for a, b in zip(results["labsim"], results["dnsmasq"])]
            print(f"  ratio labsim/dnsmasq (transfers/s): {span(ratios, '.2f')}, median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()

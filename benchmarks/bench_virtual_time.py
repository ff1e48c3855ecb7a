"""Benchmark: a week of a Yealink fleet in virtual time (``labsim run --clock virtual``).

N Yealink T46S phones (default 1,000 and 10,000), 7 simulated days, resync every 60
minutes (``static.auto_provision.repeat``: 168 passes a phone), 1-day DHCP leases
renewed at T1, switched on over the first hour. Prints the interpreter (its build counts:
docs/performance.md), then per fleet size: wall time,
simulated seconds per wall second, provisioning passes per second (HTTP requests / 4:
each pass asks for two boot files, the Common and the MAC CFG) and the peak RSS of the
run's process. ``--profile`` runs the smallest size in this process under cProfile (CPU time) and
prints where the time goes. ``--scheme tftp``: the same fleet provisioning over TFTP
(labsim's TFTP server and the phones' client, both their own state machines, over the
in-memory network) instead of HTTP; ``--scheme ftp``: over FTP (anonymous logins; the
server's ``sessions`` counts the downloads).

The package is compiled to bytecode first, as an installed one is.

``--workers N`` runs each size twice, side by side: in one process and as
``labsim run --clock virtual --workers N`` (N shards, each its own process and clock, one
merged report), and prints for both the wall time, the CPU time of all processes (user +
system, the shards included), passes per wall second and the peak RSS of all processes
(one process: its own; workers: each shard's peak and the parent's, added up — an upper
bound, the peaks need not coincide), then the ratios, and how long the parent's merge
took after the last shard ended (wall and the parent's CPU: what the shards cannot
hide) and the CPU of each shard and of the parent, as the run says them. ``--workers-only`` leaves out the one-process run.

A benchmark, not a test: ``python benchmarks/bench_virtual_time.py [--phones 1000,10000]
[--days 7] [--workers N] [--scheme http|tftp|ftp] [--profile]``. Numbers from a shared, loaded machine vary by 2x
and more: say so when quoting them.
"""

from __future__ import annotations

import argparse
import compileall
import cProfile
import io
import json
import os
import platform
import pstats
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REQUESTS_PER_PASS = 4

SCENARIO = """\
name: bench-virtual-time
clock: virtual
duration: {days}d
time_limit_s: 3600
services:
  dhcp:
    port: 6767
    subnet: 10.0.0.0/8
    pool: {{start: 10.0.0.10, end: 10.0.250.250}}
    lease_time_s: 86400
    options: {{66: "{scheme}://127.0.0.1:{port}/"}}
  {scheme}: {{port: {port}{service_extra}}}
provisioning:
  files:
    y000000000066.cfg: |
      #!version:1.0.0.1
      static.network.lldp.enable = 1
      static.auto_provision.repeat.enable = 1
      static.auto_provision.repeat.minutes = 60
  per_phone:
    - name: "{{mac}}.cfg"
      text: |
        #!version:1.0.0.1
        account.1.user_name = {{index}}
fleets:
  - vendor: yealink
    model: T46S
    count: {phones}
    first_mac: "00:15:65:00:00:01"
    boot: {{pattern: storm, random_delay_s: 3600}}
expect:
  - phones.ready == 100%
"""


PORTS = {"http": 8080, "tftp": 6969, "ftp": 2121}
REQUESTS = {"http": "requests", "tftp": "rrq", "ftp": "sessions"}  # the server's counter of downloads asked for
SERVICE_EXTRA = {"ftp": ", anonymous: true"}  # the phones log in as anonymous (no credentials in the URL)


def scenario(phones: int, days: int, scheme: str, when: str | None = None) -> str:
    text = SCENARIO.format(phones=phones, days=days, scheme=scheme, port=PORTS[scheme],
                           service_extra=SERVICE_EXTRA.get(scheme, ""))
    if when:  # a timeline condition, pending for the whole run if it never holds (what judging it costs)
        text += f"timeline:\n  - when: {when}\n    do: {{power_cycle: {{phones: 1}}}}\n"
    return text


def run_once(phones: int, days: int, workdir: str, workers: int | None = None, scheme: str = "http",
             when: str | None = None) -> dict:
    path = os.path.join(workdir, f"bench-{phones}.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(scenario(phones, days, scheme, when))
    report_dir = os.path.join(workdir, f"report-{phones}-{workers or 1}")
    env = dict(os.environ, PYTHONPATH=ROOT)
    command = [sys.executable, "-m", "labsim", "run", path, "--report-dir", report_dir]
    if workers:
        command += ["--workers", str(workers)]
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output = proc.stdout.read()
    # wait4: this child's own usage (its CPU includes the shards it waited for).
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    cpu = usage.ru_utime + usage.ru_stime  # on a loaded machine wall time overstates labsim's own cost
    rss = usage.ru_maxrss / 1024
    summed = re.search(r"\(sum (\d+) MiB\)", output)
    if workers and summed:
        rss = float(summed.group(1))  # every shard's peak and the parent's, added (the run says them)
    met = re.search(r"timeline conditions: the shards met at .*", output)
    tail = re.search(r"merge after the last shard ended: ([\d.]+)s wall, ([\d.]+)s CPU", output)
    parent = re.search(r"parent (\d+) MiB \(sum", output)
    split = re.search(r"CPU of all processes [\d.]+s \(shards ([\d., ]+)s, parent ([\d.]+)s\)", output)
    if proc.returncode != 0:
        sys.stdout.write(output[-3000:])
    with open(os.path.join(report_dir, "report.json"), encoding="utf-8") as handle:
        report = json.load(handle)
    requests = report["services"][scheme][REQUESTS[scheme]]
    run_line = next((line for line in output.splitlines() if line.startswith("Scenario ")), "")
    return {"phones": phones, "wall_s": wall, "run_line": run_line, "requests": requests,
            "passes": requests / REQUESTS_PER_PASS, "ready": report["summary"]["by_state"]["ready"],
            "simulated_s": days * 86400, "exit": proc.returncode, "cpu_s": cpu, "rss_mib": rss,
            "tail": (float(tail.group(1)), float(tail.group(2))) if tail else None,
            "parent_rss_mib": float(parent.group(1)) if parent else None, "met": met.group(0) if met else None,
            "cpu_split": (split.group(1), split.group(2)) if split else None}


def clock_only(timers: int, days: int, clock) -> float:
    """Seconds to run ``timers`` hourly timers (each re-armed when it fires, the way a
    phone's resync timer is) and a 1 ms "network reply" per firing for ``days``, on
    ``clock``: the scheduling cost alone, task.Clock against labsim's heap."""
    import random

    rng = random.Random(1)
    end = days * 86400.0

    def fire():
        clock.callLater(0.001, lambda: None)
        clock.callLater(3600.0, fire)

    for _ in range(timers):
        clock.callLater(rng.uniform(0, 3600), fire)
    started = time.perf_counter()
    while True:
        pending = clock.getDelayedCalls() if not hasattr(clock, "next_time") else None
        due = clock.next_time() if pending is None else min((c.getTime() for c in pending), default=None)
        if due is None or due > end:
            break
        clock.advance(due - clock.seconds())
    return time.perf_counter() - started


def profile(phones: int, days: int, workdir: str, scheme: str = "http") -> str:
    sys.path.insert(0, ROOT)
    from labsim.scenario.loader import load_scenario
    from labsim.virtual.run import run_virtual

    path = os.path.join(workdir, f"profile-{phones}.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(scenario(phones, days, scheme))
    loaded = load_scenario(path)
    profiler = cProfile.Profile(time.process_time)  # CPU time: on a shared machine wall time counts the waits
    profiler.enable()
    run_virtual(loaded, report_dir=os.path.join(workdir, "profile-report"), stream=io.StringIO())
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
    return text.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", default="1000,10000", help="fleet sizes, comma-separated")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--scheme", choices=sorted(PORTS), default="http", help="how the phones provision")
    parser.add_argument("--profile", action="store_true", help="also profile the smallest size in-process")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="also run each size with --workers N and print both side by side")
    parser.add_argument("--workers-only", action="store_true",
                        help="with --workers: only the --workers N run (no one-process run beside it)")
    parser.add_argument("--when", metavar="CONDITION",
                        help="give the scenario a timeline condition (e.g. 'time_to_ready.p95 > 100000', which never "
                             "holds: the cost of judging it all run long)")
    parser.add_argument("--clock-only", metavar="TIMERS", type=int,
                        help="instead: only the clocks, task.Clock vs labsim's HeapClock, with this many hourly timers")
    args = parser.parse_args()
    if args.clock_only:
        sys.path.insert(0, ROOT)
        from twisted.internet.task import Clock

        from labsim.virtual.clock import HeapClock

        heap = clock_only(args.clock_only, args.days, HeapClock())
        print(f"{args.clock_only} hourly timers x {args.days} days: HeapClock {heap:.2f} s", flush=True)
        reference = clock_only(args.clock_only, args.days, Clock())
        print(f"{args.clock_only} hourly timers x {args.days} days: task.Clock {reference:.2f} s "
              f"({reference / heap:.0f}x)")
        return 0
    sizes = [int(size) for size in args.phones.split(",")]
    # As an installed package runs: with its bytecode. Where PYTHONDONTWRITEBYTECODE is set
    # (this machine's environment), every labsim process would otherwise compile the package
    # as it imports it: ~0.25 s of CPU each, the parent's and every shard's.
    compileall.compile_dir(os.path.join(ROOT, "labsim"), quiet=1)
    # The interpreter's build counts: Debian's python3 (built with PGO and LTO) ran this
    # bench 1.08-1.2x faster than a pyenv build of 3.11 without --enable-optimizations.
    print(f"python {platform.python_version()} ({os.path.realpath(sys.executable)})")
    with tempfile.TemporaryDirectory(prefix="bench-virtual-") as workdir:
        print(f"{'phones':>7} {'days':>4} {'processes':>10} {'wall s':>8} {'CPU s':>8} {'sim s/wall s':>12} "
              f"{'passes':>9} {'passes/s':>9} {'ready':>6} {'peak RSS MiB':>12}")
        for phones in sizes:
            results = []
            single = [] if args.workers and args.workers_only else [None]
            for workers in single + ([args.workers] if args.workers else []):
                result = run_once(phones, args.days, workdir, workers, args.scheme, args.when)
                results.append(result)
                label = "1" if workers is None else f"{workers} shards"
                print(f"{phones:>7} {args.days:>4} {label:>10} {result['wall_s']:>8.1f} {result['cpu_s']:>8.1f} "
                      f"{result['simulated_s'] / result['wall_s']:>12.0f} "
                      f"{result['passes']:>9.0f} {result['passes'] / result['wall_s']:>9.0f} {result['ready']:>6} "
                      f"{result['rss_mib']:>12.0f}" + ("" if result["exit"] == 0 else f"  (exit {result['exit']})"))
                if result["tail"]:
                    print(f"        the parent's merge after the last shard ended: {result['tail'][0]:.2f} s wall, "
                          f"{result['tail'][1]:.2f} s CPU; the parent's peak RSS {result['parent_rss_mib'] or 0:.0f} MiB")
                if result["cpu_split"]:
                    print(f"        CPU of each process: shards {result['cpu_split'][0]} s, parent {result['cpu_split'][1]} s")
                if result["met"]:
                    print(f"        {result['met']}")
                sys.stdout.flush()
            if len(results) == 2:
                one, many = results
                print(f"        --workers {args.workers} against one process: wall {one['wall_s'] / many['wall_s']:.2f}x "
                      f"faster, CPU {many['cpu_s'] / one['cpu_s']:.2f}x, peak RSS {many['rss_mib'] / one['rss_mib']:.2f}x; "
                      f"os.getloadavg() {os.getloadavg()[0]:.1f}")
            sys.stdout.flush()
        if args.profile:
            print(profile(min(sizes), args.days, workdir, args.scheme))
    return 0


if __name__ == "__main__":
    sys.exit(main())

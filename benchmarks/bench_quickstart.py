"""Benchmark: the quickstart scenario scaled to N phones (default 2,000) as a boot storm.

Prints phones per second to `ready` and the peak RSS of the labsim processes. A benchmark,
not a test: run it by hand (`python benchmarks/bench_quickstart.py --phones 2000`), or
compare scale-out in one run (`--phones 10000 --workers 1,2`), or print the memory a phone
costs (`--phones 20000,100000`: the peak RSS of each size and the slope between them, issue
12 §5's measure). `--http-connections pooled` puts the fleet's HTTP on a pool of keep-alive
connections (network.http_connections) instead of a connection per file, as phones use them.
Ctrl-C stops the labsim
run under way the way a user's Ctrl-C does (it writes its partial report) and still
prints what was measured.
The quickstart's own ramp is replaced by a storm so the number measures labsim, not the
ramp rate.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
QUICKSTART = os.path.join(HERE, "..", "scenarios", "quickstart.yaml")


def scaled_scenario(phones: int, http_connections: str = "per_request") -> str:
    text = open(QUICKSTART, encoding="utf-8").read()
    if http_connections != "per_request":  # the fleet's HTTP over a pool of keep-alive connections
        text = text.replace("\nfleets:\n", f"\nnetwork: {{http_connections: {http_connections}}}\nfleets:\n", 1)
    t46s = phones * 2 // 5
    t48s = phones * 2 // 5
    t54s = phones - t46s - t48s
    text = re.sub(r"models: \{[^}]*\}", f"models: {{T46S: {t46s}, T48S: {t48s}}}", text)
    text = re.sub(r"count: 100\n", f"count: {t54s}\n", text)
    text = re.sub(r"boot: \{[^}]*\}", "boot: {pattern: storm, random_delay_s: 1.0}", text)
    # A /12 pool (a million addresses): a /16 ran out at ~64,000 phones and the rest waited for a lease forever.
    text = text.replace("subnet: 10.20.0.0/16", "subnet: 10.16.0.0/12").replace("subnet_mask: 255.255.0.0",
                                                                                   "subnet_mask: 255.240.0.0")
    text = re.sub(r"pool: \{[^}]*\}", "pool: {start: 10.16.0.10, end: 10.31.255.250}", text)
    # The lobby fleet's MACs start 4,096 after the desk fleet's: move them clear of a desk
    # fleet of any size (above 5,120 phones the ranges overlapped and the scenario was refused).
    text = text.replace('first_mac: "00:15:65:00:10:01"', 'first_mac: "00:15:65:80:00:01"')
    # Free ports, so the benchmark never collides with a lab (or a test) already running.
    for fixed, kind in (("6767", socket.SOCK_DGRAM), ("6969", socket.SOCK_DGRAM), ("8080", socket.SOCK_STREAM)):
        text = text.replace(fixed, str(_free_port(kind)))
    # However long it takes: the run ends when every phone has settled (an hour is the cap).
    return text.replace("time_limit_s: 240", "time_limit_s: 3600")


def _free_port(kind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", default="2000", metavar="N[,N,...]",
                        help="fleet size; several (e.g. 20000,100000): one run each, one after the other, "
                             "and the peak RSS's slope per phone between them")
    parser.add_argument("--workers", metavar="N,N,...",
                        help="run once per value with `labsim run --workers N` (e.g. 0,1,2; 0 = one process "
                             "without --workers), in this order, and compare; default: one process")
    parser.add_argument("--keep", metavar="DIR",
                        help="write the scenarios and every run's report folder under DIR and keep them "
                             "(to look into a failed phone's events); default: a temporary folder")
    parser.add_argument("--http-connections", choices=("per_request", "pooled"), default="per_request",
                        help="network.http_connections: each phone's files on connections of their own (the "
                             "default, as phones do), or the fleet's requests over a pool of keep-alive ones")
    args = parser.parse_args()
    # "0" in the list: one process, no --workers (the baseline the workers are compared with).
    runs = [None] if not args.workers else [None if v.strip() == "0" else v.strip() for v in args.workers.split(",")]
    sizes = [int(value) for value in args.phones.split(",")]
    results = []
    with (contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory()) as tmp:
        os.makedirs(tmp, exist_ok=True)
        for phones in sizes:
            path = os.path.join(tmp, f"bench-{phones}.yaml")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(scaled_scenario(phones, args.http_connections))
            for workers in runs:
                result = run_once(path, os.path.join(tmp, f"report-{phones}-{workers or 'one'}"), phones, workers)
                result["phones"] = phones
                results.append(result)
                if result["interrupted"]:
                    break
            if results[-1]["interrupted"]:
                print("interrupted: the runs after this one were not made")
                break
    if len(runs) > 1:
        print_comparison(results)
    if len(sizes) > 1:
        print_slope(results)
    return 0


def print_slope(results: list[dict]) -> None:
    """Issue 12 §5: what one more phone costs, the peak RSS's slope between fleet sizes."""
    print(f"\n{'phones':>8} {'ready':>8} {'peak RSS':>11} {'RSS at last ready':>18}")
    for result in results:
        print(f"{result['phones']:>8} {result['ready']:>8} {result['peak_rss_kb'] / 1024:>7.1f} MiB "
              f"{result['rss_at_ready_kb'] / 1024:>14.1f} MiB")
    for first, then in zip(results, results[1:]):
        if then["phones"] != first["phones"]:
            slope = (then["peak_rss_kb"] - first["peak_rss_kb"]) * 1024 / (then["phones"] - first["phones"])
            print(f"slope {first['phones']} -> {then['phones']} phones: {slope:,.0f} bytes "
                  f"({slope / 1024:.1f} KiB) of peak RSS per phone (target: <= 10,000 bytes)")


def run_once(path: str, report_dir: str, phones: int, workers: str | None) -> dict:
    """One labsim run, measured. Ctrl-C stops labsim as a user's Ctrl-C does (it writes its
    report), and what was measured so far is still printed."""
    command = [sys.executable, "-m", "labsim", "run", path, "--report-dir", report_dir]
    if workers is not None:
        command += ["--workers", workers]
    label = f"--workers {workers}" if workers is not None else "one process"
    print(f"== {label}", flush=True)
    started = time.monotonic()
    # Its own session: a terminal's Ctrl-C reaches the benchmark only, which passes it on once.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    sampler = RssSampler(proc.pid)
    sampler.start()
    interrupted = False
    try:
        out, err = proc.communicate()
    except KeyboardInterrupt:
        interrupted = True
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    wall = time.monotonic() - started
    sampler.stop()
    result = {"label": label, "interrupted": interrupted, "wall": wall, "peak_rss_kb": sampler.peak_kb,
              "rss_at_ready_kb": 0,
              "ready": 0, "failed": 0, "last_ready": 0.0, "cpu_parent": sampler.cpu_s.get(proc.pid, 0.0),
              "cpu_workers": sum(seconds for pid, seconds in sampler.cpu_s.items() if pid != proc.pid)}
    report_path = os.path.join(report_dir, "report.json")
    if not os.path.exists(report_path):
        print(out[-3000:], err[-3000:])
        return result
    with open(report_path, encoding="utf-8") as handle:
        report = json.load(handle)
    summary = report["summary"]
    ready = summary["by_state"]["ready"]
    last_ready = max((p["ready_at_s"] for p in report["phones"] if p["ready_at_s"] is not None), default=0)
    result.update(ready=ready, failed=summary["by_state"]["failed"], last_ready=last_ready)
    print(f"phones:                 {phones}" + ("  (INTERRUPTED: partial report)" if interrupted else ""))
    print(f"ready / failed:         {ready} / {summary['by_state']['failed']} (exit {proc.returncode})")
    print(f"reboots:                {summary['reboots_total']}")
    print(f"last phone ready at:    {last_ready:.2f} s (boot_time 1 s x 2 cycles, storm spread 1 s)")
    print(f"phones/s to ready:      {ready / last_ready:.0f}" if last_ready else "phones/s to ready: n/a")
    ttr = summary["time_to_ready_s"]
    print(f"time to ready p50/p95/p99/max: {ttr['p50']} / {ttr['p95']} / {ttr['p99']} / {ttr['max']} s")
    print(f"wall time of the run:   {wall:.2f} s")
    reporting = re.search(r"reports took ([\d.]+) s of CPU", out)
    if reporting:
        print(f"writing the reports:    {reporting.group(1)} s of CPU (report.json, events.jsonl's rest, junit, html)")
    print(f"peak RSS (all labsim processes together, sampled every {RssSampler.INTERVAL_S} s): "
          f"{sampler.peak_kb / 1024:.1f} MiB ({sampler.peak_kb / phones:.1f} KiB per phone)")
    # The storm's own peak, apart from the reports written after it.
    result["rss_at_ready_kb"] = sampler.rss_at(_wall_of(report["started"]) + 1.0 + last_ready)
    print(f"RSS at the last ready:  {result['rss_at_ready_kb'] / 1024:.1f} MiB (the largest sample up to then)")
    workers_cpu = sum(seconds for pid, seconds in sampler.cpu_s.items() if pid != proc.pid)
    print(f"CPU time:               labsim {sampler.cpu_s.get(proc.pid, 0):.1f} s"
          + (f" (the parent: services, timeline, merge), workers {workers_cpu:.1f} s" if workers_cpu else ""))
    # The storm's CPU: each process's CPU seconds from the start instant to the last ready
    # (start-up and building the phones come before, the report after). report.json's
    # start is in whole seconds: the storm is taken from 1 s after it (the phones are still
    # booting, on timers) to 0.5 s after it + the last ready.
    start = _wall_of(report["started"])
    before, after = sampler.cpu_at(start + 1.0), sampler.cpu_at(start + 0.5 + last_ready)
    if after:
        storm = {pid: seconds - before.get(pid, 0.0) for pid, seconds in after.items()}
        per = [storm.get(proc.pid, 0.0)] + [seconds for pid, seconds in sorted(storm.items()) if pid != proc.pid]
        cores = len(os.sched_getaffinity(0))
        floor = max(max(per), sum(per) / cores)
        result.update(storm_cpu=sum(per), storm_floor=floor)
        print(f"CPU in the storm:       {' + '.join(f'{seconds:.1f}' for seconds in per)} = {sum(per):.1f} s "
              f"({'parent + workers' if len(per) > 1 else 'one process'}); CPU-bound floor on {cores} idle cores "
              f"(the busiest process, or the total over the cores): {floor:.1f} s")
    print_problems(report)
    print_pacing(report)
    if proc.returncode != 0 and not interrupted:
        print(out[-3000:], err[-3000:])
    return result


def print_comparison(results: list[dict]) -> None:
    base = results[0]
    base_rate = base["ready"] / base["last_ready"] if base["last_ready"] else 0
    # On a shared, loaded machine wall times say how much CPU the run was given; the CPU
    # seconds (the whole run, report included: parent + workers) say what it cost.
    print(f"\n{'run':<14} {'ready':>7} {'failed':>7} {'last ready':>11} {'phones/s':>9} {'x first':>8} "
          f"{'peak RSS':>10} {'CPU parent + workers':>21} {'phones/CPU-s':>13} {'storm CPU':>10} "
          f"{'CPU floor':>10} {'x first (floor)':>16}")
    for result in results:
        rate = result["ready"] / result["last_ready"] if result["last_ready"] else 0
        ratio = f"{rate / base_rate:.2f}" if base_rate else "n/a"
        print(f"{result['label']:<14} {result['ready']:>7} {result['failed']:>7} {result['last_ready']:>10.2f}s "
              f"{rate:>9.0f} {ratio:>8} {result['peak_rss_kb'] / 1024:>7.0f} MiB "
              f"{result['cpu_parent']:>10.1f} + {result['cpu_workers']:>6.1f} s "
              f"{result['ready'] / max(0.1, result['cpu_parent'] + result['cpu_workers']):>12.0f} "
              f"{result.get('storm_cpu', 0):>9.1f}s {result.get('storm_floor', 0):>9.1f}s "
              f"{(base.get('storm_floor', 0) / result['storm_floor']) if result.get('storm_floor') else 0:>16.2f}"
              + ("  (interrupted)" if result["interrupted"] else ""))


class RssSampler:
    """The summed RSS of a process and all its descendants, sampled from /proc; the peak."""

    INTERVAL_S = 0.2

    def __init__(self, pid: int):
        self.pid = pid
        self.peak_kb = 0
        self.cpu_s: dict[int, float] = {}  # pid -> user + system CPU seconds, last seen
        self.history: list[tuple[float, dict[int, float], int]] = []  # (time.time(), cpu_s then, peak RSS then)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.INTERVAL_S):
            tree = _tree(self.pid)
            self.peak_kb = max(self.peak_kb, sum(_rss_kb(pid) for pid in tree))
            for pid in tree:
                self.cpu_s[pid] = max(self.cpu_s.get(pid, 0.0), _cpu_s(pid))
            self.history.append((time.time(), dict(self.cpu_s), self.peak_kb))

    def cpu_at(self, when: float) -> dict[int, float]:
        """Each process's CPU seconds as last sampled at or before ``when`` (time.time())."""
        found = {}
        for at, cpu, _ in self.history:
            if at > when:
                break
            found = cpu
        return found

    def rss_at(self, when: float) -> int:
        """The peak RSS (KiB) sampled up to ``when`` (time.time())."""
        found = 0
        for at, _, peak in self.history:
            if at > when:
                break
            found = peak
        return found


def _wall_of(started: str) -> float:
    """report.json's ``started`` (ISO 8601, whole seconds) as time.time()."""
    from datetime import datetime

    return datetime.fromisoformat(started).timestamp()


def _tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parents.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def _cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def print_pacing(report: dict) -> None:
    """How late the phones powered on against the storm's schedule (labsim/fleet/pacer.py)."""
    from labsim.fleet.pacer import lateness_percentile

    lateness = report["network"].get("power_on_lateness_ms") or {}
    if lateness:
        p50, p99 = lateness_percentile(lateness, 0.5), lateness_percentile(lateness, 0.99)
        print(f"power-on vs schedule:   late by p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(map(int, lateness))} ms")


def print_problems(report: dict) -> None:
    """What went wrong, if anything: failed phones by reason, and the phones' fetches
    that did not end `ok` by server and status (a TFTP "no answer" is a `timeout`)."""
    failures: dict[str, int] = {}
    for phone in report["phones"]:
        if phone["state"] != "ready":
            key = f"{phone['state']}: {phone['failure']}"
            failures[key] = failures.get(key, 0) + 1
    for reason, count in sorted(failures.items(), key=lambda item: -item[1]):
        print(f"not ready:              {count} x {reason}")
    retries: dict[str, int] = {}  # "<file>: <status> <detail> (attempt n/m)" notes, file name left out
    for phone in report["phones"]:
        for event in phone["events"]:
            detail = event["detail"]
            if "(attempt " in detail and ": " in detail and ": not_found " not in detail:
                key = re.sub(r"\(attempt.*", "", detail.split(": ", 1)[1]).strip()
                retries[key] = retries.get(key, 0) + 1
    for key, count in sorted(retries.items(), key=lambda item: -item[1])[:6]:
        print(f"failed download:        {count} x {key}")
    for server, stats in report["summary"].get("servers", {}).items():
        odd = {status: n for status, n in stats["by_status"].items() if status not in ("ok", "not_found")}
        if odd:
            print(f"fetches from {server}: {stats['requests']} ({odd})")


if __name__ == "__main__":
    sys.exit(main())

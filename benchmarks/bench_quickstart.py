"""Benchmark: the quickstart scenario scaled to N phones (default 2,000) as a boot storm.

Prints phones per second to `ready` and the peak RSS of the labsim process. A benchmark,
not a test: run it by hand (`python benchmarks/bench_quickstart.py --phones 2000`).
The quickstart's own ramp is replaced by a storm so the number measures labsim, not the
ramp rate.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
QUICKSTART = os.path.join(HERE, "..", "scenarios", "quickstart.yaml")


def scaled_scenario(phones: int) -> str:
    text = open(QUICKSTART, encoding="utf-8").read()
    t46s = phones * 2 // 5
    t48s = phones * 2 // 5
    t54s = phones - t46s - t48s
    text = re.sub(r"models: \{[^}]*\}", f"models: {{T46S: {t46s}, T48S: {t48s}}}", text)
    text = re.sub(r"count: 100\n", f"count: {t54s}\n", text)
    text = re.sub(r"boot: \{[^}]*\}", "boot: {pattern: storm, random_delay_s: 1.0}", text)
    text = re.sub(r"pool: \{[^}]*\}", "pool: {start: 10.20.0.10, end: 10.20.250.250}", text)
    # The lobby fleet's MACs start 4,096 after the desk fleet's: move them clear of a desk
    # fleet of any size (above 5,120 phones the ranges overlapped and the scenario was refused).
    text = text.replace('first_mac: "00:15:65:00:10:01"', 'first_mac: "00:15:65:80:00:01"')
    # Free ports, so the benchmark never collides with a lab (or a test) already running.
    for fixed, kind in (("6767", socket.SOCK_DGRAM), ("6969", socket.SOCK_DGRAM), ("8080", socket.SOCK_STREAM)):
        text = text.replace(fixed, str(_free_port(kind)))
    return text.replace("time_limit_s: 240", "time_limit_s: 600")


def _free_port(kind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.yaml")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(scaled_scenario(args.phones))
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "labsim", "run", path, "--report-dir", tmp],
                              capture_output=True, text=True)
        wall = time.monotonic() - started
        peak_rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if not os.path.exists(os.path.join(tmp, "report.json")):
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            return 1
        report = json.load(open(os.path.join(tmp, "report.json")))
    summary = report["summary"]
    ready = summary["by_state"]["ready"]
    last_ready = max((p["ready_at_s"] for p in report["phones"] if p["ready_at_s"] is not None), default=0)
    print(f"phones:                 {args.phones}")
    print(f"ready:                  {ready} (exit {proc.returncode})")
    print(f"reboots:                {summary['reboots_total']}")
    print(f"last phone ready at:    {last_ready:.2f} s (boot_time 1 s x 2 cycles, storm spread 1 s)")
    print(f"phones/s to ready:      {ready / last_ready:.0f}" if last_ready else "phones/s to ready: n/a")
    ttr = summary["time_to_ready_s"]
    print(f"time to ready p50/p95/p99/max: {ttr['p50']} / {ttr['p95']} / {ttr['p99']} / {ttr['max']} s")
    print(f"wall time of the run:   {wall:.2f} s")
    print(f"peak RSS (labsim):      {peak_rss_kb / 1024:.1f} MiB ({peak_rss_kb / args.phones:.1f} KiB per phone)")
    print_problems(report)
    print_pacing(report)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
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

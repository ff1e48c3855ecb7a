"""Benchmark: what `--ui` with one connected page costs a 10,000-phone boot storm.

Runs scenarios/boot-storm.yaml scaled to N phones (default 10,000), alternately without
`--ui` and with `--ui` and a headless Chromium page (Debian chromium + chromium-driver,
Selenium) connected to the dashboard for the whole storm. Prints, for each round, the
wall time from the fleet's start to the last phone ready (the largest ``ready_at_s`` in
report.json), then the medians and their ratio. The target is a ratio of at most 1.10.

    python benchmarks/bench_dashboard.py --phones 10000 --rounds 3
    python benchmarks/bench_dashboard.py --phones 10000 --rounds 2 --workers 2

With ``--workers N`` every run is ``labsim run --workers N`` (the dashboard on the
parent, the phones in N workers) and the CPU time is the whole process tree's.

A benchmark, not a test: run it by hand, in a network namespace of your own.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STORM = os.path.join(ROOT, "scenarios", "boot-storm.yaml")
URLS = re.compile(r"labsim: dashboard controls: (http://\S+)/\?token=(\S+)")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1000")


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="bench-chromium-")
    options.add_argument("--user-data-dir=" + profile)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.profile_dir = profile  # removed after quit()
    return driver


def last_ready(report_dir: str) -> tuple[float, int]:
    with open(os.path.join(report_dir, "report.json"), encoding="utf-8") as handle:
        report = json.load(handle)
    ready = [p["ready_at_s"] for p in report["phones"] if p["ready_at_s"] is not None]
    return max(ready), len(ready)


def say(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()  # fields from the state (field 3) on


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process, its live descendants (--workers) and
    the children it has reaped (Linux /proc: utime, stime, cutime, cstime)."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                parents[int(name)] = int(_stat(int(name))[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, grown = {pid}, True
    while grown:
        found = {child for child, parent in parents.items() if parent in tree} - tree
        grown = bool(found)
        tree |= found
    ticks = 0
    for member in tree:
        try:
            fields = _stat(member)
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def one_round(phones: int, ui: bool, driver, screenshot: str | None, workers: str | None = None):
    report_dir = tempfile.mkdtemp(prefix="bench-dashboard-")
    command = [sys.executable, "-m", "labsim", "run", STORM, "--phones", str(phones), "--report-dir", report_dir]
    if workers:
        command += ["--workers", workers]
    if ui:
        command += ["--ui", "127.0.0.1:0"]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # Ctrl-C must work even when this script runs in the background (where SIGINT is ignored and inherited).
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    page = {}
    try:
        if ui:
            deadline = time.monotonic() + 60
            url = None
            while url is None and time.monotonic() < deadline:
                url = next((m.group(1) + "/" for m in map(URLS.search, list(lines)) if m), None)
                time.sleep(0.01)
            if url is None:
                raise RuntimeError("the dashboard did not start:\n" + "".join(lines))
            if driver is not None:
                say(f"dashboard at {url}; opening the page")
                driver.get(url)  # connected while the storm runs
            say("waiting for the settled report")
        cpu = 0.0
        while not os.path.exists(os.path.join(report_dir, "report.json")):
            if proc.poll() is not None:
                break
            try:
                cpu = cpu_seconds(proc.pid)  # labsim's CPU until the fleet settled (the report starts)
            except OSError:
                pass
            time.sleep(0.1)
        page["labsim_cpu_s"] = round(cpu, 1)
        if ui and driver is not None:
            say("report written; waiting for the page to show every phone ready")
            written = time.monotonic()
            while time.monotonic() < written + 120:
                shown = driver.execute_script(
                    "const c = {}; fleet.states.forEach((s) => { c[STATES[s]] = (c[STATES[s]] || 0) + 1; }); return c;")
                if shown.get("ready") == phones:
                    break
                time.sleep(0.2)
            page.update(shown, caught_up_s=round(time.monotonic() - written, 1))
            if screenshot:
                driver.save_screenshot(screenshot)
        if ui:
            say("closing the lab (Ctrl-C)")
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=600)
        say("labsim ended")
    finally:
        if proc.poll() is None:
            proc.kill()
    wall, ready = last_ready(report_dir)
    shutil.rmtree(report_dir, ignore_errors=True)  # a 10,000-phone report folder is ~100 MB
    return wall, ready, page


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--screenshot", help="save the page at the end of the first --ui round here")
    parser.add_argument("--workers", help="run every labsim with --workers N")
    args = parser.parse_args()
    driver = browser()
    modes = (("without --ui", False, None), ("--ui, no page", True, None), ("--ui + a page", True, driver))
    walls: dict[str, list[float]] = {name: [] for name, _, _ in modes}
    cpus: dict[str, list[float]] = {name: [] for name, _, _ in modes}
    print(f"{args.phones} phones" + (f", --workers {args.workers}" if args.workers else ", one process")
          + f"; load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    try:
        for number in range(args.rounds):
            for name, ui, page_driver in modes:
                shot = args.screenshot if number == 0 and page_driver is not None else None
                wall, ready, page = one_round(args.phones, ui, page_driver, shot, args.workers)
                walls[name].append(wall)
                cpus[name].append(page.pop("labsim_cpu_s"))
                print(f"round {number + 1}: {name:<14} last ready at {wall:7.2f} s ({ready} ready); labsim CPU "
                      f"to settle {cpus[name][-1]:6.1f} s" + (f"; the page showed {page}" if page else ""), flush=True)
    finally:
        driver.quit()
        shutil.rmtree(driver.profile_dir, ignore_errors=True)
    base_wall, base_cpu = statistics.median(walls["without --ui"]), statistics.median(cpus["without --ui"])
    for name, _, _ in modes:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(f"median {name:<14} last ready {wall:7.2f} s (x{wall / base_wall:.3f}), labsim CPU {cpu:6.1f} s "
              f"(x{cpu / base_cpu:.3f})")
    print(f"load average {os.getloadavg()[0]:.1f} at the end (a shared machine: the CPU times are the steadier "
          "figure)")
    print("target: --ui costs at most 10% wall time to the last ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())

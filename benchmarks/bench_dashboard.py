"""Benchmark: what `--ui` with one connected page costs a 10,000-phone boot storm.

Runs scenarios/boot-storm.yaml scaled to N phones (default 10,000), alternately without
`--ui` and with `--ui` and a headless Chromium page (Debian chromium + chromium-driver,
Selenium) connected to the dashboard for the whole storm. Prints, for each round, the
wall time from the fleet's start to the last phone ready (the largest ``ready_at_s`` in
report.json), then the medians and their ratio. The target is a ratio of at most 1.10.

    python benchmarks/bench_dashboard.py --phones 10000 --rounds 3

A benchmark, not a test: run it by hand, in a network namespace of your own.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
    options.add_argument("--user-data-dir=" + tempfile.mkdtemp(prefix="bench-chromium-"))
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def last_ready(report_dir: str) -> tuple[float, int]:
    with open(os.path.join(report_dir, "report.json"), encoding="utf-8") as handle:
        report = json.load(handle)
    ready = [p["ready_at_s"] for p in report["phones"] if p["ready_at_s"] is not None]
    return max(ready), len(ready)


def say(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def one_round(phones: int, ui: bool, driver, screenshot: str | None) -> tuple[float, int, dict]:
    report_dir = tempfile.mkdtemp(prefix="bench-dashboard-")
    command = [sys.executable, "-m", "labsim", "run", STORM, "--phones", str(phones), "--report-dir", report_dir]
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
            say(f"dashboard at {url}; opening the page")
            driver.get(url)  # connected while the storm runs
            say("page open; waiting for the settled report")
            while not os.path.exists(os.path.join(report_dir, "report.json")):
                if proc.poll() is not None:
                    raise RuntimeError("labsim ended early:\n" + "".join(lines[-30:]))
                time.sleep(0.2)
            say("report written; waiting for the page to show every phone ready")
            written = time.monotonic()
            while time.monotonic() < written + 120:
                page = driver.execute_script(
                    "const c = {}; fleet.states.forEach((s) => { c[STATES[s]] = (c[STATES[s]] || 0) + 1; }); return c;")
                if page.get("ready") == phones:
                    break
                time.sleep(0.2)
            page["caught_up_s"] = round(time.monotonic() - written, 1)
            if screenshot:
                driver.save_screenshot(screenshot)
            say("closing the lab (Ctrl-C)")
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=600)
        say("labsim ended")
    finally:
        if proc.poll() is None:
            proc.kill()
    wall, ready = last_ready(report_dir)
    return wall, ready, page


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phones", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--screenshot", help="save the page at the end of the first --ui round here")
    args = parser.parse_args()
    driver = browser()
    plain, with_ui = [], []
    try:
        for number in range(args.rounds):
            wall, ready, _ = one_round(args.phones, False, driver, None)
            plain.append(wall)
            print(f"round {number + 1}: without --ui  last ready at {wall:7.2f} s ({ready} ready)", flush=True)
            wall, ready, page = one_round(args.phones, True, driver, args.screenshot if number == 0 else None)
            with_ui.append(wall)
            print(f"round {number + 1}: with --ui     last ready at {wall:7.2f} s ({ready} ready; "
                  f"the page showed {page})", flush=True)
    finally:
        driver.quit()
    a, b = statistics.median(plain), statistics.median(with_ui)
    print(f"median without --ui {a:.2f} s, with --ui and one page {b:.2f} s: ratio {b / a:.3f} (target <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

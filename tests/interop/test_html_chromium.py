"""report.html in a real browser (headless Chromium, offline): after its script ran, the
DOM holds the plots with their data points and the phone table's rows and timelines,
and a screenshot shows the plots' colours rather than a blank page."""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import zlib

import pytest

from labsim.observe.html_report import STATE_COLORS, STATE_SAMPLES
from tests.e2e.test_outputs import ROOT, lab_scenario
from tests.peers import require_binary

pytestmark = pytest.mark.interop

PHONES = 6


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    folder = tmp_path_factory.mktemp("html")
    scenario = folder / "scenario.yaml"
    scenario.write_text(lab_scenario(scheme="http", count=PHONES))
    proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(scenario), "--report-dir", str(folder / "report")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return folder / "report" / "report.html"


def chromium(tmp_path, *args: str, timeout: float = 60) -> str:
    """Runs headless Chromium offline and with its own profile; its whole process group is
    ended afterwards, also on a timeout.

    The page is a file and needs no network; so that nothing at all leaves the machine,
    every name fails to resolve and any request would go to a closed loopback port."""
    binary = require_binary("chromium")
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
               "--no-pings", "--disable-domain-reliability", "--dns-prefetch-disable",
               "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
               f"--user-data-dir={tmp_path / 'profile'}", *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this test started: renderer, zygote ...
        except ProcessLookupError:
            pass
        if proc.poll() is None:
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    return out


def test_the_dom_after_the_script_has_the_plots_and_the_table(tmp_path, report_html):
    dom = chromium(tmp_path, "--dump-dom", report_html.as_uri())
    # The stacked state plot: one area per state the phones went through, every sample in it.
    areas = re.findall(r'<path class="area" data-state="(\w+)" data-points="(\d+)"[^>]* d="([^"]+)"', dom)
    states = {state for state, _, _ in areas}
    assert {"ready", "booting", "dhcp", "provisioning", "rebooting"} <= states
    for _, points, path in areas:
        assert int(points) == STATE_SAMPLES + 1
        assert len(re.findall(r"-?\d+(?:\.\d+)?,-?\d+(?:\.\d+)?", path)) == 2 * (STATE_SAMPLES + 1)
    assert len(re.findall(r'<rect class="bar"', dom)) >= 5
    assert re.findall(r'data-percentile="(p\d+)"', dom)[:3] == ["p50", "p95", "p99"]
    assert re.search(r'<polyline class="rate" data-service="dhcp"', dom)
    assert re.search(r'<polyline class="rate" data-service="http"', dom)
    # The table is drawn by the page's script: one row per phone, each with a timeline.
    body = re.search(r'<tbody id="phone-rows">(.*?)</tbody>', dom, re.S).group(1)
    rows = re.findall(r'<tr class="phone-row">.*?</tr>', body, re.S)
    assert len(rows) == PHONES
    assert all(row.count("<b style=") >= 5 for row in rows)  # booting, dhcp, provisioning, rebooting, ... ready
    assert f"page 1 of 1 ({PHONES} phones)" in dom
    # The servers the phones talked to, as the summary's per-server lines: DHCP and HTTP.
    servers = re.findall(r'<tr class="(fail|)" data-server="([^"]+)"><td>[^<]+</td><td>(\d+)</td><td>(\d+)</td>', dom)
    assert {server.split("://")[0] for _, server, _, _ in servers} == {"dhcp", "http"}
    assert all(int(requests) >= PHONES and (cls == "fail") == (int(errors) > 0) for cls, _, requests, errors in servers)


def read_png(path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) pixels) of an 8-bit non-interlaced PNG (what Chromium writes)."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, header = 8, b"", None
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        chunk = data[offset + 8: offset + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        offset += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and interlace == 0 and color in (2, 6)
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1: (y + 1) * (stride + 1)])
        for i in range(stride):  # undo the PNG filter of this row
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            up_left = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(r[i:i + 3]) for r in rows for i in range(0, stride, channels)]


def test_a_screenshot_shows_the_plots(tmp_path, report_html):
    shot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1000,900", "--hide-scrollbars", report_html.as_uri())
    width, height, pixels = read_png(shot)
    assert (width, height) == (1000, 900)
    white = sum(1 for p in pixels if p == b"\xff\xff\xff")
    assert white < 0.9 * len(pixels), "the page is (nearly) blank"
    colours = set(pixels)
    # The stacked plot is near the top of the page: its state colours are on screen.
    for state in ("ready", "booting", "rebooting"):
        wanted = bytes.fromhex(STATE_COLORS[state][1:])
        near = [c for c in colours if all(abs(a - b) <= 24 for a, b in zip(c, wanted))]
        assert near, f"no {state} colour ({STATE_COLORS[state]}) in the screenshot"


def test_a_long_runs_timelines_show_the_phones_time_and_what_the_report_left_out(tmp_path):
    """Two simulated days of hourly resyncs: each 4 ms pass is as wide as its share of the
    run, with a tick along the top to find it (widened, the passes painted a third of a
    phone's bar orange while it was ready all but a second of the days), and the stretch
    whose events the report left out (a phone keeps its first and last 50) is drawn as
    left out, not as the state the phone was in before it."""
    import json

    folder = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "labsim", "run", os.path.join(ROOT, "scenarios", "week-of-resyncs.yaml"),
                           "--phones", "3", "--duration", "2d", "--report-dir", str(folder)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((folder / "report.json").read_text())
    end_t = report["simulated"]["duration_s"]
    dom = chromium(tmp_path, "--dump-dom", (folder / "report.html").as_uri())
    body = re.search(r'<tbody id="phone-rows">(.*?)</tbody>', dom, re.S).group(1)
    rows = re.findall(r'<tr class="phone-row"><td class="mac">([^<]+)</td>(.*?)</tr>', body, re.S)
    assert len(rows) == 3
    phones = {phone["mac"]: phone for phone in report["phones"]}
    for mac, row in rows:
        spans = re.findall(r'<b (?:class="(\w[\w-]*)" )?style="left:([\d.]+)%;(?:width:([\d.]+)%;?)?'
                           r'(?:background:(#\w+))?"', row)
        full = {}
        for kind, _, width, colour in spans:
            if not kind:
                full[colour] = full.get(colour, 0.0) + float(width)
        provisioning, ready = STATE_COLORS["provisioning"], STATE_COLORS["ready"]
        assert full[provisioning] < 0.05, f"{mac}: provisioning drawn over {full[provisioning]:.2f}% of the run"
        assert sum(1 for kind, _, _, colour in spans if kind == "tick" and colour == provisioning) >= 6
        assert full[ready] > 10  # the first and last hours it is ready, minus nothing widened
        [(_, left, width, _)] = [span for span in spans if span[0] == "left-out"]
        between = phones[mac]["events_dropped_between"]
        assert abs(float(left) - 100 * between[0] / end_t) < 0.01
        assert abs(float(width) - 100 * (between[1] - between[0]) / end_t) < 0.01

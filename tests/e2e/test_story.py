"""``labsim story``: a phone's whole history from a finished run's events.jsonl, beyond
the first and last 50 events report.json keeps, on the run's calendar."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

DAY = """\
name: a day of resyncs
clock: virtual
duration: 1d
clock_starts: "2026-03-27 00:00"
services:
  dhcp:
    pool: {start: 10.1.0.10, end: 10.1.0.99}
    lease_time_s: 21600
    options: {66: "http://127.0.0.1:8080/"}
  http: {port: 8080}
provisioning:
  files:
    y000000000066.cfg: |
      #!version:1.0.0.1
      static.auto_provision.repeat.enable = 1
      static.auto_provision.repeat.minutes = 60
fleets:
  - vendor: yealink
    model: T46S
    count: 3
    first_mac: "00:15:65:00:00:01"
timeline:
  - at: 12h
    do: {power_cycle: {phones: all}}
"""


def labsim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labsim", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    folder = tmp_path_factory.mktemp("story")
    (folder / "day.yaml").write_text(DAY)
    done = labsim("run", str(folder / "day.yaml"), "--report-dir", str(folder / "report"))
    assert done.returncode == 0, done.stdout + done.stderr
    return folder / "report"


def test_every_line_of_the_phone_where_the_report_keeps_a_hundred(day):
    mac = "00:15:65:00:00:02"
    raw = [json.loads(line) for line in (day / "events.jsonl").read_text().splitlines()]
    own = [line for line in raw if line["mac"] == mac]
    actions = [line for line in raw if line["kind"] == "action"]
    [entry] = [phone for phone in json.loads((day / "report.json").read_text())["phones"] if phone["mac"] == mac]
    assert entry["events_dropped"] > 0 and len(own) > 300  # 24 passes: the report cut them
    done = labsim("story", str(day), "001565000002", "--json")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == sorted(
        own + actions, key=raw.index)  # every one of its lines and the power cycle, in the file's order
    assert done.stderr == f"{mac}: {len(own):,} of its {len(own):,} line(s) in {day}/events.jsonl shown, and " \
                          f"{len(actions):,} timeline action(s) (times: simulated)\n"


def test_in_words_on_the_simulated_calendar_within_a_window(day):
    done = labsim("story", str(day), "00:15:65:00:00:01", "--from", "2026-03-27 11:59", "--to", "12h1m",
                  "--kind", "state,action,dhcp")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Fri 2026-03-27 12:00:00.000  +0d 12:00:00.000  action  power_cycle (at 43200s): power cycle: " \
                       "3 phone(s)"
    assert lines[1] == "Fri 2026-03-27 12:00:00.000  +0d 12:00:00.000  state   booting: power cycle"
    # After the power cycle, INIT-REBOOT: a REQUEST for the address it remembers, no DISCOVER.
    assert [line.split(None, 6)[5:] for line in lines[2:5]] == [
        ["state", "dhcp"], ["dhcp", "DHCP REQUEST sent, xid 0x" + lines[3].split("0x")[1]],
        ["dhcp", "DHCP ACK received (address " + lines[4].split("address ")[1]]]
    assert lines[-1].split(None, 6)[5:] == ["state", "ready: MD5 of every file matches flash: nothing applied"]
    for line in lines:  # the moment and the time from the start agree, to the millisecond
        _, date, clock, days, offset = line.split()[:5]
        assert (date, days, offset) == ("2026-03-27", "+0d", clock)


def test_what_it_cannot_read_is_said(day, tmp_path):
    for args, code, words in [((str(day), "00:15:65:00:00:09"), 1, "no line of 00:15:65:00:00:09"),
                              ((str(day), "0015"), 2, "'0015' is not a MAC address"),
                              ((str(tmp_path), "00:15:65:00:00:01"), 2, "no events.jsonl here"),
                              ((str(day), "00:15:65:00:00:01", "--from", "2h", "--to", "1h"), 2, "is after --to"),
                              ((str(day), "00:15:65:00:00:01", "--kind", "fetches"), 2, "--kind fetches")]:
        done = labsim("story", *args)
        assert done.returncode == code and words in done.stderr, (args, done.stderr)

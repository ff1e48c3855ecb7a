"""`labsim run --clock virtual --ui`: a virtual run paced for a class (labsim/virtual/paced.py).

The lab runs on its simulated clock, `--speed` simulated seconds a wall second, while the
dashboard answers on the real reactor: phones, their stories, the services view (leases
told in simulated seconds), the trainer's controls. The run's end (its duration) writes
the report and leaves the lab running for the page until Ctrl-C, as on sockets. Pacing
changes when the lab runs, not what it does: up to the duration its events are the
unpaced run's, line for line.
"""

import json
import subprocess
import sys

import pytest

from tests.dashboard_lab import DashboardLab
from tests.e2e.test_dashboard_browser import browser, tile_states  # noqa: F401 (the fixture)

pytestmark = pytest.mark.e2e

PACED_LAB = """\
name: paced-lab
clock: virtual
duration: 2h
seed: 4
time_limit_s: 120
services:
  dhcp: {port: 6767, lease_time_s: 3600, options: {66: "http://127.0.0.1:8080/"}}
  http: {port: 8080}
provisioning:
  files:
    y000000000066.cfg: |
      #!version:1.0.0.1
      static.auto_provision.repeat.enable = 1
      static.auto_provision.repeat.minutes = 30
  per_phone:  # a pass takes ms (no retries of a missing file): Ctrl-C does not catch a phone mid-pass
    - name: "{mac}.cfg"
      text: "#!version:1.0.0.1\\naccount.1.user_name = {index}\\n"
fleets:
  - {vendor: yealink, model: T46S, count: 6, first_mac: "00:15:65:77:00:01", boot: {pattern: storm, random_delay_s: 60}}
expect:
  - phones.ready == 100%
"""


def lines_before(path, t: float) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return [line for line in handle if json.loads(line)["t"] < t]


def test_a_paced_virtual_lab_is_watched_and_run_as_unpaced(tmp_path):
    lab = DashboardLab(tmp_path, PACED_LAB, extra=("--speed", "1800"))  # 2 h in 4 s of wall
    try:
        lab.wait_until(lambda: lab.states().get("ready") == 6, what="6 phones ready")
        assert any("virtual time paced at 1800 simulated seconds a wall second" in line for line in lab.output)
        status, info = lab.json(f"api/info?token={lab.token}")
        assert status == 200 and info["control"] and info["mode"] == "run"
        status, services = lab.json("api/services")
        assert status == 200 and services["counters"]["http"]["requests"] >= 6
        assert len(services["leases"]) == 6 and all(0 < lease["expires_in_s"] <= 3600 for lease in services["leases"])
        status, story = lab.json("api/phone?mac=00:15:65:77:00:01")
        assert status == 200 and any("option 66" in row["text"] for row in story["timeline"])

        lab.wait_until(lambda: "the lab stays open" in "".join(lab.output), what="the report at the duration")
        first = lab.report()
        assert first["end_reason"] == "duration of 2h reached" and first["clock"] == "virtual"
        assert first["simulated"]["duration_s"] == 7200.0
        # The lab goes on for the page: a control acts on it, past the duration.
        status, body = lab.act("{power_cycle: {phones: 1}}")
        assert status == 200 and body["done"][0]["outcome"] == "power cycle: 1 phone(s)", body
        stories = [f"api/phone?mac=00:15:65:77:00:0{n}" for n in range(1, 7)]
        lab.wait_until(lambda: any(story["state"] == "ready" and any("power cycle" in row["text"] for row in story["timeline"])
                                   for story in (lab.json(path)[1] for path in stories)),
                       what="the power-cycled phone ready again")
    finally:
        assert lab.close() == 0, "".join(lab.output[-40:])
    final = lab.report()
    assert "lab closed" in final["end_reason"] and final["simulated"]["duration_s"] > 7200
    [control] = final["timeline"]
    # At the duration or after it: a control acts at the lab's instant, which is still the
    # duration's own when it comes before the pacer's next step (seen on a loaded machine).
    assert (control["entry"], control["action"]) == ("dashboard", "power_cycle") and control["t"] >= 7200

    unpaced = subprocess.run([sys.executable, "-m", "labsim", "run", str(lab.scenario), "--report-dir",
                              str(tmp_path / "unpaced")], capture_output=True, text=True, timeout=120)
    assert unpaced.returncode == 0, unpaced.stdout + unpaced.stderr
    paced_lines = lines_before(lab.report_dir / "events.jsonl", 7200.0)
    assert len(paced_lines) > 300
    assert paced_lines == lines_before(tmp_path / "unpaced" / "events.jsonl", 7200.0)


def test_a_paced_virtual_lab_in_chromium(browser, tmp_path):  # noqa: F811 (the fixture)
    """The page of a paced lab: the tiles turn ready as the phones do, and its charts run
    on the lab's simulated seconds (a day at 3,600x: past an hour within a few wall seconds)."""
    from selenium.webdriver.support.ui import WebDriverWait

    settled = PACED_LAB.replace("duration: 2h", "duration: 1d").replace("repeat.enable = 1", "repeat.enable = 0")
    lab = DashboardLab(tmp_path, settled, extra=("--speed", "3600"))  # no resyncs: Ctrl-C finds every phone ready
    try:
        browser.get(lab.control_url)
        wait = WebDriverWait(browser, 60, poll_frequency=0.2)
        wait.until(lambda d: tile_states(d).get("ready") == 6)
        wait.until(lambda d: (d.execute_script("return fleet.series.t[fleet.series.t.length - 1] || 0;") or 0) > 3600)
        browser.save_screenshot(str(tmp_path / "paced-fleet.png"))
        # the charts say their span as a duration, not 90061 s
        spans = browser.execute_script("return [45, 90, 150, 7200, 90061, 604800].map(durationText);")
        assert spans == ["45 s", "90 s", "2m", "2h 00m", "1d 01h", "7d 00h"]
    finally:
        assert lab.close() == 0, "".join(lab.output[-40:])


@pytest.mark.parametrize("args, says", [
    (["--speed", "600"], "--speed paces a virtual run for its dashboard"),  # no --ui
    (["--ui", "127.0.0.1:0", "--speed", "0"], "--speed 0: simulated seconds a wall second, more than 0"),
    (["--ui", "127.0.0.1:0", "--workers", "2"], "--ui with --clock virtual runs one process"),
])
def test_what_pacing_refuses(tmp_path, args, says):
    path = tmp_path / "paced.yaml"
    path.write_text(PACED_LAB)
    proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(path), "--report-dir", str(tmp_path / "r"),
                           *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and says in proc.stderr, proc.stdout + proc.stderr
    assert not (tmp_path / "r").exists()


A_LONG_DAY = PACED_LAB.replace("duration: 2h", "duration: 1d").replace("repeat.minutes = 30", "repeat.minutes = 10") \
    .replace("count: 6,", "count: 2,")


def test_a_long_runs_phone_story_says_what_it_left_out_and_where_every_line_is(browser, tmp_path):  # noqa: F811
    """A day of resyncs every 10 minutes: the page's story keeps a phone's first and last
    events, says how many it left out, and gives the command that reads them all from
    the run's events.jsonl; that command prints every line of the phone."""
    from selenium.webdriver.support.ui import WebDriverWait

    lab = DashboardLab(tmp_path, A_LONG_DAY, extra=("--speed", "43200"))  # a day in 2 s
    mac = "00:15:65:77:00:01"
    try:
        lab.wait_until(lambda: "the lab stays open" in "".join(lab.output), what="the report at the duration")
        status, story = lab.json(f"api/phone?mac={mac}")
        assert status == 200 and story["events_dropped"] > 500, story["events_dropped"]  # ~140 passes
        assert story["history"] == f"labsim story {lab.report_dir} {mac}"
        browser.get(lab.control_url)
        browser.execute_script("openPhone(arguments[0]);", mac)
        note = WebDriverWait(browser, 30).until(lambda d: d.execute_script(  # the panel redraws: read it whole
            "const note = document.querySelector('#phone-body .left-out'); return note && note.textContent;"))
        count, words = note.split(" ", 1)  # the lab goes on past its duration: more left out by now
        assert int(count.replace(",", "")) >= story["events_dropped"]
        assert words == ("earlier events of this phone are left out here: a long run keeps its first and last "
                         f"ones, and its latest exchanges. Every line is in the run's events.jsonl: {story['history']}")
    finally:
        assert lab.close() == 0, "".join(lab.output[-40:])
    done = subprocess.run([sys.executable, "-m", "labsim", *story["history"].split()[1:], "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with open(lab.report_dir / "events.jsonl", encoding="utf-8") as handle:
        own = [json.loads(line) for line in handle if f'"mac": "{mac}"' in line or '"kind": "action"' in line]
    assert [json.loads(line) for line in done.stdout.splitlines()] == own
    assert len(own) > story["events_dropped"]

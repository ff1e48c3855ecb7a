"""``labsim run --clock virtual``: the same scenario over the in-memory lab on labsim's
heap clock. A day of hourly resyncs runs in seconds; the same seed gives the same
events.jsonl byte for byte; what needs real sockets is refused, naming the key."""

import json
import subprocess
import sys

import jsonschema
import pytest

from labsim.observe.report_schema import REPORT_SCHEMA

pytestmark = pytest.mark.e2e

SCENARIO = """\
name: virtual-day
seed: {seed}
duration: {duration}
services:
  dhcp: {{port: 6767, subnet: 10.1.0.0/16, pool: {{start: 10.1.0.10, end: 10.1.3.250}}, lease_time_s: 7200,
         options: {{66: "http://127.0.0.1:8080/"}}}}
  http: {{port: 8080}}
  tftp: {{port: 6969}}
provisioning:
  files:
    y000000000066.cfg: "#!version:1.0.0.1\\nstatic.network.lldp.enable = 1\\nstatic.auto_provision.repeat.enable = 1\\nstatic.auto_provision.repeat.minutes = 60\\n"
  per_phone: [{{name: "{{mac}}.cfg", text: "#!version:1.0.0.1\\naccount.1.user_name = {{index}}\\n"}}]
fleets:
  - {{vendor: yealink, models: {{T46S: 10}}, first_mac: "00:15:65:00:00:01", boot: {{pattern: storm, random_delay_s: 30}}}}
timeline:
  - at: 7200
    do: {{stop_service: dhcp}}
  - at: 10800
    do: {{edit_file: {{name: y000000000066.cfg, set: {{lang.gui: French}}}}}}
  - at: 21600
    do: {{start_service: dhcp}}
expect:
  - phones.ready == 100%
  - phone.reboots == 1
  - {{flash: {{key: lang.gui, equals: French}}}}
"""


def run(tmp_path, name, *args, seed=1, duration="1d", text=None):
    path = tmp_path / f"seed-{seed}.yaml"  # one file per seed: the report names it
    path.write_text(text if text is not None else SCENARIO.format(seed=seed, duration=duration))
    report_dir = tmp_path / name
    proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(path), "--report-dir", str(report_dir),
                           "--clock", "virtual", *args], capture_output=True, text=True, timeout=120)
    return proc, report_dir


def test_a_day_in_virtual_time_resyncs_hourly_renews_leases_and_follows_the_timeline(tmp_path):
    proc, report_dir = run(tmp_path, "a")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((report_dir / "report.json").read_text())
    assert report["end_reason"] == "duration of 1d reached" and report["complete"]
    assert report["summary"]["by_state"]["ready"] == 10
    http = report["services"]["http"]
    # 10 phones x (2 boot passes + hourly resyncs, none while without an address) x 4 requests
    # each (two boot files, two .cfg)
    assert 10 * 20 * 4 <= http["requests"] <= 10 * 26 * 4
    events = [json.loads(line) for line in (report_dir / "events.jsonl").read_text().splitlines()]
    assert events[-1]["t"] == 86400
    renewals = [e for e in events if e["kind"] == "step" and "renewed" in e["detail"]]
    assert renewals and all(e["t"] < 7200 + 3600 or e["t"] > 21600 for e in renewals)  # none while DHCP was stopped
    assert {e["detail"] for e in events if e["kind"] == "step" and "rebinding" in e["detail"]}  # T2 came at 6300 s
    # Leases ran out while the server was stopped (7200 s lease, stopped 2 h to 6 h): DHCP again, then ready again.
    lost = [e for e in events if e["kind"] == "state" and e["state"] == "dhcp" and "expired" in e["detail"]]
    assert len(lost) == 10 and all(7200 < e["t"] < 21600 for e in lost)
    assert all(e["passed"] for e in report["expectations"]) and len(report["expectations"]) == 3  # French everywhere
    # The DHCP service's counters are the run's, both its starts': every ACK a phone got.
    acks = [e for e in events if e["kind"] == "dhcp" and e["dir"] == "in" and e["type"] == "ACK"]
    assert len(acks) > 20 and report["services"]["dhcp"]["ack"] == len(acks)


def test_same_seed_same_events_byte_for_byte_and_another_seed_differs(tmp_path):
    first, first_dir = run(tmp_path, "first", duration="8h")
    second, second_dir = run(tmp_path, "second", duration="8h")
    other, other_dir = run(tmp_path, "other", duration="8h", seed=2)
    assert first.returncode == second.returncode == other.returncode == 0, first.stdout + first.stderr
    events = (first_dir / "events.jsonl").read_bytes()
    assert events == (second_dir / "events.jsonl").read_bytes()
    assert events != (other_dir / "events.jsonl").read_bytes()
    reports = [json.loads((d / "report.json").read_text()) for d in (first_dir, second_dir)]
    jsonschema.validate(reports[0], REPORT_SCHEMA, cls=jsonschema.Draft202012Validator)
    for report in reports:  # the wall-clock fields (docs/report.md)
        for key in ("started", "duration_s"):
            report.pop(key)
    assert reports[0] == reports[1]
    assert reports[0]["clock"] == "virtual"
    assert reports[0]["simulated"] == {"from": "2026-01-04T00:00:00+00:00", "to": "2026-01-04T08:00:00+00:00",
                                       "duration_s": 28800.0}


@pytest.mark.parametrize("change, key, named, line", [
    ("services:\n", "network:\n  dhcp_server: 127.0.0.1\nservices:\n", "network.dhcp_server", "5:3"),
    ("lease_time_s: 7200,", "lease_time_s: 7200, interface: lo,", "services.dhcp.interface", "5:106"),
    ("services:\n", "network:\n  http_connections: pooled\nservices:\n", "network.http_connections", "5:3"),
])
def test_what_needs_real_sockets_is_refused_naming_the_key(tmp_path, change, key, named, line):
    text = SCENARIO.format(seed=1, duration="1h").replace(change, key)
    assert key in text
    # --clock virtual on the command line: refused before the run starts, at the key's line.
    proc, report_dir = run(tmp_path, "refused", text=text)
    assert proc.returncode == 2 and not report_dir.exists()
    path = tmp_path / "seed-1.yaml"
    assert f"{path}:{line}: {named}: not possible in virtual time" in proc.stderr, proc.stderr
    # clock: virtual in the file: labsim validate refuses it as run does.
    path.write_text(text.replace("duration: 1h\n", "duration: 1h\nclock: virtual\n"))
    line = f"{int(line.split(':')[0]) + 1}:{line.split(':')[1]}"
    for command in (["validate", str(path)], ["run", str(path), "--report-dir", str(report_dir)]):
        proc = subprocess.run([sys.executable, "-m", "labsim", *command], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and not report_dir.exists(), proc.stdout + proc.stderr
        assert f"{path}:{line}: {named}: not possible in virtual time" in proc.stderr, proc.stderr
        assert "nothing was started" in proc.stderr


def test_serve_refuses_a_virtual_scenario(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text(SCENARIO.format(seed=1, duration="1h").replace("name: virtual-day\n", "name: v\nclock: virtual\n"))
    proc = subprocess.run([sys.executable, "-m", "labsim", "serve", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "clock: virtual" in proc.stderr


def test_pcap_frames_carry_simulated_time(tmp_path):
    from scapy.utils import RawPcapReader

    capture = tmp_path / "week.pcap"
    proc, _ = run(tmp_path, "pcap", "--pcap", str(capture), duration="8h")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stamps = [meta.sec + meta.usec / 1e6 for _, meta in RawPcapReader(str(capture))]
    sunday = 1767484800  # 2026-01-04 00:00 UTC, where a virtual run's clock starts
    assert stamps and sunday <= stamps[0] < sunday + 60
    assert stamps[-1] > sunday + 5 * 3600  # hours of simulated time in one capture, written in seconds
    assert stamps == sorted(stamps)


ZONED = """\
name: zoned-window
duration: 2d
services:
  dhcp: {port: 6767, subnet: 10.1.0.0/16, pool: {start: 10.1.0.10, end: 10.1.3.250}, lease_time_s: 172800,
         options: {66: "http://127.0.0.1:8080/"}}
  http: {port: 8080}
provisioning:
  files:
    y000000000066.cfg: "#!version:1.0.0.1\\nlocal_time.time_zone = -5\\nstatic.auto_provision.weekly.enable = 1\\nstatic.auto_provision.weekly.dayofweek = 0123456\\nstatic.auto_provision.weekly.begin_time = 02:00\\nstatic.auto_provision.weekly.end_time = 03:00\\n"
fleets:
  - {vendor: yealink, models: {T46S: 10}, first_mac: "00:15:65:00:00:01", boot: {pattern: storm, random_delay_s: 30}}
"""


def fetch_times(proc, report_dir, name: str, after: float) -> list[float]:
    """When the run's phones fetched ``name`` after ``after`` seconds (the run passed)."""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = [json.loads(line) for line in (report_dir / "events.jsonl").read_text().splitlines()]
    return [e["t"] for e in events if e["kind"] == "fetch" and e["url"].endswith("/" + name) and e["t"] > after]


def test_a_weekly_window_is_kept_in_the_zone_the_phones_were_given(tmp_path):
    # 02:00-03:00 on phones provisioned with local_time.time_zone = -5 is 07:00-08:00 on
    # the lab's clock (UTC): the plot of a site's load shows it where the phones put it.
    later = fetch_times(*run(tmp_path, "zoned", text=ZONED), "y000000000066.cfg", after=60)
    assert len(later) == 2 * 10
    assert all(7 * 3600 <= t % 86400 < 8 * 3600 for t in later), sorted(later)


GRANDSTREAM_ZONED = """\
name: grandstream-zoned
duration: 2d
services:
  dhcp: {port: 6767, subnet: 10.0.0.0/16, pool: {start: 10.0.0.10, end: 10.0.0.250}, lease_time_s: 86400,
         options: {66: "http://127.0.0.1:8080/"}}
  http: {port: 8080}
provisioning:
  files:
    cfg.xml: |
      <gs_provision version="1"><config version="1"><P194>2</P194><P285>3</P285><P64>EST5EDT,M3.2.0,M11.1.0</P64></config></gs_provision>
fleets:
  - {vendor: grandstream, models: {GXP2170: 6}, first_mac: "00:0b:82:00:00:01", boot: {pattern: storm, random_delay_s: 60}}
expect:
  - phones.ready == 100%
"""


@pytest.mark.parametrize("option_2, utc_hour", [(None, 8), (-7200, 5)])
def test_a_grandstream_daily_check_is_kept_in_the_posix_zone_it_was_given(tmp_path, option_2, utc_hour):
    # P194 2, P285 3: daily at 03:00 on the phone's clock; P64 EST5EDT is UTC-5, so 08:00
    # UTC; unless the DHCP server sends option 2, which overrides P64 (P143 1, the factory
    # value): -2 gives 05:00 UTC.
    text = GRANDSTREAM_ZONED
    if option_2 is not None:
        text = text.replace('options: {66: "http://127.0.0.1:8080/"}', f'options: {{66: "http://127.0.0.1:8080/", time_offset: {option_2}}}')
    later = fetch_times(*run(tmp_path, "gs-zoned", text=text), "cfg.xml", after=3600)
    assert len(later) == 2 * 6
    assert all(utc_hour * 3600 <= t % 86400 < utc_hour * 3600 + 60 for t in later), sorted(later)

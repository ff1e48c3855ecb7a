"""``labsim run --clock virtual --workers N``: the fleet in N shards, each its own process,
clock and copy of the lab's services, merged into one report. Against one process: the
same phones end the same way (states, reboots, files and MD5s, flash, expectation
verdicts, time series, service counters); only the DHCP addresses differ (each shard
leases from its own part of the pool). Two runs with the same seed and N give the same
events.jsonl byte for byte; ``--shard i/N`` run by hand and ``labsim merge`` give what the
workers give."""

import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from labsim.fleet.shard import Shard
from labsim.scale.virtual_shards import pool_part

pytestmark = pytest.mark.e2e

SCENARIO = """\
name: virtual-shards
seed: 3
clock: virtual
duration: 1d
services:
  dhcp: {{port: 6767, subnet: 10.1.0.0/16, pool: {{start: 10.1.0.10, end: 10.1.3.250}}, lease_time_s: 7200,
         options: {{66: "http://127.0.0.1:8080/"}}}}
  http: {{port: 8080}}
  tftp: {{port: 6969}}
provisioning:
  files:
    y000000000066.cfg: "#!version:1.0.0.1\\nstatic.auto_provision.repeat.enable = 1\\nstatic.auto_provision.repeat.minutes = 60\\n"
  per_phone: [{{name: "{{mac}}.cfg", text: "#!version:1.0.0.1\\naccount.1.user_name = {{index}}\\n"}}]
fleets:
  - {{vendor: yealink, models: {{T46S: 15, T54S: 10}}, first_mac: "00:15:65:00:00:01",
     boot: {{pattern: storm, random_delay_s: 120}}}}
{faults}
timeline:
  - at: 7200
    do: {{stop_service: dhcp}}
  - at: 10800
    do: {{edit_file: {{name: y000000000066.cfg, set: {{lang.gui: French}}}}}}
  - at: 18000
    do: {{power_cycle: {{phones: 30%}}}}
  - at: 21600
    do: {{start_service: dhcp}}
expect:
  - phones.ready == 100%
  - phone.reboots <= 1
  - service.http.requests_per_min.max < 200
"""

LOSSY = "faults: [{service: dhcp, loss: 0.1}, {service: http, loss: 0.05}]"
WALL_CLOCK = ("started", "duration_s")  # docs/report.md: the report's wall-clock fields
ADDRESS = re.compile(r"10\.1\.\d+\.\d+")


def labsim(tmp_path, *args, faults=""):
    path = tmp_path / ("lossy.yaml" if faults else "scenario.yaml")
    path.write_text(SCENARIO.format(faults=faults))
    proc = subprocess.run([sys.executable, "-m", "labsim", *[str(path) if a == "SCENARIO" else str(a) for a in args]],
                          capture_output=True, text=True, timeout=120)
    return proc


def report_of(directory) -> dict:
    return json.loads((directory / "report.json").read_text())


def terminated_while_shards_run(path, report_dir, settle_s: float):
    """Run ``path`` with ``--workers 2``, SIGTERM the parent ``settle_s`` after both shards
    are writing their events; (its exit code, its output, its report), after checking
    that the report is the partial one and that no process of the run is left."""
    parent = subprocess.Popen([sys.executable, "-m", "labsim", "run", str(path), "--report-dir", str(report_dir),
                               "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        shards = [report_dir / "shards" / f"shard-{index}-of-2" / "events.jsonl.tmp" for index in range(2)]
        deadline = time.monotonic() + 60
        while not all(shard.exists() for shard in shards) and parent.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)  # both shards are running their phones
        time.sleep(settle_s)
        parent.send_signal(signal.SIGTERM)
        output, _ = parent.communicate(timeout=60)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert parent.returncode == 1, output
    report = report_of(report_dir)
    assert report["complete"] is False and report["end_reason"] == "interrupted (signal)", output
    left = [line for line in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
            if str(report_dir) in line]
    assert left == []
    return report


def without_addresses(text: str) -> str:
    return ADDRESS.sub("10.1.x.x", text)


def test_two_workers_end_every_phone_as_one_process_does(tmp_path):
    one = labsim(tmp_path, "run", "SCENARIO", "--report-dir", tmp_path / "one", "--pcap", tmp_path / "one.pcap")
    two = labsim(tmp_path, "run", "SCENARIO", "--report-dir", tmp_path / "two", "--workers", "2",
                 "--pcap", tmp_path / "two.pcap")
    assert one.returncode == 0, one.stdout + one.stderr
    assert two.returncode == 0, two.stdout + two.stderr
    assert "25 phones in 2 virtual-time shards" in two.stdout
    cpu = re.search(r"CPU of all processes ([\d.]+)s \(shards ([\d.]+), ([\d.]+)s, parent ([\d.]+)s\)", two.stdout)
    assert cpu, two.stdout  # each process's share, which add up to the whole
    assert abs(float(cpu[1]) - sum(float(part) for part in cpu.groups()[1:])) < 0.25 and float(cpu[4]) > 0
    a, b = report_of(tmp_path / "one"), report_of(tmp_path / "two")
    assert len(a["phones"]) == 25 and a["summary"]["by_state"]["ready"] == 25
    assert sum(phone["power_cycles"] for phone in a["phones"]) == 8  # 30 % of 25 (7.5, rounded), each cycled once
    for field in a:
        if field not in WALL_CLOCK + ("phones",):
            assert a[field] == b[field], field  # expectations, summary, series, services, timeline ...
    for phone_a, phone_b in zip(a["phones"], b["phones"], strict=True):
        assert {k: v for k, v in phone_a.items() if k != "events"} == \
               {k: v for k, v in phone_b.items() if k != "events"}  # state, reboots, files and MD5s, flash
        assert without_addresses(json.dumps(phone_a["events"])) == without_addresses(json.dumps(phone_b["events"]))
    events_a = (tmp_path / "one" / "events.jsonl").read_text()
    events_b = (tmp_path / "two" / "events.jsonl").read_text()
    # The same lines; those of one instant in shard order rather than one process's order.
    assert events_a != events_b
    assert sorted(without_addresses(events_a).splitlines()) == sorted(without_addresses(events_b).splitlines())
    # Leases unique across the fleet: each shard leases only from its own part of the pool.
    parts = [pool_part("10.1.0.10", "10.1.3.250", Shard(index, 2)) for index in range(2)]
    acks = [json.loads(line) for line in events_b.splitlines() if '"type": "ACK"' in line]
    assert len(acks) > 50
    for ack in acks:
        start, end = parts[(int(ack["mac"][-2:], 16) - 1) % 2]  # the shard rule: fleet position % 2
        assert ipaddress.IPv4Address(start) <= ipaddress.IPv4Address(ack["yiaddr"]) <= ipaddress.IPv4Address(end)
    shards = tmp_path / "two" / "shards"
    assert (shards / "shard-0-of-2" / "shard.json").exists() and (shards / "shard-1-of-2" / "shard.json").exists()
    # One capture merged from the shards' (each kept beside it): the same frames as one process's.
    assert (tmp_path / "two.shard-0-of-2.pcap").exists() and (tmp_path / "two.shard-1-of-2.pcap").exists()
    assert (tmp_path / "two.pcap").stat().st_size == (tmp_path / "one.pcap").stat().st_size > 10_000


def test_the_same_seed_and_n_give_the_same_events_byte_for_byte(tmp_path):
    runs = [labsim(tmp_path, "run", "SCENARIO", "--report-dir", tmp_path / name, "--workers", "2", faults=LOSSY)
            for name in ("a", "b")]
    for proc in runs:
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    a, b = (tmp_path / "a" / "events.jsonl").read_bytes(), (tmp_path / "b" / "events.jsonl").read_bytes()
    assert a == b and len(a) > 100_000
    report_a, report_b = report_of(tmp_path / "a"), report_of(tmp_path / "b")
    assert report_a["network"]["faults"] and report_a["network"]["faults"] == report_b["network"]["faults"]
    assert {k: v for k, v in report_a.items() if k not in WALL_CLOCK} == \
           {k: v for k, v in report_b.items() if k not in WALL_CLOCK}


def test_shards_run_by_hand_and_merged_are_the_workers_run(tmp_path):
    workers = labsim(tmp_path, "run", "SCENARIO", "--report-dir", tmp_path / "workers", "--workers", "2")
    assert workers.returncode == 0, workers.stdout + workers.stderr
    for index in range(2):
        shard = labsim(tmp_path, "run", "SCENARIO", "--report-dir", tmp_path / f"s{index}", "--shard", f"{index}/2")
        assert shard.returncode == 0, shard.stdout + shard.stderr
        assert (tmp_path / f"s{index}" / "report.json").exists()  # a shard by hand writes its own report too
    merged = labsim(tmp_path, "merge", tmp_path / "s0", tmp_path / "s1", "--report-dir", tmp_path / "merged")
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert (tmp_path / "merged" / "events.jsonl").read_bytes() == (tmp_path / "workers" / "events.jsonl").read_bytes()
    a, b = report_of(tmp_path / "workers"), report_of(tmp_path / "merged")
    assert {k: v for k, v in a.items() if k not in WALL_CLOCK} == {k: v for k, v in b.items() if k not in WALL_CLOCK}


def test_sigterm_ends_every_shard_and_writes_the_merged_partial_report(tmp_path):
    """SIGTERM (or Ctrl-C) on the parent: each shard gets one SIGTERM, writes its report,
    the parent merges them into a report marked incomplete; no process is left."""
    path = tmp_path / "week.yaml"
    path.write_text(SCENARIO.format(faults="").replace("duration: 1d", "duration: 30d"))
    report_dir = tmp_path / "cut"
    report = terminated_while_shards_run(path, report_dir, settle_s=0.5)
    assert len(report["phones"]) == 25
    assert (report_dir / "events.jsonl").read_text().splitlines()[-1].endswith(
        '"complete": false, "end_reason": "interrupted (signal)", "events": %d}' % (
            len((report_dir / "events.jsonl").read_text().splitlines()) - 1))
    assert not os.path.exists(report_dir / "shards" / "shard-0-of-2" / "events.jsonl.tmp")


UPLOADS = """\
name: virtual-shard-uploads
clock: virtual
services:
  dhcp: {port: 6767, subnet: 10.1.0.0/16, pool: {start: 10.1.0.10, end: 10.1.3.250},
         options: {66: "http://127.0.0.1:8080/"}}
  http: {port: 8080, uploads: true, upload_dir: uploads}
provisioning:
  files:
    000000000000.cfg: '<?xml version="1.0" standalone="yes"?>
      <APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="phone[PHONE_MAC_ADDRESS].cfg"
      LOG_FILE_DIRECTORY="uploads" OVERRIDES_DIRECTORY="uploads"/>'
  per_phone: [{name: "phone{mac}.cfg", text: '<polycomConfig><reg reg.1.address="{index}"/></polycomConfig>'}]
fleets:
  - {vendor: polycom, models: {VVX500: 3}, first_mac: "00:04:f2:00:00:01"}
"""


@pytest.mark.parametrize("workers", [None, "2"])
def test_uploads_go_to_the_uploads_folder_given_and_are_listed_once(tmp_path, workers):
    path = tmp_path / "uploads.yaml"
    path.write_text(UPLOADS)
    folder = tmp_path / "kept"
    proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(path), "--report-dir", str(tmp_path / "r"),
                           "--uploads", str(folder), *(["--workers", workers] if workers else [])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = [upload["path"] for upload in report_of(tmp_path / "r")["uploads"]]
    assert len(listed) == len(set(listed)) >= 3
    assert all(path.startswith(str(folder) + "/") for path in listed)
    assert {f"0004f200000{n}-app.log" for n in (1, 2, 3)} <= {p.name for p in folder.iterdir()}


WHEN = """\
name: virtual-shards-when
seed: 3
clock: virtual
{duration}
services:
  dhcp: {{port: 6767, subnet: 10.1.0.0/16, pool: {{start: 10.1.0.10, end: 10.1.3.250}}, lease_time_s: 7200,
         options: {{66: "http://127.0.0.1:8080/"}}}}
  http: {{port: 8080}}
provisioning:
  files:
    y000000000066.cfg: "#!version:1.0.0.1\\nstatic.auto_provision.repeat.enable = 1\\nstatic.auto_provision.repeat.minutes = 60\\n"
  per_phone: [{{name: "{{mac}}.cfg", text: "#!version:1.0.0.1\\naccount.1.user_name = {{index}}\\n"}}]
fleets:
  - {{vendor: yealink, models: {{T46S: 15, T54S: 10}}, first_mac: "00:15:65:00:00:01",
     boot: {{pattern: storm, random_delay_s: 120}}}}
timeline:
  - when: {first}
    do: {{power_cycle: {{phones: 30%}}}}
  - at: 7200
    do: {{stop_service: dhcp}}
  - name: after the outage
    when: phones.dhcp >= 20
    do: [{{start_service: dhcp}}, {{power_cycle: {{phones: 2}}}}]
{more}expect:
  - phones.ready == 100%
"""


def one_process_and_two_workers(tmp_path, text: str, workers: str = "2"):
    """The scenario ``text`` run by one process and by ``--workers 2`` (``workers``): (one's report,
    the workers' report, the workers' output), after checking that they are the same run
    (every report field but the wall-clock ones, each phone's entry with its events,
    addresses aside)."""
    path = tmp_path / "when.yaml"
    path.write_text(text)
    runs = [subprocess.run([sys.executable, "-m", "labsim", "run", str(path), "--report-dir", str(tmp_path / name),
                            *extra], capture_output=True, text=True, timeout=120)
            for name, extra in (("one", []), ("two", ["--workers", workers]))]
    for proc in runs:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = report_of(tmp_path / "one"), report_of(tmp_path / "two")
    for field in a:
        if field not in WALL_CLOCK + ("phones",):
            assert a[field] == b[field], field  # the timeline with its instants, summary, series, expectations
    for phone_a, phone_b in zip(a["phones"], b["phones"], strict=True):
        assert {k: v for k, v in phone_a.items() if k != "events"} == \
               {k: v for k, v in phone_b.items() if k != "events"}
        assert without_addresses(json.dumps(phone_a["events"])) == without_addresses(json.dumps(phone_b["events"]))
    return a, b, runs[1].stdout


def test_when_is_judged_on_the_whole_fleet_at_the_instant_one_process_judges_it(tmp_path):
    """Two conditions on the fleet's counts (half the phones ready; 20 phones back in DHCP
    after the server stopped), with an at: between them: --workers 2 fires both at the
    instants one process does (the shards meet at every condition tick), picks the same
    phones, and every phone ends as in one process."""
    a, _, output = one_process_and_two_workers(tmp_path, WHEN.format(duration="duration: 6h", first="phones.ready >= 50%",
                                                                      more=""))
    # They met at the ticks where a call was due somewhere, not at all 21,796 before the last verdict.
    met = int(re.search(r"the shards met at (\d+) condition ticks", output).group(1))
    assert 0 < met < a["timeline"][2]["t"] / 0.5 / 4
    fired = [(entry["entry"], entry["action"]) for entry in a["timeline"]]
    assert fired == [("when phones.ready >= 50%", "power_cycle"), ("at 7200s", "stop_service"),
                     ("after the outage", "start_service"), ("after the outage", "power_cycle")]
    assert 0 < a["timeline"][0]["t"] < 7200 < a["timeline"][2]["t"]


def test_when_on_percentiles_is_judged_on_every_phone_and_sample_of_the_fleet(tmp_path):
    """Conditions on percentiles (over every phone's time to ready; over every DHCP
    latency, the archived ones included, as the outage stretches them): --workers 2 fires
    them at the instants one process does (each shard sends the parent what moved, the
    parent computes the percentile as one process does); on each shard's own values they
    fire at other instants."""
    more = "  - when: stage.dhcp.p95 > 0.003\n    do: {{power_cycle: {{phones: 8}}}}\n"
    a, _, _ = one_process_and_two_workers(tmp_path, WHEN.format(duration="duration: 6h", first="time_to_ready.p90 >= 3",
                                                                 more=more.format()))
    fired = [(entry["entry"], entry["action"]) for entry in a["timeline"]]
    assert fired == [("when time_to_ready.p90 >= 3", "power_cycle"), ("at 7200s", "stop_service"),
                     ("after the outage", "start_service"), ("after the outage", "power_cycle"),
                     ("when stage.dhcp.p95 > 0.003", "power_cycle")]
    assert a["timeline"][-1]["t"] > a["timeline"][2]["t"]


def test_one_shard_keeps_what_its_conditions_read_and_judges_as_one_process(tmp_path):
    """``--workers 1``: one shard and no one to meet. It keeps what its conditions read as
    its phones move, as one process does (a look that counted over every phone and sample
    made a 1,000-phone day with a pending stage percentile take 240 s instead of 6), and
    fires them at the same instants."""
    more = "  - when: stage.dhcp.p95 > 0.003\n    do: {{power_cycle: {{phones: 8}}}}\n"
    a, _, _ = one_process_and_two_workers(tmp_path, WHEN.format(duration="duration: 6h", first="time_to_ready.p90 >= 3",
                                                                 more=more.format()), workers="1")
    assert [entry["entry"] for entry in a["timeline"]][-1] == "when stage.dhcp.p95 > 0.003"


def test_workers_auto_runs_a_scenario_with_a_when_in_one_process_and_says_so(tmp_path):
    """Shards meet at every condition tick while a when: is pending, which costs more than
    the cores give: --workers auto runs such a scenario in one process (the same run as
    without --workers); --workers 2 still shards it, and auto shards a scenario without one."""
    path = tmp_path / "when.yaml"
    path.write_text(WHEN.format(duration="duration: 3h", first="phones.ready >= 50%", more=""))

    def run(name, *extra):
        proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(path), "--report-dir", str(tmp_path / name),
                               *extra], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    said = "--workers auto: the timeline has a when: condition"
    assert said in run("auto", "--workers", "auto") and not (tmp_path / "auto" / "shards").exists()
    assert said not in run("one")
    one, auto = report_of(tmp_path / "one"), report_of(tmp_path / "auto")
    assert {k: v for k, v in one.items() if k not in WALL_CLOCK} == {k: v for k, v in auto.items() if k not in WALL_CLOCK}
    assert said not in run("two", "--workers", "2") and (tmp_path / "two" / "shards" / "shard-1-of-2").is_dir()
    path.write_text(SCENARIO.format(faults=""))
    assert said not in run("plain", "--workers", "auto") and (tmp_path / "plain" / "shards").is_dir()


def test_without_a_duration_the_run_ends_and_judges_where_the_whole_fleet_settles(tmp_path):
    """No duration: one process judges its conditions at the instant its last phone
    settles and ends there unless what fired starts phones again or a timed action is
    left. --workers 2: the condition fires at that instant (not a tick's), after one
    shard's phones had all settled, its power cycle reaches that shard's phones too, and
    the run ends where the whole fleet settles after the outage, as in one process."""
    a, _, output = one_process_and_two_workers(tmp_path, WHEN.format(duration="", first="phones.ready >= 100%",
                                                                      more=""))
    fired = [(entry["entry"], entry["outcome"]) for entry in a["timeline"]]
    assert fired == [("when phones.ready >= 100%", "power cycle: 8 phone(s)"), ("at 7200s", "stop dhcp")]
    settled_at = a["timeline"][0]["t"]
    assert settled_at % 0.5 != 0  # the instant the last phone settled, not a condition tick
    last_ready = [max(phone["ready_at_s"] for phone in a["phones"] if (int(phone["mac"][-2:], 16) - 1) % 2 == shard)
                  for shard in range(2)]
    assert min(last_ready) < max(last_ready) <= settled_at  # one shard's phones had settled first
    cycled = {(int(phone["mac"][-2:], 16) - 1) % 2 for phone in a["phones"] if phone["power_cycles"]}
    assert cycled == {0, 1}
    assert a["end_reason"] == "all phones settled"
    for name in ("one", "two"):  # the run's line, last in events.jsonl: where it ended
        run = json.loads((tmp_path / name / "events.jsonl").read_text().splitlines()[-1])
        assert (run["kind"], run["t"]) == ("run", 7200.0)
    assert "times for the fleet's end" in output


RESYNCING = """\
name: virtual-shards-resyncing
seed: 1
clock: virtual
services:
  dhcp: {port: 6767, subnet: 10.1.0.0/16, pool: {start: 10.1.0.10, end: 10.1.3.250}, lease_time_s: 7200,
         options: {66: "http://127.0.0.1:8080/"}}
  http: {port: 8080}
provisioning:
  files:
    y000000000066.cfg: "#!version:1.0.0.1\\nstatic.auto_provision.repeat.enable = 1\\nstatic.auto_provision.repeat.minutes = 1\\n"
  per_phone: [{name: "{mac}.cfg", text: "#!version:1.0.0.1\\naccount.1.user_name = {index}\\n"}]
fleets:
  - {vendor: yealink, models: {T46S: 24, T54S: 16}, first_mac: "00:15:65:00:00:01",
     boot: {pattern: storm, random_delay_s: 300}}
expect:
  - phones.ready == 100%
"""


def test_without_a_duration_or_a_timeline_a_shard_goes_on_until_the_whole_fleet_settles(tmp_path):
    """Phones resyncing every minute, no duration, no timeline: one process ends at the
    first instant every phone is settled, and until then the phones that settled early
    resync. --workers 2: a shard whose phones settled first does not end there, and every
    phone ends as in one process (a shard ending where its own phones settled lost some
    of their resyncs)."""
    a, _, output = one_process_and_two_workers(tmp_path, RESYNCING)
    assert a["end_reason"] == "all phones settled" and "times for the fleet's end" in output
    resynced = [phone for phone in a["phones"]
                if sum(event["state"] == "provisioning" and event["kind"] == "state" for event in phone["events"]) > 1]
    assert resynced  # some phones provisioned again before the fleet settled


def test_sigterm_while_the_shards_meet_at_every_tick_leaves_no_process(tmp_path):
    """A condition that never holds keeps the shards meeting at every tick for the whole
    run: SIGTERM on the parent still ends every shard, merges a partial report, and leaves
    no process."""
    path = tmp_path / "never.yaml"
    path.write_text(WHEN.format(duration="duration: 30d", first="phones.failed >= 100%", more=""))
    report = terminated_while_shards_run(path, tmp_path / "cut", settle_s=1.0)
    assert len(report["phones"]) == 25
    assert not [entry for entry in report["timeline"] if entry["entry"].startswith("when")]  # it never held


def test_sigterm_while_settled_shards_meet_before_each_instant_leaves_no_process(tmp_path):
    """No duration, a timed action far ahead: the fleet settles early and the run goes on,
    the shards meeting before each instant while their phones are settled (resyncing
    every minute). SIGTERM on the parent still ends every shard, merges a partial report,
    and leaves no process."""
    path = tmp_path / "held.yaml"
    path.write_text(RESYNCING.replace("expect:", "timeline:\n  - at: 2000000\n    do: {stop_service: http}\nexpect:"))
    report = terminated_while_shards_run(path, tmp_path / "cut", settle_s=1.0)
    assert len(report["phones"]) == 40 and report["timeline"] == []



def test_when_on_the_request_series_is_judged_on_every_shards_requests(tmp_path):
    """Conditions on the request series (the fleet's HTTP requests in all; its busiest
    minute of DHCP, as the phones lose their leases in the outage and ask again and again,
    with no server to answer): --workers 2 fires
    them at the instants one process does, each shard sending the parent its requests
    per second since the last meeting. On one shard's requests alone the first would hold
    later (half the fleet's requests)."""
    more = ("  - when: service.dhcp.requests_per_min.max >= 50\n    do: {{power_cycle: {{phones: 4}}}}\n"
            "  - when: service.http.requests_per_s.max > 1000\n    do: {{power_cycle: {{phones: 1}}}}\n")
    a, _, _ = one_process_and_two_workers(tmp_path, WHEN.format(duration="duration: 6h", first="service.http.requests >= 60",
                                                                 more=more.format()))
    fired = [(entry["entry"], entry["action"], entry["t"]) for entry in a["timeline"]]
    assert [(entry, action) for entry, action, _ in fired] == [
        ("when service.http.requests >= 60", "power_cycle"), ("at 7200s", "stop_service"),
        ("when service.dhcp.requests_per_min.max >= 50", "power_cycle"),  # the storm's busiest: 35
        ("after the outage", "start_service"), ("after the outage", "power_cycle")]
    assert 7200 + 3600 < fired[2][2] < fired[3][2]  # once the leases (7,200 s, renewed before the stop) ran out
    # The first fired at the first look at which 60 HTTP requests had been made, as counted
    # from events.jsonl (a fetch's line is at its end, its start latency_s before).
    started = sorted(round(line["t"] - line["latency_s"], 6) for line in map(json.loads, open(tmp_path / "one" / "events.jsonl"))
                     if line["kind"] == "fetch" and line["url"].startswith("http:"))
    t = fired[0][2]
    assert len([s for s in started if s <= t]) >= 60 > len([s for s in started if s <= t - 0.5])


def test_each_phone_looks_its_server_up_itself_so_two_workers_ask_the_dns_as_one_process_does(tmp_path):
    """Phones resolve their provisioning server's name each for itself (their own cache,
    emptied at every boot, kept for the record's TTL): the lab's DNS gets as many queries
    from two shards as from one process, and the captures hold the same frames. (With a
    shared cache, each shard's resolver asked for its own phones: more queries.)"""
    text = (SCENARIO.format(faults="")
            .replace('options: {66: "http://127.0.0.1:8080/"}', 'options: {66: "http://prov.lab:8080/"}')
            .replace("  tftp: {port: 6969}", "  dns: {port: 5354, records: [{name: prov.lab, type: A, value: 127.0.0.1, "
                                             "ttl: 600}]}")
            .replace("duration: 1d", "duration: 6h"))
    path = tmp_path / "by-name.yaml"
    path.write_text(text)
    reports = {}
    for name, args in (("one", ()), ("two", ("--workers", "2"))):
        proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(path), "--report-dir", str(tmp_path / name),
                               "--pcap", str(tmp_path / f"{name}.pcap"), *args], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr
        reports[name] = report_of(tmp_path / name)
    one, two = reports["one"], reports["two"]
    queries = one["services"]["dns"]["queries"]
    # 25 phones, each asking at its boot, and again when its 600 s answer has run out by
    # an hourly resync (while the DHCP server is stopped, leases run out: no downloads).
    assert queries >= 25 * 2
    assert two["services"]["dns"]["queries"] == queries
    assert one["network"]["dns_lookups"] == two["network"]["dns_lookups"]  # the shards' added up
    assert one["network"]["dns_lookups"]["queries"] == queries  # nothing lost on the way
    assert one["network"]["dns_failures"] == two["network"]["dns_failures"] == 0
    assert (tmp_path / "two.pcap").stat().st_size == (tmp_path / "one.pcap").stat().st_size

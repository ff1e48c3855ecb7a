"""``labsim run --workers N``: the same run, on N processes, with one report.

The quickstart (scaled down) on 2 workers ends with the same per-phone final states,
reboots and applied files as on 1; a timeline that power-cycles 10% of the fleet when
half of it is ready picks the same phones and behaves alike; Ctrl-C during a 2-worker
run writes a partial merged report and leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.relocate import relocated

QUICKSTART = Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml"
TIMELINE = """
timeline:
  - when: phones.ready >= 50%
    do: {power_cycle: {phones: 10%}}
"""


def run(tmp_path, name, scenario, *args, timeout=120):
    report_dir = tmp_path / name
    scenario, _ = relocated(scenario, tmp_path / f"{name}-scenario")  # fresh ports (tests/relocate.py)
    proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(scenario), "--report-dir", str(report_dir),
                           *args], capture_output=True, text=True, timeout=timeout)
    report_path = report_dir / "report.json"
    assert report_path.exists(), proc.stdout + proc.stderr
    return proc, json.loads(report_path.read_text())


def outcome(report):
    """Per phone: final state, reboots, power cycles and the MD5 of every applied file."""
    return {p["mac"]: (p["state"], p["reboots"], p["power_cycles"], p["files"]) for p in report["phones"]}


def test_quickstart_on_two_workers_ends_as_on_one(tmp_path):
    one, report1 = run(tmp_path, "w1", QUICKSTART, "--phones", "60", "--workers", "1")
    two, report2 = run(tmp_path, "w2", QUICKSTART, "--phones", "60", "--workers", "2",
                       "--pcap", str(tmp_path / "lab.pcap"), "--state-dir", str(tmp_path / "state"))
    assert one.returncode == 0 and two.returncode == 0, two.stdout + two.stderr
    assert "60 phones in 2 workers (30, 30)" in two.stdout
    assert outcome(report1) == outcome(report2)
    assert len(report2["phones"]) == 60 and report2["summary"]["by_state"]["ready"] == 60
    # Each phone's leases were unique across both shards (one DHCP authority, the parent's).
    firsts = {}
    for p in report2["phones"]:
        for e in p["events"]:
            if e["detail"].startswith("lease "):
                firsts.setdefault(e["detail"].split()[1], set()).add(p["mac"])
    assert all(len(macs) == 1 for macs in firsts.values()), "one address leased to two phones"
    # The workers served HTTP and TFTP on the shared ports (the parent none: the report's
    # counters, which add the parent's own, are the workers' sums), as many as one process
    # counted; every worker served TFTP transfers (each its own flow, hashed over both;
    # HTTP rides on few keep-alive connections at 60 phones, which may all hash to one).
    # Each shard relayed DHCP from its own address.
    assert "(TFTP, HTTP in every worker)" in two.stdout
    shards = shard_services(tmp_path / "w2")
    assert all(stats["tftp"]["transfers_ok"] > 0 for stats in shards), shards
    for name, counter in (("http", "requests"), ("tftp", "transfers_ok")):
        assert 0 < report2["services"][name][counter] == sum(stats[name][counter] for stats in shards)
    assert report2["services"]["http"]["requests"] == report1["services"]["http"]["requests"]
    assert report2["network"]["relay"]["sent"] == report1["network"]["relay"]["sent"]
    # The report's time series counts every shard's requests and phones.
    http = next(stats for server, stats in report2["summary"]["servers"].items() if server.startswith("http"))
    assert sum(report2["series"]["requests"]["http"]) == http["requests"]
    states = report2["series"]["states"]
    assert all(sum(counts) == 60 for counts in zip(*states.values()))
    assert states["off"][0] == 60 and states["off"][-1] == 0  # all off at the start, all on by the end
    for name in ("events.jsonl", "junit.xml", "report.html"):
        assert (tmp_path / "w2" / name).stat().st_size > 0
    assert sorted(os.listdir(tmp_path / "w2" / "shards")) == ["shard-0-of-2", "shard-1-of-2"]
    # --pcap: one capture per shard and the merged one, every packet once, in time order.
    shard_captures = [tmp_path / f"lab.shard-{i}-of-2.pcap" for i in range(2)]
    packets = [_pcap_times(path) for path in shard_captures]
    merged = _pcap_times(tmp_path / "lab.pcap")
    assert all(packets) and len(merged) == sum(map(len, packets)) and merged == sorted(merged)
    # --state-dir: the whole fleet's flash, as one process saves it.
    saved = json.loads((tmp_path / "state" / "flash.json").read_text())["phones"]
    assert len(saved) == 60 and all(entry["flash"]["settings"]["account.1.user_name"] for entry in saved.values())
    assert {entry["vendor"] for entry in saved.values()} == {"yealink"}


def _pcap_times(path):
    import struct

    data = path.read_bytes()
    times, offset = [], 24
    while offset < len(data):
        sec, usec, length, _ = struct.unpack_from("<IIII", data, offset)
        times.append((sec, usec))
        offset += 16 + length
    return times


def test_a_when_condition_is_judged_on_the_whole_fleet_and_reaches_every_shard(tmp_path):
    scenario = tmp_path / "timeline.yaml"
    scenario.write_text(QUICKSTART.read_text() + TIMELINE)
    _, report1 = run(tmp_path, "w1", scenario, "--phones", "60", "--workers", "1")
    two, report2 = run(tmp_path, "w2", scenario, "--phones", "60", "--workers", "2")
    assert two.returncode == 0, two.stdout + two.stderr
    cycled1 = {p["mac"] for p in report1["phones"] if p["power_cycles"]}
    cycled2 = {p["mac"] for p in report2["phones"] if p["power_cycles"]}
    assert len(cycled2) == 6 and cycled1 == cycled2  # the same 10%, picked as one process picks
    holders = {}
    for index in range(2):
        record = json.loads((tmp_path / "w2" / "shards" / f"shard-{index}-of-2" / "shard.json").read_text())
        holders.update({p["mac"]: index for p in record["phones"]})
    assert {holders[mac] for mac in cycled2} == {0, 1}, "the picked phones live in both shards"
    assert outcome(report1) == outcome(report2)
    [entry] = report2["timeline"]
    assert entry["action"] == "power_cycle" and entry["outcome"] == "power cycle: 6 phone(s)"
    lines = [json.loads(line) for line in (tmp_path / "w2" / "events.jsonl").read_text().splitlines()]
    assert [line["action"] for line in lines if line["kind"] == "action"] == ["power_cycle"]


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_ctrl_c_during_a_two_worker_run_writes_a_partial_merged_report_and_leaves_no_process(tmp_path):
    # SIGTERM takes the same path (the reactor's shutdown trigger): the one-process tests cover it.
    sig = signal.SIGINT
    scenario = tmp_path / "slow.yaml"
    # Phones that power on over 60 s: the run is still going when the signal comes.
    scenario.write_text(QUICKSTART.read_text().replace("per_second: 250", "per_second: 2")
                        .replace("per_second: 100", "per_second: 2"))
    scenario, _ = relocated(scenario, tmp_path / "relocated")
    report_dir = tmp_path / "report"
    proc = subprocess.Popen([sys.executable, "-m", "labsim", "run", str(scenario), "--phones", "100",
                             "--workers", "2", "--report-dir", str(report_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if "in 2 workers" in line:
                break
        workers = _children(proc.pid)
        assert len(workers) == 2
        time.sleep(4.0)  # a few phones ready (ready after ~2 s), most still off
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 1, err
    report = json.loads((report_dir / "report.json").read_text())
    assert report["complete"] is False and "interrupted" in report["end_reason"]
    assert len(report["phones"]) == 100
    states = report["summary"]["by_state"]
    assert states["ready"] > 0 and states["off"] > 0  # part of the way through
    assert not [pid for pid in workers if _alive(pid)], "a worker outlived the run"


def test_a_worker_that_dies_still_leaves_a_merged_report_with_every_phone(tmp_path):
    scenario = tmp_path / "slow.yaml"
    scenario.write_text(QUICKSTART.read_text().replace("per_second: 250", "per_second: 5")
                        .replace("per_second: 100", "per_second: 5"))
    scenario, _ = relocated(scenario, tmp_path / "relocated")
    report_dir = tmp_path / "report"
    proc = subprocess.Popen([sys.executable, "-m", "labsim", "run", str(scenario), "--phones", "40",
                             "--workers", "2", "--report-dir", str(report_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    workers = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "in 2 workers" not in proc.stdout.readline():
            pass
        workers = _children(proc.pid)
        time.sleep(3.0)
        # The worker of shard 1: its command line says so.
        [victim] = [pid for pid in workers if "--shard\x001/2" in open(f"/proc/{pid}/cmdline").read()]
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 1, err
    assert "worker 1 (shard 1/2) ended (killed by signal 9)" in out
    assert "shard 1/2 wrote no report" in out
    report = json.loads((report_dir / "report.json").read_text())
    assert report["complete"] is False and "worker 1 ended (killed by signal 9)" in report["end_reason"]
    assert len(report["phones"]) == 40  # the dead shard's phones too, as the parent last saw them
    assert not [pid for pid in workers if _alive(pid)]


def shard_services(report_dir, count=2) -> list[dict]:
    """Each worker's own service counters (its shard.json)."""
    return [json.loads((report_dir / "shards" / f"shard-{i}-of-{count}" / "shard.json").read_text())["services"]
            for i in range(count)]


@pytest.mark.parametrize("name", ["tftp-outage", "dns-outage"])
def test_service_outages_from_the_timeline_reach_the_phones_of_every_worker(tmp_path, name):
    """tftp-outage: stop_service/start_service of TFTP, which every worker serves; dns-outage:
    a fault on DNS (served by every worker, on port 0 here, found with --ports-file) removed
    by the timeline. Each scenario's own expectations say nobody got ready before the outage
    ended; each worker answered its share after it."""
    scenario = QUICKSTART.parent / f"{name}.yaml"
    extra = []
    if name == "dns-outage":  # DHCP (the parent's) and DNS (every worker's) on port 0
        text = scenario.read_text().replace("port: 6767", "port: 0").replace("port: 5354", "port: 0")
        scenario = tmp_path / "dns-outage.yaml"
        scenario.write_text(text)
        extra = ["--ports-file", str(tmp_path / "ports.json")]
    proc, report = run(tmp_path, name, scenario, "--phones", "20", "--workers", "2", *extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [e["passed"] for e in report["expectations"]] == [True, True]
    assert report["timeline"] and all(not e["outcome"].startswith("error") for e in report["timeline"])
    served, counter = ("tftp", "transfers_ok") if name == "tftp-outage" else ("dns", "queries")
    shards = shard_services(tmp_path / name)
    if served == "tftp":  # 20 phones' transfers, hashed over both; DNS: each worker's phones share one resolver socket
        assert all(stats[served][counter] > 0 for stats in shards), shards  # every worker served after the restart
    assert 0 < report["services"][served][counter] == sum(stats[served][counter] for stats in shards)
    if extra:
        ports = json.loads((tmp_path / "ports.json").read_text())
        assert set(ports) == {"dhcp", "http", "dns"} and all(ports.values())
        assert f"DNS 127.0.0.1:{ports['dns']}" in proc.stdout


OUTAGE_AND_FAULT = """
name: outage-and-fault
time_limit_s: 120
services:
  dhcp:
    port: 6767
    options: {66: "http://127.0.0.1:8080/"}
    classes:
      - name: lobby
        match: {vendor_class: {prefix: yealink-lobby}}
        options: {66: "tftp://127.0.0.1:6969/"}
  tftp: {port: 6969}
  http: {port: 8080}
provisioning:
  files:
    y000000000066.cfg: |
      account.1.sip_server.1.address = 127.0.0.1
  per_phone:
    - name: "{mac}.cfg"
      text: |
        account.1.user_name = 4{index:03d}
fleets:
  - name: desk
    vendor: yealink
    model: T46S
    count: 20
    first_mac: "00:15:65:41:00:01"
    boot: {pattern: storm, random_delay_s: 1}
    flash: {settings: {static.auto_provision.attempt_before_failed: 8,
                       static.auto_provision.retry_delay_after_file_transfer_failed: 2}}
  - name: lobby
    vendor: yealink
    model: T46S
    count: 20
    first_mac: "00:15:65:42:00:01"
    boot: {pattern: storm, random_delay_s: 1}
    flash: {settings: {static.auto_provision.dhcp_option.option60_value: yealink-lobby,
                       static.auto_provision.attempt_before_failed: 8,
                       static.auto_provision.retry_delay_after_file_transfer_failed: 2}}
faults:
  - {name: cfg-503, service: http, http_status: 503, path: "/*.cfg"}
timeline:
  - at: 0
    do: {stop_service: tftp}
  - at: 5
    do: [{start_service: tftp}, {remove_fault: cfg-503}]
expect:
  - phones.ready == 100%
"""


def test_a_tftp_outage_and_an_http_fault_act_in_every_worker_as_in_one_process(tmp_path):
    """TFTP stopped and started by the timeline, and an HTTP fault (503 for every .cfg)
    removed by it: with 2 workers, each serving both on the shared ports, every phone ends
    as with one process and none is ready before the timeline ended both (at 5 s)."""
    scenario = tmp_path / "outage.yaml"
    scenario.write_text(OUTAGE_AND_FAULT)
    one, report1 = run(tmp_path, "w1", scenario, "--workers", "1")
    two, report2 = run(tmp_path, "w2", scenario, "--workers", "2")
    assert one.returncode == 0 and two.returncode == 0, two.stdout + two.stderr
    assert outcome(report1) == outcome(report2)
    for report in (report1, report2):
        assert [e["action"] for e in report["timeline"]] == ["stop_service", "start_service", "remove_fault"]
        assert min(p["ready_at_s"] for p in report["phones"]) > report["timeline"][-1]["t"]
    shards = shard_services(tmp_path / "w2")
    # No phone was ready before 5 s, whichever process served it (above): every process
    # that served a .cfg before then answered 503. Which ones did is the kernel's choice
    # (SO_REUSEPORT hashes each keep-alive HTTP connection, and 20 phones' may all land on
    # one process; one CI run had a worker whose 16 requests all came after 5 s), so only
    # the sum is certain; each worker served TFTP once it was back (TFTP flows are many).
    assert sum(stats["http"]["status"].get("503", 0) for stats in shards) > 0, shards
    assert all(stats["tftp"]["transfers_ok"] > 0 for stats in shards), shards
    # The report's counters are the workers' summed (the parent serves neither).
    merged = report2["services"]
    assert merged["http"]["requests"] == sum(stats["http"]["requests"] for stats in shards)
    # (a worker whose process served no HTTP at all has no "503" in its counters)
    assert merged["http"]["status"]["503"] == sum(stats["http"]["status"].get("503", 0) for stats in shards)
    assert merged["tftp"]["transfers_ok"] == sum(stats["tftp"]["transfers_ok"] for stats in shards)
    assert report2["network"]["faults"]["http_forced"] == report2["services"]["http"]["status"]["503"]


def test_uploads_from_every_worker_are_kept_and_listed(tmp_path):
    """Polycom phones PUT their logs and overrides: whichever process takes a PUT, the file
    lands in the one upload folder and the merged report lists it."""
    from tests.e2e.test_uploads_kept import POLYCOM_RUN

    scenario = tmp_path / "uploads.yaml"
    scenario.write_text(POLYCOM_RUN.format(dhcp=6767, http=8080, time_limit=60, polling="", timeline="")
                        .replace("VVX400: 3", "VVX400: 8"))
    proc, report = run(tmp_path, "w2", scenario, "--workers", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kept = tmp_path / "w2" / "uploads"
    names = sorted(p.name for p in kept.iterdir())
    assert names == sorted(f"0004f2cc000{i}-{kind}" for i in range(1, 9) for kind in ("app.log", "phone.cfg"))
    assert sorted(u["path"] for u in report["uploads"]) == [str(kept / name) for name in names]
    shards = shard_services(tmp_path / "w2")
    assert sum(stats["http"].get("uploads", 0) for stats in shards) == report["services"]["http"]["uploads"] >= 16


def test_https_with_digest_auth_on_two_workers_is_one_server_to_the_phones(tmp_path):
    """HTTPS with Digest auth served by every worker (one certificate, the parent's; one
    nonce key: tests/unit/test_shared_ports.py shows a nonce crossing processes): as many
    challenges (401) and answers as with one process, and the same outcome per phone."""
    from tests.e2e.test_run_scenarios import scenario_text

    p = {"dhcp_port": 6767, "tftp_port": 6969, "http_port": 8080}
    text = scenario_text(option66="https://alice:s3cret@127.0.0.1:8080/", count=24, **p).replace(
        "http: {port: 8080}", """http:
    port: 8080
    tls: true
    auth: [{path: "*.cfg", scheme: digest, users: {alice: s3cret}}]""")
    scenario = tmp_path / "https.yaml"
    scenario.write_text(text)
    one, report1 = run(tmp_path, "w1", scenario, "--workers", "1")
    two, report2 = run(tmp_path, "w2", scenario, "--workers", "2")
    assert one.returncode == 0 and two.returncode == 0, two.stdout + two.stderr
    assert outcome(report1) == outcome(report2)
    assert report2["services"]["http"]["status"] == report1["services"]["http"]["status"]
    shards = shard_services(tmp_path / "w2")
    served = sum(stats["http"]["status"].get("200", 0) for stats in shards)
    assert served == report2["services"]["http"]["status"]["200"]
    assert (tmp_path / "w2" / "cert.pem").exists()


AFTER_THE_DURATION = """
timeline:
  - name: never
    when: phones.ready >= 5000
    do: {power_cycle: {phones: all}}
  - name: too late
    at: 600
    do: {stop_service: http}
"""


@pytest.mark.parametrize("duration", [("--duration", "6s"), ()], ids=["--duration", "duration in the file"])
def test_workers_run_to_the_duration_as_one_process_and_say_which_entries_never_ran(tmp_path, duration):
    """With a duration the run goes on that long whether or not the phones settle, and
    ends there even with a timed entry still to come, on workers as in one process (the
    parent had ignored the duration: it ended when the phones settled, or waited for the
    later entry until the time limit). The report names the entries that never ran."""
    scenario = tmp_path / "timed.yaml"
    text = QUICKSTART.read_text() + AFTER_THE_DURATION
    scenario.write_text(text if duration else text.replace("\ntime_limit_s:", "\nduration: 6s\ntime_limit_s:", 1))
    runs = {}
    for name, workers in (("w1", ()), ("w2", ("--workers", "2"))):
        started = time.monotonic()
        proc, report = run(tmp_path, name, scenario, "--phones", "20", *duration, *workers)
        runs[name] = (proc, report, time.monotonic() - started)
    for name, (proc, report, took) in runs.items():
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert report["end_reason"] == "duration of 6s reached" and report["complete"], (name, report["end_reason"])
        assert 6 <= report["duration_s"] < 20, (name, report["duration_s"])
        assert report["summary"]["by_state"]["ready"] == 20 and took < 60, (name, took)
        assert report["timeline"] == []
        assert report["timeline_not_run"] == [
            {"entry": "never", "why": "its condition 'phones.ready >= 5000' never held"},
            {"entry": "too late", "why": "the run ended at 0d 00:00:06, before its time, 0d 00:10:00"}]
        assert "  timeline: 'too late' never ran: the run ended at 0d 00:00:06" in proc.stdout
    assert outcome(runs["w1"][1]) == outcome(runs["w2"][1])

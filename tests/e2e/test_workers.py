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
    # Service counters are the parent's services' own; each shard relayed from its own address.
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
    assert len(saved) == 60 and all(f["settings"]["account.1.user_name"] for f in saved.values())


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


@pytest.mark.parametrize("name", ["tftp-outage", "dns-outage"])
def test_service_outages_from_the_timeline_reach_the_phones_of_every_worker(tmp_path, name):
    """tftp-outage: stop_service/start_service on the parent's TFTP; dns-outage: a fault on
    the parent's DNS removed by the timeline, phones resolving through it. Each scenario's
    own expectations say nobody got ready before the outage ended."""
    scenario = QUICKSTART.parent / f"{name}.yaml"
    proc, report = run(tmp_path, name, scenario, "--phones", "20", "--workers", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [e["passed"] for e in report["expectations"]] == [True, True]
    assert report["timeline"] and all(not e["outcome"].startswith("error") for e in report["timeline"])

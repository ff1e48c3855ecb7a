"""Merging shard reports: percentiles over every phone's samples, counters added,
expectations judged over the whole fleet, and clear errors for a missing or broken shard."""

from __future__ import annotations

import io
import json
import os
from types import SimpleNamespace

import pytest

from labsim.fleet.fleet import build_fleets
from labsim.fleet.shard import Shard
from labsim.observe.events_log import write_events
from labsim.observe.merge import MergeError, load_shard, merge_report, shard_record, write_shard_record
from labsim.observe.report import RunRecord, build_report, judge
from labsim.observe.stats import summarize
from labsim.phones.packed import EventList
from labsim.phones.phone import StageTiming
from labsim.scenario.loader import parse_scenario_text

SCENARIO = """
name: merged
seed: 3
network: {dhcp_server: 127.0.0.1}
fleets:
  - {vendor: yealink, models: {T46S: 8}, first_mac: "00:15:65:00:00:01"}
expect:
  - phones.ready == 100%
  - phones.ready == 8
  - time_to_ready.p95 < 9.7
  - phone.reboots == 1
  - {flash: {key: account.1.user_name, set: true}}
"""
# Ready times by fleet position: shard 0 (even positions) is fast, shard 1 slow.
READY_AFTER = [1.0, 9.0, 2.0, 9.2, 3.0, 9.4, 4.0, 9.6]


def _shard_dir(tmp_path, scenario, index, count=2, *, fail_mac=None, services=None):
    shard = Shard(index, count)
    members = build_fleets(scenario, shard=shard)
    for member in members:
        phone = member.phone
        position = member.order
        phone.powered_on_at = 0.5
        phone.state = "failed" if phone.mac == fail_mac else "ready"
        phone.ready_at = None if phone.mac == fail_mac else 0.5 + READY_AFTER[position]
        phone.reboots = 1
        phone.flash.settings["account.1.user_name"] = str(position)
        phone.flash.file_md5["y000000000066.cfg"] = f"md5-{position}"
        phone.stages.append(StageTiming("dhcp", 0.5, 0.5 + position / 100, "ok"))
        phone.events.append((0.5, "booting", "power on", "state"))
        phone.events.append((0.5 + READY_AFTER[position], phone.state, "", "state"))
    record = RunRecord(scenario_name=scenario.name, scenario_file="merged.yaml", seed=scenario.seed,
                       started=f"2026-12-05T00:00:0{index}+00:00", duration_s=10.0 + index, members=members,
                       expectations=scenario.expectations(),
                       services=services or {}, network={"relay": {"sent": 10 * (index + 1), "received": 5}})
    report = build_report(record, judge(record))
    directory = tmp_path / shard.label
    write_shard_record(shard_record(shard=shard, scenario=scenario, scenario_file="merged.yaml", members=members,
                                    report=report, start_at=1000.0, end_t=11.0), str(directory))
    rows = sorted(((t, m.phone.mac, kind, state, detail) for m in members for t, state, detail, kind in m.phone.events),
                  key=lambda row: row[0])
    write_events(rows, str(directory), complete=True, end_reason="all phones settled", end_t=11.0)
    return str(directory)


@pytest.fixture
def scenario():
    return parse_scenario_text(SCENARIO)


def _merge(dirs, out, **kw):
    stream = io.StringIO()
    code = merge_report(dirs, str(out), stream, **kw)
    with open(os.path.join(out, "report.json")) as handle:
        return code, json.load(handle), stream.getvalue()


def test_the_merged_report_judges_and_summarizes_the_whole_fleet(tmp_path, scenario):
    dirs = [_shard_dir(tmp_path, scenario, i, services={"http": {"requests": 7, "status": {"200": 7}}})
            for i in range(2)]
    code, report, printed = _merge(dirs[::-1], tmp_path / "out")  # any order of folders
    assert code == 0 and report["passed"] and report["complete"]
    # Phones in the order one process lists them, each shard's own.
    assert [p["mac"] for p in report["phones"]] == [f"00:15:65:00:00:0{i}" for i in range(1, 9)]
    assert [p["files"]["y000000000066.cfg"] for p in report["phones"]] == [f"md5-{i}" for i in range(8)]
    # Percentiles over all eight samples, not the mean of each shard's p95.
    whole = summarize(READY_AFTER)
    assert report["summary"]["time_to_ready_s"] == whole
    shard_p95s = [summarize(READY_AFTER[0::2])["p95"], summarize(READY_AFTER[1::2])["p95"]]
    assert whole["p95"] != sum(shard_p95s) / 2
    assert report["summary"]["stages_s"]["dhcp"]["count"] == 8
    # Counts add up; expectations on counts see all eight phones.
    assert report["summary"]["phones"] == 8 and report["summary"]["reboots_total"] == 8
    assert report["network"]["relay"] == {"sent": 30, "received": 10}
    assert report["services"]["http"] == {"requests": 14, "status": {"200": 14}}
    assert [e["passed"] for e in report["expectations"]] == [True] * 5
    assert report["expectations"][1]["observed"] == 8
    assert report["duration_s"] == 11.0 and report["started"] == "2026-12-05T00:00:00+00:00"
    # The other outputs, from the merged fleet.
    lines = (tmp_path / "out" / "events.jsonl").read_text().splitlines()
    times = [json.loads(line)["t"] for line in lines]
    assert len(lines) == 17 and times == sorted(times) and json.loads(lines[-1])["kind"] == "run"
    assert "failures=\"0\"" in (tmp_path / "out" / "junit.xml").read_text()
    assert (tmp_path / "out" / "report.html").stat().st_size > 1000
    assert "merged from 2 shards" in printed
    # The time series, rebuilt from every shard's events: phones by state over the run.
    states = report["series"]["states"]
    assert states["ready"][-1] == 8 and states["ready"][3] == 2 and states["booting"][1] == 8


def test_a_loaded_shard_keeps_each_phones_events_packed_as_the_phone_did(tmp_path, scenario):
    """The parent of a long run holds every phone's kept events: packed (8 bytes of time,
    a byte of state and kind, a shared detail) they read back as the phone recorded them;
    events of another shape are kept as they were written."""
    directory = _shard_dir(tmp_path, scenario, 0)
    members = load_shard(directory)["members"]
    events = members[0].phone.events
    assert isinstance(events, EventList)
    assert list(events) == [(0.5, "booting", "power on", "state"), (0.5 + READY_AFTER[0], "ready", "", "state")]
    details = {id(member.phone.events[0][2]) for member in members}
    assert len(details) == 1  # one "power on" for the fleet
    path = os.path.join(directory, "shard.json")
    with open(path) as handle:
        record = json.load(handle)
    record["phones"][0]["events"] = [[1.0, "booting", "power on"]]  # three fields: not a phone's
    with open(path, "w") as handle:
        json.dump(record, handle)
    assert load_shard(directory)["members"][0].phone.events == [(1.0, "booting", "power on")]


@pytest.mark.parametrize("phones", [4, 0])
def test_a_shard_record_is_written_a_phone_at_a_time_as_the_json_of_the_whole(tmp_path, scenario, phones):
    members = build_fleets(scenario, shard=Shard(0, 2))[:phones]
    for member in members:
        member.phone.events.append((0.5, "booting", "power on \u2013 \"first\"", "state"))
    record = shard_record(shard=Shard(0, 2), scenario=scenario, scenario_file="merged.yaml", members=members,
                          report={"started": "2026-12-05T00:00:00+00:00", "duration_s": 1.0, "complete": True,
                                  "end_reason": "all phones settled", "services": {}, "network": {},
                                  "timeline": []}, start_at=0.0, end_t=1.0)
    record["pcap"] = None
    written = (tmp_path / "s" / "shard.json")
    write_shard_record(record, str(tmp_path / "s"))
    whole = json.dumps({**record, "phones": list(record["phones"])}, separators=(",", ":"))
    assert written.read_text(encoding="utf-8") == whole
    assert len(json.loads(whole)["phones"]) == phones


def test_a_failure_in_one_shard_fails_the_fleet_and_the_exit_code(tmp_path, scenario):
    dirs = [_shard_dir(tmp_path, scenario, 0), _shard_dir(tmp_path, scenario, 1, fail_mac="00:15:65:00:00:04")]
    code, report, _ = _merge(dirs, tmp_path / "out")
    assert code == 1 and not report["passed"]
    assert report["summary"]["by_state"]["failed"] == 1
    assert [e["passed"] for e in report["expectations"]][:2] == [False, False]


def test_state_dir_gets_the_whole_fleets_flash(tmp_path, scenario):
    dirs = [_shard_dir(tmp_path, scenario, i) for i in range(2)]
    _merge(dirs, tmp_path / "out", state_dir=str(tmp_path / "state"))
    saved = json.loads((tmp_path / "state" / "flash.json").read_text())["phones"]
    assert len(saved) == 8 and saved["00:15:65:00:00:08"]["flash"]["settings"] == {"account.1.user_name": "7"}
    assert {(entry["vendor"], entry["model"]) for entry in saved.values()} == {("yealink", "T46S")}


def test_a_missing_shard_is_named(tmp_path, scenario):
    dirs = [_shard_dir(tmp_path, scenario, 0, count=3), _shard_dir(tmp_path, scenario, 2, count=3)]
    with pytest.raises(MergeError, match=r"shard\(s\) 1/3 missing"):
        _merge(dirs, tmp_path / "out")
    with pytest.raises(MergeError, match=r"nowhere/shard.json: no shard report here"):
        _merge(dirs + [str(tmp_path / "nowhere")], tmp_path / "out")


def test_a_broken_shard_report_is_named(tmp_path, scenario):
    dirs = [_shard_dir(tmp_path, scenario, i) for i in range(2)]
    path = os.path.join(dirs[1], "shard.json")
    with open(path, "w") as handle:
        handle.write('{"kind": "labsim-shard", "format": 1, "shard": ')
    with pytest.raises(MergeError, match=f"{path}: not readable as JSON"):
        _merge(dirs, tmp_path / "out")
    with open(path, "w") as handle:
        json.dump({"kind": "labsim-shard", "format": 1, "shard": {"index": 1, "count": 2}}, handle)
    with pytest.raises(MergeError, match=f"{path}: a shard report with a missing or malformed field"):
        _merge(dirs, tmp_path / "out")
    with open(path, "w") as handle:
        json.dump({"phones": []}, handle)
    with pytest.raises(MergeError, match=f"{path}: not a labsim shard report"):
        _merge(dirs, tmp_path / "out")


def test_shards_of_different_runs_or_twice_the_same_shard_are_refused(tmp_path, scenario):
    first = _shard_dir(tmp_path, scenario, 0)
    with pytest.raises(MergeError, match="shard 0/2 is also given as"):
        _merge([first, first], tmp_path / "out")
    other = tmp_path / "other"
    other.mkdir()
    odd = _shard_dir(other, scenario, 1, count=3)
    with pytest.raises(MergeError, match="does not belong with"):
        _merge([first, odd], tmp_path / "out")


def test_every_kind_of_events_line_reads_back_as_the_row_it_was_written_from(tmp_path):
    """The merge reads each shard's events.jsonl back into rows: every kind the log writes."""
    from labsim.observe.events_log import KINDS, EventLog, row_to_json
    from labsim.observe.merge import row_from_json
    from labsim.phones.events import FetchResult

    log = EventLog()
    message = SimpleNamespace(message_type=1, xid=0x1A2B3C4D, yiaddr="0.0.0.0")
    log.dhcp(0.1, "00:15:65:00:00:01", "out", message)
    token = log.fetch_started(0.2, "00:15:65:00:00:01", "http://127.0.0.1:8080/a.cfg")
    log.fetch_finished(token, 0.3, FetchResult("ok", body=b"abc"))
    token = log.upload_started(0.4, "00:15:65:00:00:01", "http://127.0.0.1:8080/log.txt", 12)
    log.fetch_finished(token, 0.5, FetchResult("ok"))
    rows = log.rows + [(0.6, "00:15:65:00:00:01", "state", "ready", ""),
                       (0.7, "00:15:65:00:00:01", "step", "ready", "resync"),
                       (0.8, None, "action", "at 1s", "power_cycle", "power cycle: 1 phone(s)")]
    assert {row[2] for row in rows} == set(KINDS) - {"run"}, "a new kind of line: teach row_from_json"
    for row in rows:
        line = json.loads(json.dumps(row_to_json(row)))
        assert row_to_json(row_from_json(line)) == line

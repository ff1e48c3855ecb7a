"""Virtual time in shards (labsim.scale.virtual_shards): the DHCP pool split, what is
refused, and the merge of what each shard counted (observe.merge_series) and wrote
(events.jsonl, observe.merge.merge_event_files)."""

from __future__ import annotations

import ipaddress
import json
import random

import pytest

from labsim.fleet.fleet import build_fleets
from labsim.fleet.shard import Shard
from labsim.observe.merge import MergeError, merge_event_files
from labsim.observe.merge_series import archive_record, merged_archive, merged_series, series_record
from labsim.observe.report import stage_latencies
from labsim.observe.series import TimeSeries
from labsim.observe.stage_archive import StageArchive
from labsim.phones.phone import StageTiming
from labsim.scale.virtual_shards import pool_part, virtual_shard_problems
from labsim.virtual.run import on_the_calendar
from labsim.scenario.loader import parse_scenario_text

SCENARIO = """
name: t
clock: virtual
services:
  dhcp:
    subnet: 10.0.0.0/24
    pool: {{start: 10.0.0.10, end: {end}}}
{extra}
fleets: [{{vendor: yealink, model: T46S, count: {phones}, first_mac: "00:15:65:00:00:01"}}]
{tail}
"""


def scenario(phones=10, end="10.0.0.200", extra="", tail=""):
    return parse_scenario_text(SCENARIO.format(phones=phones, end=end, extra=extra, tail=tail))


def _int(address: str) -> int:
    return int(ipaddress.IPv4Address(address))


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_the_pool_parts_are_disjoint_and_cover_the_pool(count):
    seen = []
    for index in range(count):
        start, end = pool_part("10.0.0.10", "10.0.1.9", Shard(index, count))  # 256 addresses
        seen += list(range(_int(start), _int(end) + 1))
    assert seen == list(range(_int("10.0.0.10"), _int("10.0.1.9") + 1))


def test_a_pool_smaller_than_the_shard_count_cannot_be_split():
    with pytest.raises(ValueError, match="services.dhcp.pool: 2 address"):
        pool_part("10.0.0.10", "10.0.0.11", Shard(0, 3))


def test_every_phone_is_in_exactly_one_virtual_shard():
    whole = scenario(phones=25)
    macs = [member.phone.mac for index in range(3) for member in build_fleets(whole, shard=Shard(index, 3))]
    assert sorted(macs) == sorted(member.phone.mac for member in build_fleets(whole)) and len(set(macs)) == 25


def test_one_shard_is_a_whole_run_and_keeps_everything():
    assert virtual_shard_problems(scenario(tail="timeline: [{when: phones.ready >= 50%, do: {power_cycle: "
                                                "{phones: 1}}}]"), 1) == []


def test_when_is_judged_across_shards_and_only_a_shard_run_alone_refuses_it():
    """A --workers parent judges any metric a condition reads over the whole fleet, with
    or without a duration (scale.fleet_conditions, fleet_metrics, fleet_barrier); a
    shard run alone is refused, naming the entry and the key."""
    def problems(when, duration="duration: 2h\n", **kw):
        return virtual_shard_problems(scenario(extra=duration, tail=f"timeline: [{{name: half, when: '{when}', "
                                               "do: {power_cycle: {phones: 1}}}]"), 2, **kw)

    for when in ("phones.ready >= 50%", "reboots.total >= 3", "time_to_ready.p95 < 10", "stage.dhcp.max < 2",
                 "phone.reboots <= 1"):
        assert problems(when) == [] and problems(when, duration="") == []
    found = problems("phones.ready >= 50%", parent=False)
    assert [key for key, _ in found] == ["timeline entry 1 (half): when"] and "a shard run alone" in found[0][1]


def test_a_lease_file_and_bandwidth_faults_are_refused_naming_the_key():
    keys = [key for key, _ in virtual_shard_problems(scenario(
        extra="    lease_file: leases.csv\n  ftp: {}\n  tftp: {}",
        tail="faults: [{service: ftp, bandwidth_kbps: 100}]\n"
             "timeline: [{at: 10, do: {add_fault: {service: tftp, bandwidth_kbps: 50}}}]"), 2)]
    assert keys == ["timeline entry 1: add_fault.bandwidth_kbps", "faults[0].bandwidth_kbps",
                    "services.dhcp.lease_file"]


def test_a_pool_whose_parts_are_too_small_is_refused_but_not_one_too_small_anyway():
    # 12 addresses for 12 phones: parts of 3/3/2/2/2 for shards of 3/3/2/2/2 phones: fits exactly.
    assert virtual_shard_problems(scenario(phones=12, end="10.0.0.21"), 5) == []
    # 13 addresses (parts 3/3/3/2/2), one reserved for a phone of no fleet: the pool holds
    # the 12 phones, but shard 3's part (10.0.0.19-20) is left one short for its 2.
    problems = virtual_shard_problems(scenario(phones=12, end="10.0.0.22",
                                               extra='    reservations: {"00:15:65:00:99:99": 10.0.0.19}'), 5)
    assert problems and problems[0][0] == "services.dhcp.pool" and "shard 3/5 hands out 10.0.0.19..10.0.0.20, " \
        "1 address(es) for its 2 phones" in problems[0][1]
    assert virtual_shard_problems(scenario(phones=30, end="10.0.0.19"), 4) == []  # one process is short too


# --- the merge of the counts ---------------------------------------------------------------


def _events(seed: int, phones: int, horizon: float):
    """A plausible stream of (t, phone, kind, ...) a fleet makes: requests and state changes."""
    rng = random.Random(seed)
    events = []
    for phone in range(phones):
        t = rng.uniform(0, 30)
        events.append((t, phone, "state", "off", "booting"))
        t += rng.uniform(0, 5)
        events.append((t, phone, "state", "booting", "ready"))
        while t < horizon - 100:
            t += rng.uniform(60, 900)
            events.append((t, phone, "request", rng.choice(["http", "dhcp", "tftp"])))
        if phone % 3 == 0:  # some go off for good before the end
            events.append((t, phone, "state", "ready", "failed"))
    return sorted(events, key=lambda event: event[0])


def _series(events, phones: int, horizon: float) -> TimeSeries:
    series = TimeSeries(horizon, phones)
    for event in events:
        if event[2] == "state":
            series.state_changed(event[0], event[3], event[4])
        else:
            series.request(event[3], event[0])
    return series


@pytest.mark.parametrize("horizon", [600.0, 86400.0, 3 * 86400.0])
def test_merged_series_are_what_one_process_counts(horizon):
    phones, count = 30, 3
    events = _events(1, phones, horizon)
    whole = _series(events, phones, horizon)
    records = []
    for index in range(count):
        own = [event for event in events if event[1] % count == index]
        # Shard 2 ends early (its last event), as a shard whose phones all settled does.
        end = own[-1][0] if index == 2 else horizon
        records.append(json.loads(json.dumps(series_record(_series(own, phones // count, horizon), end))))
    merged = merged_series(records, phones)
    assert merged.to_report(horizon) == whole.to_report(horizon)
    assert merged.metrics(horizon) == whole.metrics(horizon)


def test_series_of_different_buckets_are_not_merged():
    one = series_record(TimeSeries(600, 1), 600)
    other = series_record(TimeSeries(86400, 1), 600)
    with pytest.raises(ValueError, match="different buckets"):
        merged_series([one, other], 2)


def test_merged_archives_give_the_latencies_of_every_sample():
    rng = random.Random(2)

    def phone_with(timings):
        return type("P", (), {"stages": list(timings)})()

    timings = [StageTiming("boot", t, t + rng.uniform(0.001, 0.5), "ok", "http://127.0.0.1:8080")
               for t in range(200)]
    whole, parts = StageArchive(), [StageArchive(), StageArchive()]
    whole.take(phone_with(timings), keep=0)
    parts[0].take(phone_with(timings[::2]), keep=0)
    parts[1].take(phone_with(timings[1::2]), keep=0)
    merged = merged_archive([json.loads(json.dumps(archive_record(part))) for part in parts])
    assert sorted(stage_latencies([], merged)["boot"]) == sorted(stage_latencies([], whole)["boot"])
    assert merged.server_status == whole.server_status


# --- the merge of events.jsonl -------------------------------------------------------------


def _write(directory, lines):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "events.jsonl").write_text("".join(json.dumps(line, separators=(", ", ": ")) + "\n"
                                                    for line in lines))
    return {"directory": str(directory)}


def _line(t, mac, kind="state", **fields):
    return {"t": t, "mac": mac, "kind": kind, **fields}


def test_events_merge_in_time_order_ties_in_shard_order_and_one_run_line(tmp_path):
    action = _line(5.0, None, "action", entry=1, action="power_cycle", outcome="power cycle: 2 phone(s)")
    zero = _write(tmp_path / "s0", [_line(1.0, "a", state="dhcp"), _line(3.0, "a", state="ready"), action,
                                    _line(5.0, "a", state="booting"), _line(9.0, None, "run")])
    one = _write(tmp_path / "s1", [_line(1.0, "b", state="dhcp"), _line(2.0, "b", state="ready"), action,
                                   _line(5.0, "b", state="booting"), _line(8.0, None, "run")])
    out = tmp_path / "out"
    merge_event_files([zero, one], str(out), complete=True, end_reason="done", end_t=9.0, actions_of_first_only=True)
    lines = [json.loads(text) for text in (out / "events.jsonl").read_text().splitlines()]
    assert [(line["t"], line["mac"], line["kind"]) for line in lines] == [
        (1.0, "a", "state"), (1.0, "b", "state"), (2.0, "b", "state"), (3.0, "a", "state"),
        (5.0, None, "action"), (5.0, "a", "state"), (5.0, "b", "state"), (9.0, None, "run")]
    assert lines[-1] == {"t": 9.0, "mac": None, "kind": "run", "complete": True, "end_reason": "done", "events": 7}
    first = (out / "events.jsonl").read_bytes()
    merge_event_files([zero, one], str(out), complete=True, end_reason="done", end_t=9.0, actions_of_first_only=True)
    assert (out / "events.jsonl").read_bytes() == first
    merge_event_files([zero, one], str(out), complete=True, end_reason="done", end_t=9.0)
    assert sum('"kind": "action"' in text for text in (out / "events.jsonl").read_text().splitlines()) == 2


def test_a_broken_or_missing_events_file_is_named(tmp_path):
    good = _write(tmp_path / "s0", [_line(1.0, "a")])
    bad = tmp_path / "s1"
    bad.mkdir()
    (bad / "events.jsonl").write_text('{"t": 1.0, "mac": "b", "kind": "state"}\n{"t": oops\n')
    with pytest.raises(MergeError, match=r"s1/events.jsonl:2: not an events.jsonl line"):
        merge_event_files([good, {"directory": str(bad)}], str(tmp_path / "out"), complete=True, end_reason="",
                          end_t=1.0)
    with pytest.raises(MergeError, match=r"s2/events.jsonl: missing"):
        merge_event_files([good, {"directory": str(tmp_path / "s2")}], str(tmp_path / "out"), complete=True,
                          end_reason="", end_t=1.0)


# --- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("args, says", [
    (["--shard", "1/2"], "timeline entry 1: when: not possible with --shard 1/2 in virtual time"),
    (["--shard", "0/2", "--start-at", "0"], "--start-at: a virtual-time shard's clock starts at the virtual epoch"),
    (["--ui", "127.0.0.1:0", "--workers", "2"], "--ui with --clock virtual runs one process (a paced lab"),
    (["--ports-file", "ports.json"], "--ports-file with --clock virtual: nothing listens"),
])
def test_what_virtual_shards_cannot_keep_stops_the_run_before_it_starts(tmp_path, capsys, args, says):
    from labsim.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(phones=4, end="10.0.0.200", extra="",
                                    tail="timeline: [{when: phones.ready >= 50%, do: {power_cycle: {phones: 1}}}]"))
    assert main(["run", str(path), "--report-dir", str(tmp_path / "r"), *args]) == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing was started


@pytest.mark.parametrize("chunk_bytes", [1, 7, 64, 4096, 1 << 22])
def test_events_merged_a_chunk_at_a_time_are_a_line_by_line_merge(tmp_path, chunk_bytes):
    """Many shards, many ties (times on a coarse grid, runs of equal times longer than a
    batch), a line with its keys in another order: the same bytes as heapq.merge of the
    lines by time (which keeps shard order, then file order, on ties)."""
    import heapq

    rng = random.Random(chunk_bytes)
    shards, expected_streams = [], []
    for index in range(4):
        times = sorted(rng.choice([0.5, 1.0, 1.0, 1.0, 2.25, 3.0]) + rng.randrange(50) for _ in range(300))
        lines = [_line(t, f"m{index}", state=f"s{number}") for number, t in enumerate(times)]
        if index == 1:
            lines[10] = {"mac": "m1", "t": lines[10]["t"], "kind": "state", "state": "keys in another order"}
        shards.append(_write(tmp_path / f"s{index}", lines + [_line(99.0, None, "run")]))
        expected_streams.append([(line["t"], json.dumps(line, separators=(", ", ": ")) + "\n") for line in lines])
    out = tmp_path / "out"
    merge_event_files(shards, str(out), complete=True, end_reason="", end_t=99.0, chunk_bytes=chunk_bytes)
    merged = (out / "events.jsonl").read_text().splitlines(keepends=True)
    assert merged[:-1] == [line for _, line in heapq.merge(*expected_streams, key=lambda item: item[0])]


def test_the_end_reason_is_each_shards_once_and_a_shard_without_phones_says_nothing():
    from labsim.observe.merge import end_reason_of

    def shard(reason, phones):
        return {"end_reason": reason, "members": [object()] * phones}

    assert end_reason_of([shard("duration of 1d reached", 1), shard("no phones", 0),
                          shard("duration of 1d reached", 2)]) == "duration of 1d reached"
    assert end_reason_of([shard("all phones settled", 1), shard("interrupted (signal)", 1)]) == \
        "all phones settled; interrupted (signal)"
    assert end_reason_of([shard("no phones", 0), shard("no phones", 0)]) == "no phones"


def test_a_virtual_shard_and_a_real_clock_shard_are_not_merged():
    from labsim.observe.merge import check_complete_set

    def shard(index, path, **extra):
        return {"path": path, "scenario": {"name": "t", "seed": 1}, "shard": {"index": index, "count": 2}, **extra}

    check_complete_set([shard(0, "a/shard.json", clock="virtual"), shard(1, "b/shard.json", clock="virtual")])
    with pytest.raises(MergeError, match=r"b/shard.json: a real-clock shard, a/shard.json a virtual-clock one"):
        check_complete_set([shard(0, "a/shard.json", clock="virtual"), shard(1, "b/shard.json")])


def test_the_end_of_a_virtual_run_is_said_on_its_calendar():
    # The virtual clock starts on Sunday 2026-01-04 00:00 UTC: lease-expiry's "at: 6d" is
    # Saturday, its end 8d12h later Monday noon.
    assert on_the_calendar(0) == "Sunday 2026-01-04 00:00 UTC"
    assert on_the_calendar(6 * 86400) == "Saturday 2026-01-10 00:00 UTC"
    assert on_the_calendar(8 * 86400 + 12 * 3600 + 59.9) == "Monday 2026-01-12 12:00 UTC"


def test_the_parent_reads_a_shards_simulated_time_from_its_last_progress_line(tmp_path):
    # The line the shard's run loop writes (virtual/run.py) and the parent reads back.
    from labsim.observe.progress import StateCounter
    from labsim.scale.virtual_shards import _simulated_so_far
    from labsim.virtual.run import progress_line

    class Running:  # a shard still running
        def poll(self):
            return None

    counter = StateCounter(250)
    log = tmp_path / "shard.log"
    log.write_text("labsim: week: 250 phones; services: ...\n"
                   + "".join(progress_line(counter, t, wall) + "\n" for t, wall in ((3600.0, 5.2), (93784.0, 10.4))))
    assert _simulated_so_far(str(log), Running()) == "1d 02:03:04"
    log.write_text("labsim: week: 250 phones; services: ...\n")
    assert _simulated_so_far(str(log), Running()) == "starting"

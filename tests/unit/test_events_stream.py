"""events.jsonl written as the run goes: the same rows in time order, memory let go."""

import json
from operator import itemgetter
from types import SimpleNamespace

import pytest
from twisted.internet.task import Clock

from labsim.observe.events_log import EventLog, row_line
from labsim.observe.events_stream import EventStream, ScheduledWriter
from labsim.observe.report import _phone_entry
from labsim.wire.dhcp import DhcpMessage


def member(mac):
    phone = SimpleNamespace(mac=mac, events=[], events_dropped=0, model="T46S", state="ready", failure="",
                            reboots=0, power_cycles=0, powered_on_at=0.0, ready_at=1.0,
                            flash=SimpleNamespace(file_md5={}, summary=lambda: {}), stages=[], lease=None)
    return SimpleNamespace(phone=phone, vendor="yealink", fleet="f")


def record(log, phone, event):
    """What Phone._record does."""
    phone.events.append(event)
    log.phone_event(phone, event)


def test_chunks_give_the_file_one_sort_of_everything_would_and_phones_keep_head_and_tail(tmp_path):
    members = [member("00:15:65:00:00:01"), member("00:15:65:00:00:02")]
    log = EventLog(keep_per_phone=4)
    stream = EventStream(str(tmp_path / "chunked"), log, members)
    everything = []
    for hour in range(5):
        for index, m in enumerate(members):
            for step in range(3):
                record(log, m.phone, (hour * 3600.0 + 2 - step + index * 0.5, "ready", f"h{hour} s{step}", "step"))
            message = DhcpMessage(op=1, xid=hour, chaddr=b"\0" * 6, options={53: b"\x03"})
            log.dhcp(hour * 3600.0 + 1.2, m.phone.mac, "out", message)
        everything += log.rows
        stream.flush()
        assert len(members[0].phone.events) <= 4 + 1 and log.rows == []
    stream.close(end_t=5 * 3600.0, complete=True, end_reason="done")
    lines = (tmp_path / "chunked" / "events.jsonl").read_text().splitlines()
    assert lines[:-1] == [row_line(row) for row in sorted(everything, key=itemgetter(0))]
    assert json.loads(lines[-1]) == {"t": 18000.0, "mac": None, "kind": "run", "complete": True,
                                     "end_reason": "done", "events": len(everything)}
    phone = members[0].phone
    assert [e[2] for e in phone.events][:2] == ["h0 s0", "h0 s1"] and phone.events[-1][2] == "h4 s2"
    assert phone.events_dropped + len(phone.events) == 15
    entry = _phone_entry(members[0], 1000)
    assert entry["events_dropped"] == phone.events_dropped and len(entry["events"]) == len(phone.events)


def test_a_snapshot_is_the_file_so_far_and_recording_goes_on(tmp_path):
    log = EventLog()
    stream = EventStream(str(tmp_path), log)
    message = DhcpMessage(op=1, xid=1, chaddr=b"\0" * 6, options={53: b"\x01"})
    log.dhcp(0.5, "00:15:65:00:00:01", "out", message)
    log.fetch_started(0.7, "00:15:65:00:00:01", "http://127.0.0.1:8080/x.cfg")
    stream.snapshot(end_t=1.0, complete=True, end_reason="all phones settled")
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["dhcp", "fetch", "run"] and lines[1]["status"] == "unfinished"
    assert lines[-1]["events"] == 2
    log.dhcp(2.0, "00:15:65:00:00:01", "out", message)
    stream.close(end_t=3.0, complete=True, end_reason="lab closed")
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [(line["t"], line["kind"]) for line in lines] == [(0.5, "dhcp"), (2.0, "dhcp"), (3.0, "fetch"), (3.0, "run")]


@pytest.mark.parametrize("packed", [False, True], ids=["list", "StageList"])
def test_archived_timings_give_the_same_report_numbers(packed):
    """The archive takes a phone's StageList as packed numbers (pop_oldest) and any other
    list of timings one by one: the report's numbers are the same either way."""
    from labsim.observe.report import server_statistics, stage_latencies
    from labsim.observe.stage_archive import StageArchive
    from labsim.phones.phone import StageList, StageTiming

    def fleet():
        members = [member(f"00:15:65:00:00:0{n}") for n in range(1, 4)]
        for n, m in enumerate(members):
            m.phone.stages = (StageList if packed else list)([StageTiming("common_cfg" if i % 2 else "mac_cfg", i * 10.0, i * 10.0 + 0.001 * (i + n),
                                          "ok" if i % 7 else "not_found", "http://127.0.0.1:8080" if i % 3 else "")
                for i in range(50)])
        return members

    whole, moved = fleet(), fleet()
    archive = StageArchive()
    for m in moved:
        archive.take(m.phone, keep=5)
    assert all(len(m.phone.stages) == 5 for m in moved)
    assert {k: sorted(v) for k, v in stage_latencies(moved, archive).items()} == {
        k: sorted(v) for k, v in stage_latencies(whole).items()}
    assert server_statistics(moved, archive) == server_statistics(whole)


def test_written_a_few_rows_at_a_time_the_file_is_the_same_and_in_order(tmp_path):
    """The run writes a taken batch over several reactor turns (write_some with a limit);
    a take while a batch is still queued, and close, keep the order."""
    def fill(log, hour):
        for index in range(7):
            message = DhcpMessage(op=1, xid=index, chaddr=b"\0" * 6, options={53: b"\x01"})
            log.dhcp(hour * 10.0 + 7 - index, f"00:15:65:00:00:{index:02x}", "out", message)

    everything = []
    log = EventLog()
    stream = EventStream(str(tmp_path), log)
    fill(log, 0)
    everything += sorted(log.rows, key=itemgetter(0))
    stream.take()
    assert stream.write_some(3) and stream.write_some(3)  # 6 of 7 written, one row left
    fill(log, 1)
    everything += sorted(log.rows, key=itemgetter(0))
    stream.take()  # queued behind the row still waiting
    assert stream.write_some(2) is True and stream.rows_written == 8 and stream.queued == 6
    stream.close(end_t=100.0, complete=True, end_reason="done")
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert lines[:-1] == [row_line(row) for row in everything]
    assert json.loads(lines[-1])["events"] == 14


def _dhcp_rows(log, count, t):
    for index in range(count):
        message = DhcpMessage(op=1, xid=index, chaddr=b"\0" * 6, options={53: b"\x01"})
        log.dhcp(t, f"00:15:65:00:{index // 256:02x}:{index % 256:02x}", "out", message)


def _watched(clock, stream):
    """Each timer the writer arms (its delay) and each part it writes (rows), in order:
    task.Clock runs a callLater(0) chain within one advance, so the parts are told apart
    by the timers between them, one reactor turn each on a real reactor."""
    seen = []
    arm, write = clock.callLater, stream.write_some

    def call_later(delay, f, *a, **kw):
        seen.append(("timer", delay))
        return arm(delay, f, *a, **kw)

    def write_some(limit):
        before = stream.rows_written
        more = write(limit)
        seen.append(("wrote", stream.rows_written - before))
        return more

    clock.callLater, stream.write_some = call_later, write_some
    return seen


def test_the_scheduled_writer_takes_every_period_and_writes_a_bounded_part_a_turn(tmp_path):
    clock, log = Clock(), EventLog()
    stream = EventStream(str(tmp_path), log)
    seen = _watched(clock, stream)
    writer = ScheduledWriter(stream, clock, period=2.0, rows_per_turn=10, actions=lambda: [])
    writer.start()
    _dhcp_rows(log, 25, 0.5)
    clock.advance(1.9)
    assert stream.rows_written == 0 and len(log.rows) == 25  # nothing taken before the period
    clock.advance(0.1)
    assert seen == [("timer", 2.0), ("wrote", 10), ("timer", 0), ("wrote", 10), ("timer", 0), ("wrote", 5),
                    ("timer", 2.0)]  # a part a turn; all written, the next take waits a period
    _dhcp_rows(log, 3, 2.5)
    clock.advance(1.9)
    assert stream.rows_written == 25
    clock.advance(0.1)
    assert stream.rows_written == 28
    writer.stop()
    assert clock.getDelayedCalls() == []
    _dhcp_rows(log, 2, 5.0)
    clock.advance(10.0)
    assert stream.rows_written == 28 and len(log.rows) == 2  # stopped: close writes the rest
    stream.close(end_t=20.0, complete=True, end_reason="done")
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(lines) == 31 and json.loads(lines[-1])["events"] == 30


def test_the_scheduled_writer_keeps_up_with_a_fleet_that_records_more_than_a_part_a_turn(tmp_path):
    """A fleet recording more rows a turn than rows_per_turn must not fall behind: each part
    is rows_per_turn plus what was recorded since the part before. A fleet recording little
    gets small parts (a short turn for its timers), not a share of what waits."""
    clock, log = Clock(), EventLog()
    stream = EventStream(str(tmp_path), log)
    seen = _watched(clock, stream)
    writer = ScheduledWriter(stream, clock, period=1.0, rows_per_turn=5, actions=tuple)
    writer.start()
    _dhcp_rows(log, 800, 0.2)
    turns = []

    def busy_turn():  # the fleet: 40 rows a reactor turn, for 300 turns
        _dhcp_rows(log, 40, clock.seconds())
        turns.append(1)
        if len(turns) < 300:
            clock.callLater(0, busy_turn)

    clock.callLater(1.0, busy_turn)
    clock.advance(1.0)  # the take, then parts and the fleet's turns alternate
    parts = [n for what, n in seen if what == "wrote"]
    assert parts[0] == 5  # right after the take: rows_per_turn
    assert set(parts[1:10]) == {45}  # then 5 + the 40 recorded in the turn between
    clock.advance(1.0)
    clock.advance(1.0)
    assert stream.rows_written == 800 + 40 * 300 and stream.queued == 0  # kept up
    _dhcp_rows(log, 30, 3.5)
    clock.advance(1.0)
    later = [n for what, n in seen if what == "wrote"][len(parts):]
    assert later[-6:] == [5, 5, 5, 5, 5, 5]  # a quiet fleet: parts of rows_per_turn
    writer.stop()


def test_the_scheduled_writer_writes_the_timeline_actions_too(tmp_path):
    clock, log = Clock(), EventLog()
    stream = EventStream(str(tmp_path), log)
    actions = []
    writer = ScheduledWriter(stream, clock, period=1.0, rows_per_turn=100, actions=lambda: actions)
    writer.start()
    actions.append(SimpleNamespace(t=0.3, entry=0, action="power_cycle", outcome="3 phones"))
    _dhcp_rows(log, 1, 0.6)
    clock.advance(1.0)
    writer.stop()
    stream.close(end_t=2.0, complete=True, end_reason="done")
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert kinds == ["action", "dhcp", "run"]


def test_a_phones_report_entry_says_between_which_events_it_left_some_out():
    """A long run keeps a phone's first and last events in report.json; the entry names the
    times on either side of the ones left out, so report.html can draw that stretch as left
    out instead of as the state the phone was in before it."""
    from labsim.observe.html_report import PhoneTable
    from labsim.phones.phone import STATES
    from labsim.run import EVENTS_PER_PHONE_IN_REPORT as KEEP

    m = member("00:15:65:00:00:01")
    log = EventLog(keep_per_phone=KEEP)
    times = [hour * 3600.0 + offset for hour in range(150) for offset in (0.0, 0.004)]
    for t in times:  # every hour a provisioning pass of 4 ms, then ready again
        record(log, m.phone, (t, "provisioning" if t % 3600 == 0 else "ready", "", "state"))
    entry = _phone_entry(m, KEEP)
    kept = [event["t"] for event in entry["events"]]
    assert len(kept) == KEEP and entry["events_dropped"] == len(times) - KEEP
    assert entry["events_dropped_between"] == [times[KEEP // 2 - 1], times[len(times) - KEEP // 2]]
    assert kept[KEEP // 2 - 1:KEEP // 2 + 1] == entry["events_dropped_between"]
    table = PhoneTable()
    table.add(entry)
    [row] = table.rows
    # [from, to, how many, the state at "to"]: the tail starts with a pass (provisioning).
    assert row[10] == [*entry["events_dropped_between"], entry["events_dropped"], STATES.index("provisioning")]
    few = member("00:15:65:00:00:02")
    for t in times[:KEEP]:  # as many as are kept: nothing left out, nothing said
        record(log, few.phone, (t, "ready", "", "state"))
    entry = _phone_entry(few, KEEP)
    assert "events_dropped" not in entry and "events_dropped_between" not in entry and len(entry["events"]) == KEEP

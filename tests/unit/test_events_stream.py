"""events.jsonl written as a long run goes: the same rows in time order, memory let go."""

import json
from types import SimpleNamespace

from labsim.observe.events_log import EventLog, merged_rows
from labsim.observe.events_stream import EventStream
from labsim.observe.report import _phone_entry
from labsim.wire.dhcp import DhcpMessage


def member(mac):
    phone = SimpleNamespace(mac=mac, events=[], events_dropped=0, model="T46S", state="ready", failure="",
                            reboots=0, power_cycles=0, powered_on_at=0.0, ready_at=1.0,
                            flash=SimpleNamespace(file_md5={}, summary=lambda: {}), stages=[], lease=None)
    return SimpleNamespace(phone=phone, vendor="yealink", fleet="f")


def test_chunks_give_the_file_a_single_write_would_and_phones_keep_head_and_tail(tmp_path):
    members = [member("00:15:65:00:00:01"), member("00:15:65:00:00:02")]
    log = EventLog()
    reference_log, reference_members = EventLog(), [member("00:15:65:00:00:01"), member("00:15:65:00:00:02")]
    stream = EventStream(str(tmp_path / "chunked"), log, members, keep=4)
    for hour in range(5):
        for index, (m, ref) in enumerate(zip(members, reference_members)):
            for step in range(3):
                event = (hour * 3600.0 + step + index * 0.5, "ready", f"h{hour} s{step}", "step")
                m.phone.events.append(event)
                ref.phone.events.append(event)
            message = DhcpMessage(op=1, xid=hour, chaddr=b"\0" * 6, options={53: b"\x03"})
            log.dhcp(hour * 3600.0 + 1.2, m.phone.mac, "out", message)
            reference_log.dhcp(hour * 3600.0 + 1.2, m.phone.mac, "out", message)
        stream.flush()
        assert len(members[0].phone.events) <= 4 and log.rows == []
    stream.close(end_t=5 * 3600.0, complete=True, end_reason="done")
    lines = (tmp_path / "chunked" / "events.jsonl").read_text().splitlines()
    rows = merged_rows(reference_log, reference_members, end_t=5 * 3600.0)
    assert len(lines) == len(rows) + 1 and json.loads(lines[-1])["events"] == len(rows)
    assert [json.loads(line)["t"] for line in lines[:-1]] == [round(row[0], 6) for row in rows]
    assert [json.loads(line)["detail"] for line in lines[:-1] if "detail" in json.loads(line)] == [
        row[4] for row in rows if row[2] == "step"]
    phone = members[0].phone
    assert [e[2] for e in phone.events] == ["h0 s0", "h0 s1", "h4 s1", "h4 s2"] and phone.events_dropped == 11
    entry = _phone_entry(members[0], 1000)
    assert entry["events_dropped"] == 11 and len(entry["events"]) == 4


def test_archived_timings_give_the_same_report_numbers():
    from labsim.observe.report import server_statistics, stage_latencies
    from labsim.observe.stage_archive import StageArchive
    from labsim.phones.phone import StageTiming

    def fleet():
        members = [member(f"00:15:65:00:00:0{n}") for n in range(1, 4)]
        for n, m in enumerate(members):
            m.phone.stages = [StageTiming("common_cfg" if i % 2 else "mac_cfg", i * 10.0, i * 10.0 + 0.001 * (i + n),
                                          "ok" if i % 7 else "not_found", "http://127.0.0.1:8080") for i in range(50)]
        return members

    whole, moved = fleet(), fleet()
    archive = StageArchive()
    for m in moved:
        archive.take(m.phone, keep=5)
    assert all(len(m.phone.stages) == 5 for m in moved)
    assert {k: sorted(v) for k, v in stage_latencies(moved, archive).items()} == {
        k: sorted(v) for k, v in stage_latencies(whole).items()}
    assert server_statistics(moved, archive) == server_statistics(whole)

"""labsim story's reading of events.jsonl (labsim/observe/phone_history.py): one phone's
lines and the timeline's actions found in the file, in words, on the run's calendar."""

from __future__ import annotations

import json

import pytest

from labsim.observe import phone_history as history
from labsim.observe.events_log import row_line


def rows():
    """A run's rows as events_log writes them: two phones (one MAC a prefix of nothing
    else), an action, a line with text the encoder escapes."""
    one, two = "00:15:65:00:00:01", "00:15:65:00:00:10"
    return [
        (0.5, one, "state", "booting", "power on"),
        (0.5, two, "state", "booting", "power on"),
        (1.5, one, "dhcp", "out", 1, 0x1A2B3C4D, "0.0.0.0"),
        (1.501, one, "dhcp", "in", 2, 0x1A2B3C4D, "10.1.0.12"),
        (2.0, None, "action", "at 2s", "stop_service", "http stopped"),
        (2.25, one, "fetch", "http://127.0.0.1:8080/y000000000066.cfg", "ok", 131, 0.001, "", "ab" * 16),
        (2.5, two, "fetch", "http://127.0.0.1:8080/y000000000066.cfg", "refused", 0, 0.0005, "connection refused",
         ""),
        (3.0, one, "upload", "http://127.0.0.1:8080/001565000001-app.log", "error", 512, 0.002, "HTTP 405", "cd" * 16),
        (90061.25, one, "step", "provisioning", 'a "quoted" step\twith a tab'),
    ]


@pytest.fixture()
def events(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("".join(row_line(row) + "\n" for row in rows())
                    + '{"t": 90062.0, "mac": null, "kind": "run", "complete": true, "end_reason": "x", "events": 9}\n')
    return str(path)


@pytest.mark.parametrize("text", ["00:15:65:00:00:01", "00-15-65-00-00-01", "001565000001", "0015.6500.0001",
                                  " 00:15:65:00:00:01 ", "00:15:65:00:00:01".upper()])
def test_a_mac_in_any_spelling_is_the_one_events_jsonl_writes(text):
    assert history.normal_mac(text) == "00:15:65:00:00:01"


@pytest.mark.parametrize("text", ["001565", "00:15:65:00:00:0g", "", "00:15:65:00:00:01:02"])
def test_what_is_not_a_mac_is_refused_naming_it(text):
    with pytest.raises(history.HistoryError, match="is not a MAC address"):
        history.normal_mac(text)


def test_one_phones_lines_and_the_actions_in_file_order(events):
    lines = list(history.phone_lines(events, "00:15:65:00:00:01"))
    assert [(line["t"], line["kind"]) for line in lines] == [
        (0.5, "state"), (1.5, "dhcp"), (1.501, "dhcp"), (2.0, "action"), (2.25, "fetch"), (3.0, "upload"),
        (90061.25, "step")]
    assert lines[-1]["detail"] == 'a "quoted" step\\x09with a tab'  # as written (client_text), decoded
    assert [line["kind"] for line in history.phone_lines(events, "00:15:65:00:00:10", actions=False)] == [
        "state", "fetch"]
    assert list(history.phone_lines(events, "00:15:65:00:00:02")) == [
        json.loads(row_line(rows()[4]))]  # a phone with no line: only the actions


def test_each_kind_in_the_words_of_the_phone_story(events):
    words = [history.line_words(line) for line in history.phone_lines(events, "00:15:65:00:00:01")]
    assert words == [
        "booting: power on",
        "DHCP DISCOVER sent, xid 0x1a2b3c4d",
        "DHCP OFFER received (offers 10.1.0.12), xid 0x1a2b3c4d",
        "stop_service (at 2s): http stopped",
        f"GET http://127.0.0.1:8080/y000000000066.cfg: ok, 131 bytes, MD5 {'ab' * 16}, 1.0 ms",
        "PUT http://127.0.0.1:8080/001565000001-app.log: error (HTTP 405), 2.0 ms",
        'a "quoted" step\\x09with a tab',
    ]


def test_times_on_the_runs_calendar_simulated_or_wall_clock(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({
        "schema_version": 1, "started": "2026-12-06T12:33:13+00:00", "clock": "virtual",
        "simulated": {"from": "2026-01-04T00:00:00+00:00", "to": "x", "duration_s": 1}, "phones": []}, indent=1))
    calendar = history.run_calendar(str(tmp_path))
    assert calendar.virtual
    line = {"t": 90061.25, "mac": "00:15:65:00:00:01", "kind": "state", "state": "ready", "detail": ""}
    assert history.history_text(line, calendar) == "Mon 2026-01-05 01:01:01.250  +1d 01:01:01.250  state   ready"
    (tmp_path / "report.json").write_text(json.dumps({"schema_version": 1, "started": "2026-12-06T12:33:13+00:00",
                                                      "clock": "real", "simulated": None}, indent=1))
    calendar = history.run_calendar(str(tmp_path))
    assert not calendar.virtual and calendar.moment(1.5) == "Sun 2026-12-06 12:33:14.500"
    (tmp_path / "report.json").unlink()
    calendar = history.run_calendar(str(tmp_path))  # a run still going: times from the start only
    assert calendar.start is None and history.history_text(line, calendar).startswith("+1d 01:01:01.250  state")


def test_a_window_from_a_duration_or_a_calendar_moment(tmp_path):
    calendar = history.RunCalendar(1767484800.0, True)  # 2026-01-04 00:00 UTC
    assert history.window_bound("36h", calendar, "--from") == 129600
    assert history.window_bound("2d12h", calendar, "--from") == 216000
    assert history.window_bound("2026-01-10 06:00", calendar, "--to") == 6 * 86400 + 6 * 3600
    with pytest.raises(history.HistoryError, match="--to: "):
        history.window_bound("soon", calendar, "--to")
    with pytest.raises(history.HistoryError, match="does not say when it started"):
        history.window_bound("2026-01-10 06:00", history.RunCalendar(None, False), "--from")


def test_a_folder_without_events_is_said_so(tmp_path):
    with pytest.raises(history.HistoryError, match="no such folder"):
        history.events_path(str(tmp_path / "nowhere"))
    with pytest.raises(history.HistoryError, match="no events.jsonl here"):
        history.events_path(str(tmp_path))
    (tmp_path / "events.jsonl.tmp").write_text("")
    assert history.events_path(str(tmp_path)).endswith("events.jsonl.tmp")  # a run still going
    assert list(history.phone_lines(str(tmp_path / "events.jsonl.tmp"), "00:15:65:00:00:01")) == []


def test_the_newer_of_events_jsonl_and_its_tmp_is_read(tmp_path):
    """A lab the dashboard keeps open streams events.jsonl.tmp and copies it so far to
    events.jsonl at each report: the stream is the newer."""
    import os

    done, going = tmp_path / "events.jsonl", tmp_path / "events.jsonl.tmp"
    done.write_text(""), going.write_text("")
    os.utime(done, (1000, 1000))
    assert history.events_path(str(tmp_path)) == str(going)
    os.utime(going, (900, 900))
    assert history.events_path(str(tmp_path)) == str(done)


def test_a_shards_folder_reads_its_calendar_from_shard_json(tmp_path):
    """A --workers shard's folder has shard.json, no report.json: t = 0 is its start_at,
    the wall clock on sockets, the virtual clock's epoch (the lab's calendar) in virtual time."""
    record = {"format": 1, "kind": "labsim-shard", "expectations": [], "notes": [],
              "start_at": 1796561078.445937, "calendar_from": 1767484800.0, "phones": []}
    (tmp_path / "shard.json").write_text(json.dumps(record, separators=(",", ":")))
    calendar = history.run_calendar(str(tmp_path))
    assert calendar == history.RunCalendar(1796561078.445937, False)
    assert calendar.moment(1.0) == "Sun 2026-12-06 12:44:39.446"
    record["start_at"] = 1767484800.0
    (tmp_path / "shard.json").write_text(json.dumps(record, separators=(",", ":")))
    assert history.run_calendar(str(tmp_path)) == history.RunCalendar(1767484800.0, True)

"""Nearest-rank percentiles, judging a run's expectations, the report and its atomic write."""

from __future__ import annotations

import json
import os
import random
import re
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labsim.fleet.fleet import FleetMember
from labsim.observe import report as report_mod
from labsim.observe.report import (RunRecord, build_report, judge, phone_metrics, server_statistics, summary_table,
                                   write_report)
from labsim.observe.stats import percentile, summarize
from labsim.phones import yealink
from labsim.phones.phone import Phone, StageTiming
from labsim.scenario.schema import Expectation

# --- stats ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, p, expected",
    [
        # The usual worked examples of the nearest-rank method.
        ([15, 20, 35, 40, 50], 5, 15), ([15, 20, 35, 40, 50], 30, 20), ([15, 20, 35, 40, 50], 40, 20),
        ([15, 20, 35, 40, 50], 50, 35), ([15, 20, 35, 40, 50], 100, 50),
        ([3, 6, 7, 8, 8, 10, 13, 15, 16, 20], 25, 7), ([3, 6, 7, 8, 8, 10, 13, 15, 16, 20], 50, 8),
        ([3, 6, 7, 8, 8, 10, 13, 15, 16, 20], 75, 15), ([3, 6, 7, 8, 8, 10, 13, 15, 16, 20], 100, 20),
        ([42], 0, 42), ([42], 99, 42),
    ],
)
def test_nearest_rank_examples(values, p, expected):
    assert percentile(values, p) == expected


@given(st.lists(st.integers(-1000, 1000), min_size=1, max_size=300), st.sampled_from([50, 90, 95, 99, 100]))
def test_percentile_is_the_smallest_value_covering_p_percent(values, p):
    ordered = sorted(values)
    result = percentile(ordered, p)
    n = len(ordered)
    share = Fraction(p, 100)
    at_or_below = sum(1 for v in ordered if v <= result)
    below = sum(1 for v in ordered if v < result)
    # Definition of nearest rank: at least p% of values are <= the result, and fewer than
    # p% are strictly below it (otherwise a smaller value would do).
    assert Fraction(at_or_below, n) >= share
    assert Fraction(below, n) < share or below == 0


def test_percentile_of_nothing_is_none():
    assert percentile([], 95) is None
    assert summarize([])["count"] == 0 and summarize([])["p95"] is None


def test_summarize_sorts_its_input():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    summary = summarize(values)
    assert summary["count"] == 5 and summary["max"] == 5.0 and summary["mean"] == 3.0
    assert summary["p50"] == 3.0
    assert values == [5.0, 1.0, 4.0, 2.0, 3.0]  # the caller's list is left alone


# --- a small finished run ---------------------------------------------------------------


def _phone(index: int, *, state: str, reboots: int = 0, on: float | None = 0.0, ready: float | None = None,
           stages=()) -> FleetMember:
    mac = f"00:15:65:00:00:{index:02x}"
    phone = Phone(mac, "T46S", yealink, rng=random.Random(index))
    phone.state, phone.reboots, phone.powered_on_at, phone.ready_at = state, reboots, on, ready
    phone.stages = [StageTiming(name, start, end, "ok") for name, start, end in stages]
    if state == "failed":
        phone.failure = "common_cfg: not_found"
    phone.flash.file_md5["y000000000066.cfg"] = f"{index:032x}"
    phone.note("made by the test")  # through the phone's own API: the timeline's tuple shape may change
    return FleetMember("desk", "yealink", phone, on or 0.0)


def _members():
    return [
        _phone(1, state="ready", reboots=1, on=0.0, ready=2.0, stages=[("dhcp", 1.0, 1.1), ("common_cfg", 1.1, 1.3)]),
        _phone(2, state="ready", reboots=1, on=0.5, ready=4.5, stages=[("dhcp", 1.5, 1.8)]),
        _phone(3, state="ready", reboots=2, on=1.0, ready=2.0),
        _phone(4, state="failed", reboots=0, on=1.0, ready=None),
    ]


def _record(expectations, members=None, complete=True):
    return RunRecord(
        scenario_name="unit", scenario_file="unit.yaml", seed=7, started="2025-01-01T00:00:00Z",
        duration_s=12.34567, members=_members() if members is None else members,
        expectations=[Expectation(name=n, check=c) for n, c in expectations], complete=complete,
        end_reason="all phones settled" if complete else "time limit",
    )


def test_judge_computes_metrics_from_the_phones():
    record = _record([
        (None, "phones.ready == 75%"),
        ("all ready", "phones.ready == 100%"),
        (None, "phones.failed == 1"),
        (None, "reboots.total == 4"),
        ("one reboot each", "phone.reboots == 1"),
        (None, "time_to_ready.max == 4"),      # phone 2: 4.5 - 0.5
        (None, "time_to_ready.count == 3"),    # the failed phone has no ready time
        (None, "stage.dhcp.count == 2"),
        (None, "stage.common_cfg.max < 0.21"),
    ])
    verdicts = {v.name: v for v in judge(record)}
    assert verdicts["phones.ready == 75%"].passed
    assert not verdicts["all ready"].passed
    assert verdicts["phones.failed == 1"].passed
    assert verdicts["reboots.total == 4"].passed
    one_each = verdicts["one reboot each"]
    assert not one_each.passed and "00:15:65:00:00:03" in one_each.detail and "00:15:65:00:00:04" in one_each.detail
    assert verdicts["time_to_ready.max == 4"].passed
    assert verdicts["time_to_ready.count == 3"].passed
    assert verdicts["stage.dhcp.count == 2"].passed
    assert verdicts["stage.common_cfg.max < 0.21"].passed


class _NoSamples:
    """A stage archive that fails the test if its samples are read."""

    @property
    def latencies(self):
        raise AssertionError("the latencies were read")


def test_phone_metrics_computes_only_what_is_wanted():
    members = _members()
    everything, per_phone = phone_metrics(members)
    counts, none_per_phone = phone_metrics(members, _NoSamples(), wanted={"phones.ready"})
    assert counts == {name: value for name, value in everything.items()
                      if name.startswith("phones.") or name == "reboots.total"}
    assert counts["phones.ready"] == 3 and none_per_phone == {}
    stages, _ = phone_metrics(members, wanted={"stage.dhcp.p95"})
    assert stages["stage.dhcp.count"] == everything["stage.dhcp.count"] == 2
    assert "time_to_ready.max" not in stages
    ready, reboots = phone_metrics(members, _NoSamples(), wanted={"time_to_ready.max", "phone.reboots"})
    assert ready["time_to_ready.max"] == everything["time_to_ready.max"] == 4.0
    assert reboots == per_phone


def test_build_report_summary_and_phones():
    record = _record([(None, "phones.ready >= 75%"), ("named", "phones.failed == 0")])
    report = build_report(record, judge(record))
    json.dumps({**report, "phones": list(report["phones"])})  # must be plain JSON (the phones are made as read)
    assert report["scenario"] == {"name": "unit", "file": "unit.yaml", "seed": 7}
    assert report["duration_s"] == 12.346
    assert report["passed"] is False  # 'named' fails
    by_name = {e["name"]: e for e in report["expectations"]}
    assert by_name["named"]["check"] == "phones.failed == 0" and by_name["named"]["passed"] is False
    assert by_name["phones.ready >= 75%"]["passed"] is True
    summary = report["summary"]
    assert summary["phones"] == 4
    assert summary["by_state"]["ready"] == 3 and summary["by_state"]["failed"] == 1 and summary["by_state"]["off"] == 0
    assert summary["reboots_total"] == 4
    assert summary["time_to_ready_s"]["count"] == 3 and summary["time_to_ready_s"]["max"] == 4.0
    assert sorted(summary["stages_s"]) == ["common_cfg", "dhcp"]
    phones = {p["mac"]: p for p in report["phones"]}
    assert phones["00:15:65:00:00:04"]["failure"] == "common_cfg: not_found"
    assert phones["00:15:65:00:00:01"]["failure"] is None
    assert phones["00:15:65:00:00:02"]["ready_at_s"] == 4.5
    assert phones["00:15:65:00:00:03"]["files"] == {"y000000000066.cfg": f"{3:032x}"}


def test_a_report_says_its_clock_and_what_a_virtual_run_simulated():
    record = _record([])
    real = build_report(record, judge(record))
    assert real["clock"] == "real" and real["simulated"] is None
    # A virtual run from Sunday 2026-01-04 00:00 UTC whose simulated time ended 7 days and 90.5 s later.
    record.simulated_from, record.end_t = 1767484800.0, 7 * 86400 + 90.5
    virtual = build_report(record, judge(record))
    assert virtual["clock"] == "virtual"
    assert virtual["simulated"] == {"from": "2026-01-04T00:00:00+00:00", "to": "2026-01-11T00:01:30+00:00",
                                    "duration_s": 604890.5}
    assert virtual["duration_s"] == 12.346  # the wall time stays what it was


def test_report_passes_only_when_every_expectation_holds():
    record = _record([(None, "phones.ready >= 75%"), (None, "reboots.total <= 4")])
    assert build_report(record, judge(record))["passed"] is True


def test_summary_table_pass_fail_and_incomplete():
    passing = _record([(None, "phones.ready >= 75%")])
    table = summary_table(build_report(passing, judge(passing)))
    assert "PASS  phones.ready >= 75%" in table and table.rstrip().endswith("result: PASSED")
    assert "4 phones" in table and "ready 3" in table and "failed 1" in table

    failing = _record([("everyone", "phones.ready == 100%")])
    table = summary_table(build_report(failing, judge(failing)))
    assert "FAIL  everyone" in table and table.rstrip().endswith("result: FAILED")

    cut_short = _record([(None, "phones.ready >= 75%")], complete=False)
    table = summary_table(build_report(cut_short, judge(cut_short)))
    assert "INCOMPLETE: time limit" in table and table.rstrip().endswith("result: FAILED")


def test_summary_columns_are_as_wide_as_the_longest_stage_and_server():
    members = [_phone(1, state="ready", ready=2.0)]
    members[0].phone.stages = [StageTiming("dhcp", 0.0, 1.0, "ok", "dhcp://127.0.0.1"),
                               StageTiming("primary_profile", 1.0, 1.5, "ok",
                                           "https://provisioning.example.internal:8443")]
    record = _record([], members=members)
    table = summary_table(build_report(record, judge(record)))
    stage_lines = [line for line in table.splitlines() if line.startswith("  stage ")]
    server_lines = [line for line in table.splitlines() if line.startswith("  server ")]
    assert len(stage_lines) == 2 and len({line.index(" n=") for line in stage_lines}) == 1
    assert len(server_lines) == 2 and len({line.index(" requests ") for line in server_lines}) == 1
    assert "primary_profile n=1" in table


def test_summary_table_with_no_ready_phone_and_no_expectations():
    record = _record([], members=[_phone(9, state="failed")])
    table = summary_table(build_report(record, judge(record)))
    assert "time to ready" not in table and "  expectations:" not in table
    # The exit code is 0 (nothing failed), but the line does not read as a verdict on
    # the failed phone above it.
    assert table.splitlines()[-1] == ("  result: PASSED (no expectations: nothing was judged; 0 of 1 phones ready; "
                                      "add expect: to the scenario, e.g. phones.ready == 100%)")


def test_with_expectations_the_result_is_the_bare_verdict():
    record = _record([(None, "phones.ready == 100%")], members=[_phone(9, state="failed")])
    assert summary_table(build_report(record, judge(record))).splitlines()[-1] == "  result: FAILED"


def test_summary_table_says_which_statuses_a_servers_errors_were():
    phone = _phone(1, state="ready", reboots=1, on=0.0, ready=2.0)
    server = "http://127.0.0.1:8080"
    phone.phone.stages = [StageTiming("boot", 1.0, 1.1, "not_found", server), StageTiming("boot", 1.1, 1.2, "not_found", server),
                          StageTiming("common_cfg", 1.2, 1.3, "ok", server), StageTiming("mac_cfg", 1.3, 1.4, "timeout", server)]
    clean = _phone(2, state="ready", reboots=1, on=0.0, ready=2.0)
    clean.phone.stages = [StageTiming("dhcp", 0.5, 0.6, "ok", "dhcp://127.0.0.1")]
    record = _record([], members=[phone, clean])
    lines = summary_table(build_report(record, judge(record))).splitlines()
    line = next(line for line in lines if server in line)
    assert "requests 4" in line and "errors 3" in line and line.endswith("(not_found 2, timeout 1)")
    assert next(line for line in lines if "dhcp://" in line).endswith("s")  # no errors: nothing to say



def test_summary_table_of_a_virtual_run_says_what_it_simulated_and_long_times_as_days():
    # A DHCP stage across a weekend without a server: 151,126 s is 1d 17:58:46.
    phone = _phone(1, state="ready", reboots=1, on=0.0, ready=2.0)
    phone.phone.stages = [StageTiming("dhcp", 10.0, 10.0 + 151126.4092, "ok", "dhcp://127.0.0.1")]
    record = _record([], members=[phone])
    real = summary_table(build_report(record, judge(record))).splitlines()
    assert real[0] == "Scenario 'unit': 1 phones in 12.3s"
    record.simulated_from, record.end_t = 1767484800.0, 8 * 86400 + 12 * 3600
    lines = summary_table(build_report(record, judge(record))).splitlines()
    assert lines[0] == "Scenario 'unit': 1 phones, 8d 12:00:00 simulated in 12.3s"
    stage = next(line for line in lines if "stage dhcp" in line)
    assert "p50 151126.4092 (1d 17:58:46)" in stage and "max 151126.4092 (1d 17:58:46)" in stage
    assert next(line for line in lines if "dhcp://" in line).endswith("p95 151126.4092s (1d 17:58:46)")
    assert "p50 2.000  p95 2.000" in next(line for line in lines if "time to ready" in line)  # short: as before


# --- writing ----------------------------------------------------------------------------


def test_write_report_creates_the_folder_and_round_trips(tmp_path):
    record = _record([(None, "phones.ready >= 75%")])
    report = build_report(record, judge(record))
    path = write_report(report, str(tmp_path / "deep" / "dir"))
    assert path == str(tmp_path / "deep" / "dir" / "report.json")
    with open(path, encoding="utf-8") as handle:
        assert json.load(handle) == json.loads(json.dumps({**report, "phones": list(report["phones"])}))
    assert os.listdir(tmp_path / "deep" / "dir") == ["report.json"]  # no temporary left behind


def test_write_report_replaces_and_a_failed_write_leaves_the_old_report_whole(tmp_path):
    write_report({"old": True}, str(tmp_path))
    write_report({"new": 1}, str(tmp_path))
    assert json.loads((tmp_path / "report.json").read_text()) == {"new": 1}
    # json.dump fails halfway through on an object it cannot encode: a reader must still
    # see the previous complete report, not half of the new one.
    with pytest.raises(TypeError):
        write_report({"a": list(range(1000)), "b": object()}, str(tmp_path))
    assert json.loads((tmp_path / "report.json").read_text()) == {"new": 1}


def test_write_report_goes_through_a_rename(tmp_path, monkeypatch):
    renames = []
    real_replace = os.replace

    def spy(src, dst):
        renames.append((src, dst))
        assert json.loads(open(src, encoding="utf-8").read()) == {"x": 1}  # complete before the rename
        real_replace(src, dst)

    monkeypatch.setattr(report_mod.os, "replace", spy)
    write_report({"x": 1}, str(tmp_path))
    assert len(renames) == 1 and renames[0][1] == str(tmp_path / "report.json")
    assert os.path.dirname(renames[0][0]) == str(tmp_path)  # same file system, so the rename is atomic


def test_two_expectations_with_the_same_name_keep_their_own_checks():
    record = _record([("boot", "phones.ready >= 75%"), ("boot", "reboots.total <= 4")])
    report = build_report(record, judge(record))
    assert [e["check"] for e in report["expectations"]] == ["phones.ready >= 75%", "reboots.total <= 4"]


def test_phone_timeline_reaches_the_report():
    record = _record([])
    report = build_report(record, judge(record))
    events = report["phones"][0]["events"]
    assert [e["detail"] for e in events] == ["made by the test"]
    assert events[0]["state"] == "ready"


def test_the_summary_and_the_page_say_which_timeline_actions_failed_and_which_entries_never_ran(tmp_path):
    """A misspelt file in edit_file, a when: that never held, an at: after the end: the
    run may pass, and each says so in the terminal and on report.html."""
    from types import SimpleNamespace

    from labsim.observe.html_report import write_html_report
    from labsim.scenario.timeline import entry_facts

    record = _record([(None, "phones.ready >= 75%")])
    record.timeline = [
        {"t": 30.0, "entry": "typo", "action": "edit_file",
         "outcome": "error: no file 'y00000000066.cfg' among the lab's provisioning files"},
        {"t": 30.0, "entry": "typo", "action": "check_sync", "outcome": "check sync: 4 phone(s)"}]
    record.timeline_entries = entry_facts([SimpleNamespace(name="typo", at=30.0, when=None),
                                           SimpleNamespace(name="cut", at=None, when="phones.ready >= 50"),
                                           SimpleNamespace(name=None, at=7200.0, when=None)])
    record.end_t = 3600.0
    report = build_report(record, judge(record))
    assert report["passed"] and report["timeline_not_run"] == [
        {"entry": "cut", "why": "its condition 'phones.ready >= 50' never held"},
        {"entry": "at 7200s", "why": "the run ended at 0d 01:00:00, before its time, 0d 02:00:00"}]
    lines = summary_table(report).splitlines()
    assert [line for line in lines if line.startswith("  timeline: ")] == [
        "  timeline: 'typo' edit_file at 0d 00:00:30 failed: no file 'y00000000066.cfg' among the lab's "
        "provisioning files",
        "  timeline: 'cut' never ran: its condition 'phones.ready >= 50' never held",
        "  timeline: 'at 7200s' never ran: the run ended at 0d 01:00:00, before its time, 0d 02:00:00"]
    page = open(write_html_report(report, str(tmp_path), rows=[]), encoding="utf-8").read()
    section = page.split("<h2>Timeline</h2>", 1)[1].split("</section>", 1)[0]
    rows = re.findall(r'<tr class="(fail|)"><td>([^<]*)</td><td>([^<]*)</td>', section)
    assert rows == [("fail", "0d 00:00:30", "typo"), ("", "0d 00:00:30", "typo"), ("fail", "never", "cut"),
                    ("fail", "never", "at 7200s")]


def test_a_server_no_request_reached_shows_its_failed_lookups_and_no_latency():
    """Every download of prov.lab failed on DNS: the server's line counts them as such,
    with no latency (p95 -), and the report still follows its schema."""
    phone = _phone(1, state="provisioning")
    phone.phone.stages = [StageTiming("common_cfg", 1.0, 4.0, "dns", "http://prov.lab:8080"),
                          StageTiming("common_cfg", 6.0, 9.0, "dns", "http://prov.lab:8080")]
    record = _record([], members=[phone])
    report = build_report(record, judge(record))
    line = report["summary"]["servers"]["http://prov.lab:8080"]
    assert (line["requests"], line["errors"], line["by_status"]) == (2, 2, {"dns": 2})
    assert line["latency_s"]["count"] == 0 and line["latency_s"]["p95"] is None
    assert report["summary"]["stages_s"]["common_cfg"]["max"] == 3.0  # the phone's wait is still its stage's
    text = summary_table(report)
    server_line = next(line for line in text.splitlines() if "prov.lab" in line)
    assert server_line.endswith("errors 2     p95 -  (dns 2)"), server_line


def test_the_phones_dns_lookups_are_a_summary_line_when_there_were_any():
    """Whichever DNS server answered (labsim's, or network.dns_server's, which has no
    counters in the report), the summary says what the phones asked of it."""
    import dataclasses

    from labsim.transport.dns_lookup import lookup_counters

    lookups = {**lookup_counters(), "lookups": 80, "cache_hits": 20, "queries": 160, "failures": 40}
    for network, expected in ((lookup_counters(), []),
                              (lookups, ["  lookups dns    80 (cache_hits 20, queries 160, failures 40)"])):
        record = dataclasses.replace(_record([]), network={"dns_lookups": network})
        report = build_report(record, judge(record))
        assert report["network"]["dns_lookups"] == network
        assert [line for line in summary_table(report).splitlines() if "lookups dns" in line] == expected


@pytest.mark.parametrize("detail, outcome", [
    ("HTTP 503", "error HTTP 503"),
    ("HTTP: Connection was refused by other side: 111: Connection refused.", "error connection refused"),
    ("Connection was refused by other side: 111: Connection refused.", "error connection refused"),
    ("TFTP: TFTP error 0: disk full", "error TFTP 0"),
    ("FTP: 553 Could not create file.", "error FTP 553"),
    ("FTP: the server closed the connection before the reply", "error connection lost"),
    ("Connection to the other side was lost in a non-clean fashion: Connection lost.", "error connection lost"),
    ("User timeout caused connection failure.", "error timed out"),
    ("gopher:// downloads are not supported in virtual time: gopher://127.0.0.1/a", "error not supported"),
    ("something else entirely", "error"),
    ("", "error"),
])
def test_an_error_is_counted_by_its_kind_in_bounded_words(detail, outcome):
    from labsim.phones.events import error_outcome

    assert error_outcome(detail) == outcome


def test_a_servers_errors_are_counted_by_kind_from_the_phones_downloads():
    """Through the phone itself: a download answered HTTP 503 and one whose connection was
    refused are two outcomes on the server's line, the phone's own record unchanged."""
    from labsim.phones.events import Download, FetchDone, FetchResult

    phone = Phone("00:15:65:aa:00:01", "T46S", yealink, rng=random.Random(1))
    for request_id, detail in ((1, "HTTP 503"), (2, "HTTP 503"), (3, "Connection was refused by other side: 111.")):
        phone._pending[request_id] = (Download("http://127.0.0.1:8080/a.cfg", stage="common_cfg"), 1.0,
                                      "http://127.0.0.1:8080")
        phone._fetch_done(FetchDone(request_id, FetchResult("error", detail=detail)), 2.0)
    assert phone.fetch_error == ("http://127.0.0.1:8080/a.cfg", "error", "Connection was refused by other side: 111.")
    member = type("Member", (), {"phone": phone})()
    line = server_statistics([member])["http://127.0.0.1:8080"]
    assert line["by_status"] == {"error HTTP 503": 2, "error connection refused": 1} and line["errors"] == 3


def test_a_file_the_phone_only_looks_for_is_no_error_when_the_server_has_none():
    """A Yealink asks for two boot files a pass that most deployments never write: their
    404s are counted as optional_missing, not as errors, and a report does not blame a
    failed phone on them. The same 404 of a file it needs, or an optional file answered
    503, stays an error."""
    from labsim.phones.events import OPTIONAL_MISSING, Download, FetchDone, FetchResult

    phone = Phone("00:15:65:aa:00:01", "T46S", yealink, rng=random.Random(1))
    server = "http://127.0.0.1:8080"
    outcomes = [("001565aa0001.boot", True, FetchResult("not_found", detail="HTTP 404")),
                ("y000000000000.boot", True, FetchResult("not_found", detail="HTTP 404")),
                ("y000000000066.cfg", False, FetchResult("ok", b"#!version:1.0.0.1\n")),
                ("001565aa0001.cfg", False, FetchResult("not_found", detail="HTTP 404")),
                ("001565aa0001-local.cfg", True, FetchResult("error", detail="HTTP 503")),
                ("001565aa0001.boot", True, FetchResult("not_found", detail="HTTP 404"))]
    for request_id, (name, optional, result) in enumerate(outcomes, 1):
        phone._pending[request_id] = (Download(f"{server}/{name}", stage="file", optional=optional), 1.0, server)
        phone._fetch_done(FetchDone(request_id, result), 2.0)
    phone.state, phone.failure = "failed", "the test says so"
    record = _record([], members=[FleetMember("desk", "yealink", phone, 0.0)])
    line = server_statistics(record.members)[server]
    assert line["by_status"] == {OPTIONAL_MISSING: 3, "not_found": 1, "ok": 1, "error HTTP 503": 1}
    assert line["requests"] == 6 and line["errors"] == 2
    # The last miss was only a look: the phone's last error is still the 503 before it.
    assert phone.fetch_error == (f"{server}/001565aa0001-local.cfg", "error", "HTTP 503")
    lines = summary_table(build_report(record, judge(record))).splitlines()
    assert [line.split() for line in lines if line.startswith("  server ")] == [
        ["server", server, "requests", "6", "errors", "2", "p95", "1.0000s", "(error", "HTTP", "503", "1,",
         "not_found", "1,", "optional_missing", "3)"]]

"""report.html: the numbers behind each plot, and a page that is whole on its own (no
external script, style, font or image) whose plots carry the run's data."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labsim.observe import html_report
from labsim.observe.html_report import (
    build_html,
    histogram,
    nice_step,
    rate_series,
    request_times,
    state_changes,
    state_series,
    table_data,
    write_html_report,
)
from labsim.phones.phone import STATES


def phone(mac, changes, *, steps=(), fleet="desk", ready=None, on=0.0, failure=None):
    events = [{"t": t, "kind": "state", "state": s, "detail": f"to {s}"} for t, s in changes]
    events += [{"t": t, "kind": "step", "state": s, "detail": d} for t, s, d in steps]
    events.sort(key=lambda e: e["t"])
    return {"mac": mac, "vendor": "yealink", "model": "T46S", "fleet": fleet, "state": changes[-1][1] if changes else "off",
            "failure": failure, "reboots": 1, "powered_on_at_s": on, "ready_at_s": ready, "files": {}, "flash": {},
            "events": events}


def report(phones, *, complete=True, expectations=()):
    return {
        "schema_version": 1, "scenario": {"name": "unit <lab>", "file": "unit.yaml", "seed": 3},
        "started": "2025-01-01T00:00:00+00:00", "duration_s": 10.0, "complete": complete,
        "end_reason": "all phones settled" if complete else "time limit of 10s reached",
        "passed": all(e["passed"] for e in expectations), "expectations": list(expectations),
        "summary": {"phones": len(phones), "by_state": {s: sum(p["state"] == s for p in phones) for s in STATES},
                    "reboots_total": len(phones),
                    "time_to_ready_s": {"count": 0, "p50": None, "p90": None, "p95": None, "p99": None, "max": None,
                                        "mean": None},
                    "stages_s": {}},
        "services": {}, "network": {}, "phones": phones,
    }


def three_phones():
    return [
        phone("00:15:65:00:00:01", [(1.0, "booting"), (2.0, "dhcp"), (3.0, "provisioning"), (4.0, "ready")],
              steps=[(3.5, "provisioning", "downloaded y000000000066.cfg")], ready=4.0, on=1.0),
        phone("00:15:65:00:00:02", [(2.0, "booting"), (3.0, "dhcp"), (5.0, "provisioning"), (6.0, "failed")],
              on=2.0, failure="common_cfg: not_found", fleet="lobby"),
        phone("00:15:65:00:00:03", []),  # never powered on
    ]


# --- the numbers ---------------------------------------------------------------------


def test_state_series_counts_each_phone_in_its_state_at_each_moment():
    phones = three_phones()
    times, series = state_series([c for p in phones for c in state_changes(p)], len(phones), end_t=10.0,
                                 samples=10)
    assert times == [float(k) for k in range(11)]
    assert series["off"] == [3, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    assert series["booting"] == [0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert series["dhcp"] == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert series["provisioning"] == [0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0]
    assert series["ready"] == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    assert series["failed"] == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]


@given(st.lists(st.lists(st.tuples(st.floats(0, 100), st.sampled_from(STATES)), max_size=8), max_size=12))
def test_state_series_always_accounts_for_every_phone(timelines):
    phones = [phone(f"00:00:00:00:00:{i:02x}", sorted(changes)) for i, changes in enumerate(timelines)]
    times, series = state_series([c for p in phones for c in state_changes(p)], len(phones), end_t=50.0,
                                 samples=20)
    assert len(times) == 21
    for index in range(len(times)):
        assert sum(series[state][index] for state in STATES) == len(phones)
        assert all(series[state][index] >= 0 for state in STATES)


@given(st.lists(st.floats(0, 1e4, allow_nan=False), min_size=1, max_size=200))
def test_histogram_puts_every_value_in_the_bin_that_covers_it(values):
    start, width, counts = histogram(values, bins=17)
    assert sum(counts) == len(values) and len(counts) == 17
    assert start <= min(values) and start + width * 17 >= max(values)
    for value in values:
        index = min(16, int((value - start) / width))
        assert start + index * width <= value * (1 + 1e-9) + 1e-12


@given(st.lists(st.sampled_from([0.001, 0.002, 0.0015, 0.25, 3.0, 30.0]), min_size=1, max_size=500))
def test_histogram_counts_each_value_where_it_falls_however_often_it_repeats(values):
    """A long run's latencies are a few values repeated millions of times: counted once
    each, binned with their count, the same counts as binning every value."""
    start, width, counts = histogram(values, bins=17)
    expected = [0] * 17
    for value in values:
        expected[min(16, max(0, int((value - start) / width)))] += 1
    assert counts == expected


def test_histogram_starts_at_zero_unless_the_values_sit_far_from_it():
    assert histogram([0.1, 0.5, 1.0])[0] == 0.0
    start, _, _ = histogram([10.0, 10.5, 11.0])
    assert 9.0 <= start <= 10.0
    # One value however often (a virtual run's hop): from zero, the bar at the value.
    start, width, counts = histogram([0.001] * 5000, bins=20)
    assert start == 0.0 and counts[int(0.001 / width)] == 5000 and 0.001 < 20 * width < 0.0015


def test_requests_are_counted_when_they_left_per_service():
    rows = [
        (0.5, "m", "dhcp", "out", 1, 1, "0.0.0.0"),
        (0.6, "m", "dhcp", "in", 2, 1, "10.0.0.1"),  # a reply is not a request
        (2.5, "m", "fetch", "http://127.0.0.1/a", "ok", 10, 1.0, ""),  # left at 1.5
        (3.0, "m", "fetch", "tftp://127.0.0.1/a", "ok", 10, 0.1, ""),
        (3.0, "m", "fetch", "gopher://127.0.0.1/a", "error", 0, 0.0, ""),
        (3.0, "m", "state", "ready", ""),
    ]
    times = request_times(rows)
    assert times == {"dhcp": [0.5], "http": [1.5], "tftp": [2.9], "other": [3.0]}
    width, rates = rate_series(times, end_t=4.0, buckets=4)
    assert width == 1.0
    assert rates["dhcp"] == [1.0, 0, 0, 0, 0] and rates["http"] == [0, 1.0, 0, 0, 0] and rates["tftp"][2] == 1.0


@pytest.mark.parametrize("span, step", [(1.0, 0.2), (10, 2), (0.9, 0.2), (30, 5), (33, 10), (2000, 500), (0, 1.0)])
def test_nice_steps(span, step):
    assert nice_step(span, 6) == pytest.approx(step)


# --- the page ------------------------------------------------------------------------


class Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data

    def find(self, tag, **attrs):
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def page_of(rep, **kwargs) -> tuple[str, Elements]:
    text = build_html(rep, **kwargs)
    parser = Elements()
    parser.feed(text)
    return text, parser


ROWS = [(1.0, "00:15:65:00:00:01", "dhcp", "out", 1, 5, "0.0.0.0"),
        (3.5, "00:15:65:00:00:01", "fetch", "http://127.0.0.1/a", "ok", 10, 0.5, "")]


def test_the_page_needs_nothing_from_outside():
    text, page = page_of(report(three_phones()), stage_latencies={"dhcp": [0.1, 0.2]}, rows=ROWS)
    assert not page.find("link") and not page.find("img") and not page.find("iframe")
    assert all("src" not in attrs for _, attrs in page.tags)
    assert not re.search(r"@import|url\(|@font-face", text)
    assert not re.search(r"""(?:href|src)\s*=\s*["']?(?:https?:)?//""", text)
    assert "http://www.w3.org/2000/svg" in text  # the SVG namespace is a name, not a fetch


def test_the_plots_carry_the_runs_data():
    _, page = page_of(report(three_phones()), stage_latencies={"dhcp": [0.1, 0.2, 0.3], "mac_cfg": [1.0]}, rows=ROWS)
    areas = {a["data-state"]: a for a in page.find("path", **{"class": "area"})}
    # Every state some phone was in gets an area, and nothing else.
    assert set(areas) == {"off", "booting", "dhcp", "provisioning", "ready", "failed"}
    assert all(int(a["data-points"]) == html_report.STATE_SAMPLES + 1 for a in areas.values())
    figures = page.find("figure", **{"class": "histogram"})
    assert len(figures) == 3  # power on -> ready, and one per stage
    markers = page.find("line", **{"class": "marker"})
    assert [m["data-percentile"] for m in markers] == ["p50", "p95", "p99"] * 3
    assert len(page.find("rect", **{"class": "bar"})) >= 1 + 3 + 1
    rates = {a["data-service"] for a in page.find("polyline", **{"class": "rate"})}
    assert rates == {"dhcp", "http"}


def test_the_phone_table_data_round_trips_even_with_script_breaking_text():
    phones = three_phones()
    phones[1]["failure"] = "</script><script>alert(1)</script> <!-- ü"
    _, page = page_of(report(phones), rows=ROWS)
    data_script = page.scripts[0]
    rows = json.loads(data_script)
    assert [row[0] for row in rows] == [p["mac"] for p in phones]
    assert rows[1][8] == phones[1]["failure"]
    assert rows[0][9][0] == [1.0, STATES.index("booting"), 0, "to booting"]
    assert [0 if e["kind"] == "state" else 1 for e in phones[0]["events"]] == [r[2] for r in rows[0][9]]
    assert len(page.scripts) == 2  # the data and the table's own script; nothing else


def test_an_incomplete_run_says_so_and_failed_expectations_show():
    expectations = [{"name": "all ready", "check": "phones.ready == 100%", "passed": False, "observed": 1,
                     "detail": "33.3% of 3"}]
    text, page = page_of(report(three_phones(), complete=False, expectations=expectations))
    assert "INCOMPLETE: time limit of 10s reached" in text and "FAILED" in text
    assert page.find("tr", **{"class": "fail"})
    assert "unit &lt;lab&gt;" in text  # the scenario's name is escaped
    assert "No event log for this run." in text


def test_a_big_fleet_keeps_the_page_small():
    phones = [phone(f"00:15:65:00:{i // 256:02x}:{i % 256:02x}", [(1.0, "booting"), (2.0, "dhcp"), (3.0, "ready")],
                    steps=[(2.5, "dhcp", "step")] * 3) for i in range(100)]
    rows, note = table_data(phones, budget=400)
    assert len(rows) == 100 and all(len(r[9]) == 3 for r in rows)  # steps dropped, every phone kept
    assert "Steps inside states are left out" in note
    rows, note = table_data(phones, budget=150)
    assert len(rows) == 50 and "first 50 of 100 phones" in note
    rows, note = table_data(phones)
    assert len(rows) == 100 and note == "" and len(rows[0][9]) == 6


def _table_counted_first(phones, budget):
    """The table's rule as stated: steps only if every phone's events fit the budget (all
    counted first), then rows until the first that does not fit."""
    total = sum(len(p["events"]) for p in phones)
    with_steps = total <= budget
    rows, used, note = [], 0, ""
    for count, p in enumerate(phones):
        events = [[e["t"], STATES.index(e["state"]) if e["state"] in STATES else 0, int(e["kind"] != "state"),
                   e["detail"]] for e in p["events"] if with_steps or e["kind"] == "state"]
        if used + len(events) > budget and rows:
            note = f"The table shows the first {count} of {len(phones)} phones; report.json and events.jsonl have every one."
            break
        used += len(events)
        rows.append([p["mac"], p["fleet"], p["vendor"], p["model"], p["state"], p["reboots"], p["powered_on_at_s"],
                     p["ready_at_s"], p["failure"] or "", events, None])  # None: no events left out
    if not with_steps:
        note = ("Steps inside states are left out of the timelines to keep the page small; "
                "events.jsonl has them. " + note).strip()
    return rows, note


@pytest.mark.parametrize("seed", range(30))
def test_the_phone_table_made_in_one_pass_is_the_table_of_every_phone_counted_first(seed):
    """html_pieces makes each phone's row as the phone comes (a run's entries are made as
    they are read): the same rows and note as when every phone's events are counted first,
    whether the budget ends before, at or after the phones' states and steps."""
    import random

    rng = random.Random(seed)
    phones = []
    for i in range(rng.randrange(1, 40)):
        changes = [(float(n), rng.choice(STATES)) for n in range(rng.randrange(0, 6))]
        steps = [(n + 0.5, "provisioning", f"step {n}") for n in range(rng.randrange(0, 12))]
        phones.append(phone(f"00:15:65:00:00:{i:02x}", changes, steps=steps))
    total = sum(len(p["events"]) for p in phones)
    states = sum(e["kind"] == "state" for p in phones for e in p["events"])
    budget = rng.choice([0, 1, 5, states // 2, states, states + 1, total - 1, total, total + 10])
    assert table_data(phones, budget=max(budget, 0)) == _table_counted_first(phones, max(budget, 0))


def test_a_run_with_no_phones_or_requests_still_renders(tmp_path):
    path = write_html_report(report([]), str(tmp_path), rows=[])
    text = open(path, encoding="utf-8").read()
    assert "No requests were recorded." in text and text.rstrip().endswith("</html>")
    assert not (tmp_path / "report.html.tmp").exists()


def test_facts_gathered_while_report_json_is_written_make_the_same_page(tmp_path):
    """report.html's facts gathered as report.json writes each phone (one pass over the
    phones) give the page made from the phones; another report's facts are not used."""
    from labsim.observe.html_report import PageFacts, html_pieces
    from labsim.observe.report import write_report

    rep = report(three_phones())
    facts = PageFacts(rep)
    write_report(rep, str(tmp_path), each_phone=facts.add)
    assert facts.phones == 3
    assert html_pieces(rep, facts=facts) == html_pieces(rep)
    other = report(three_phones()[:1] * 3)  # as many phones, other events
    assert html_pieces(other, facts=facts) == html_pieces(other) != html_pieces(rep)


# --- the time axes ---------------------------------------------------------------------------


@pytest.mark.parametrize("end_t, labels", [
    (604800, ["0", "1d", "2d", "3d", "4d", "5d", "6d", "7d"]),
    (734400, ["0", "1d", "2d", "3d", "4d", "5d", "6d", "7d", "8d"]),  # lease-expiry's 8d12h: a tick a day
    (86400, ["0", "3h", "6h", "9h", "12h", "15h", "18h", "21h", "1d"]),
    (3600, ["0", "10m", "20m", "30m", "40m", "50m", "1h"]),
])
def test_a_long_runs_time_axis_steps_as_a_clock_and_speaks_durations(end_t, labels):
    title, values, texts = html_report.time_axis(end_t)
    assert title == "time since the run started" and texts == labels
    assert values == [i * (values[1] - values[0]) for i in range(len(values))] and values[-1] <= end_t


def test_a_short_runs_time_axis_is_in_seconds():
    title, values, texts = html_report.time_axis(45)
    assert title == "seconds since the run started" and texts == ["0", "5", "10", "15", "20", "25", "30", "35", "40", "45"]


def test_a_weeks_plots_are_ticked_in_days_and_buckets_said_as_durations():
    bucket = 600
    count = 7 * 86400 // bucket + 1
    series = {"bucket_s": bucket, "requests": {"http": [3] * count},
              "states": {state: [2 if state == "ready" else 0] * count for state in STATES}}
    for svg in (html_report.states_svg([], 2, 7 * 86400, series), html_report.rates_svg(None, 7 * 86400, series)):
        ticks = re.findall(r'<text class="tick" x="[\d.]+" y="[\d.]+" text-anchor="middle">([^<]*)</text>', svg)
        assert ticks == ["0", "1d", "2d", "3d", "4d", "5d", "6d", "7d"], ticks
    assert "time since the run started (buckets of 10m)" in html_report.rates_svg(None, 7 * 86400, series)


def test_a_virtual_runs_page_says_what_it_simulated_and_its_axes_end_there():
    rep = report(three_phones())
    rep["simulated"] = {"from": "2026-01-04T00:00:00+00:00", "to": "2026-01-11T00:00:00+00:00", "duration_s": 604800.0}
    page = build_html(rep)
    facts = dict(re.findall(r"<dt>([^<]*)</dt><dd>([^<]*)</dd>", page))
    assert facts["simulated"] == "7d, Sun 2026-01-04 00:00 UTC to Sun 2026-01-11 00:00 UTC"
    assert facts["wall time"] == "10.0 s" and "duration" not in facts
    assert html_report.PageFacts(rep).end_t == 604800.0  # not the 10 s of wall time
    real = dict(re.findall(r"<dt>([^<]*)</dt><dd>([^<]*)</dd>", build_html(report(three_phones()))))
    assert real["duration"] == "10.0 s" and "simulated" not in real


SUNDAY = 1767484800.0  # Sun 2026-01-04 00:00 UTC, the default clock_starts


@pytest.mark.parametrize("end_t, start, notes", [
    (7 * 86400, SUNDAY, ["Sun 4 Jan", "Mon 5 Jan", "Tue 6 Jan", "Wed 7 Jan", "Thu 8 Jan", "Fri 9 Jan", "Sat 10 Jan",
                         "Sun 11 Jan"]),
    (86400, SUNDAY, ["Sun 4 Jan", "03:00", "06:00", "09:00", "12:00", "15:00", "18:00", "21:00", "Mon 5 Jan"]),
    # a start that is not a midnight: the first tick of each day says the day's name
    (3 * 86400, SUNDAY + 12.5 * 3600, ["Sun 12:30", "Mon 00:30", "12:30", "Tue 00:30", "12:30", "Wed 00:30", "12:30"]),
    (2 * 86400, SUNDAY - 3600, ["Sat 23:00", "Sun 05:00", "11:00", "17:00", "23:00", "Mon 05:00", "11:00", "17:00",
                                "23:00"]),
    (10 * 86400, SUNDAY + 6 * 3600, ["Sun 06:00", "Mon 06:00", "Tue 06:00", "Wed 06:00", "Thu 06:00", "Fri 06:00",
                                     "Sat 06:00", "Sun 06:00", "Mon 06:00", "Tue 06:00", "Wed 06:00"]),
    (3600, SUNDAY, None),  # an hour: 10-minute ticks, the duration says enough
    (7 * 86400, None, None),  # a run on the real clock: no calendar in its report
])
def test_a_long_virtual_runs_ticks_also_say_the_labs_calendar(end_t, start, notes):
    _, values, _ = html_report.time_axis(end_t)
    assert html_report.calendar_notes(values, start) == notes


def test_a_virtual_weeks_page_has_the_calendar_under_its_time_axes_and_a_real_runs_has_not():
    rep = report(three_phones())
    bucket = 600
    count = 7 * 86400 // bucket + 1
    rep["series"] = {"bucket_s": bucket, "requests": {"http": [3] * count},
                     "states": {state: [2 if state == "ready" else 0] * count for state in STATES}, "peaks": {}}
    real = build_html(rep)
    rep["simulated"] = {"from": "2026-01-04T00:00:00+00:00", "to": "2026-01-11T00:00:00+00:00", "duration_s": 604800.0}
    virtual = build_html(rep)
    notes = re.findall(r'<text class="tick calendar" x="[\d.]+" y="[\d.]+" text-anchor="(\w+)">([^<]*)</text>',
                       virtual)
    week = ["Sun 4 Jan", "Mon 5 Jan", "Tue 6 Jan", "Wed 7 Jan", "Thu 8 Jan", "Fri 9 Jan", "Sat 10 Jan", "Sun 11 Jan"]
    assert [note for _, note in notes] == week * 2, notes  # the phones' states, the requests
    assert [anchor for anchor, _ in notes] == (["middle"] * 7 + ["end"]) * 2  # the last one kept inside the plot
    assert html.escape("below it, the lab's calendar (UTC)") in virtual
    assert "tick calendar" not in real and "lab's calendar" not in real


def test_the_servers_section_is_the_load_tests_numbers_with_errors_by_outcome():
    rep = report(three_phones(), expectations=[{"name": "n", "check": "phones.ready >= 1", "passed": True,
                                                 "observed": 1, "detail": ""}])
    latency = {"count": 3, "p50": 0.002, "p90": 0.004, "p95": 0.004, "p99": 0.004, "max": 32400.0, "mean": 0.003}
    rep["summary"]["servers"] = {
        "dhcp://127.0.0.1": {"requests": 3, "errors": 0, "by_status": {"ok": 3}, "latency_s": latency},
        "http://prov.lab:8080": {"requests": 9, "errors": 6, "by_status": {"dns": 2, "error HTTP 503": 4, "ok": 3},
                                 "latency_s": {**latency, "max": 0.5}},
    }
    text, page = page_of(rep)
    rows = page.find("tr", **{"data-server": "http://prov.lab:8080"})
    assert rows and rows[0]["class"] == "fail" and page.find("tr", **{"data-server": "dhcp://127.0.0.1"})[0]["class"] == ""
    assert "<td>http://prov.lab:8080</td><td>9</td><td>6</td><td>dns 2, error HTTP 503 4</td>" in text
    assert "<td>2 ms</td><td>4 ms</td><td>4 ms</td><td>0d 09:00:00</td>" in text  # a long one as a clock
    assert "nothing was judged" not in text


def test_a_page_with_no_expectations_says_nothing_was_judged():
    text, _ = page_of(report(three_phones()))
    assert '<span class="badge passed">PASSED</span><span class="badge unjudged">no expectations: nothing was judged' \
        in text

"""Expectations judged over a part of every day: ``during [DAYS] [HH:MM-HH:MM]``
(labsim/observe/day_window.py), on the time series (labsim/observe/series.py)."""

from array import array

import pytest
from hypothesis import given, strategies as st

from labsim.observe.day_window import BadWindow, parse_window
from labsim.observe.series import TimeSeries
from labsim.phones.local_time import CALENDAR_ORIGIN_S
from labsim.scenario.expectations import BadExpectation, evaluate, parse_expectation

SUNDAY = float(CALENDAR_ORIGIN_S)  # 2026-01-04 00:00 UTC
H = 3600


@pytest.mark.parametrize("text, normal, days, hours", [
    ("mon-fri 08:00-18:00", "mon-fri 08:00-18:00", {1, 2, 3, 4, 5}, (8 * H, 18 * H)),
    ("Sat", "sat", {6}, (0, 24 * H)),
    ("fri-mon", "fri-mon", {5, 6, 0, 1}, (0, 24 * H)),  # across the week's end
    ("22:00-06:00", "22:00-06:00", set(range(7)), (22 * H, 6 * H)),
    ("8:30-24:00", "08:30-24:00", set(range(7)), (8 * H + 1800, 24 * H)),
    ("00:00-24:00", "00:00-24:00", set(range(7)), (0, 24 * H)),
    ("18:00-00:00", "18:00-00:00", set(range(7)), (18 * H, 0)),  # to midnight, as a wrap
])
def test_a_window_reads_as_written(text, normal, days, hours):
    window = parse_window(text)
    assert (window.text, set(window.days), (window.start_s, window.end_s)) == (normal, days, hours)


@pytest.mark.parametrize("text, says", [
    ("", "give days, hours or both"), ("funday", "not a day"), ("mon-xyz", "not a day"),
    ("25:00-26:00", "hours 00:00 to 24:00"), ("08:00-08:60", "hours 00:00 to 24:00"),
    ("08:00-08:00", "is empty"), ("8-18", "not hours HH:MM-HH:MM"), ("08:00-18:00 mon", "days come before hours"),
    ("mon 08:00-18:00 x", "give days, hours or both"),
])
def test_a_window_that_does_not_read_says_why(text, says):
    with pytest.raises(BadWindow, match=says):
        parse_window(text)


@pytest.mark.parametrize("text, start, end_t, ranges", [
    # the run starts on Sunday 00:00: Monday's 08:00-18:00 is 32-42 h in
    ("mon 08:00-18:00", SUNDAY, 3 * 86400, [(32 * H, 42 * H)]),
    # starting at Monday 12:00, the first window is half over; the next Monday is out of the run
    ("mon 08:00-18:00", SUNDAY + 36 * H, 2 * 86400, [(0, 6 * H)]),
    # the night wraps on its own day; the run's last second (27:00) counts
    ("22:00-06:00", SUNDAY, 86400 + 3 * H, [(0, 6 * H), (22 * H, 24 * H), (24 * H, 27 * H + 1)]),
    ("sun", SUNDAY + 0.5, 86400, [(0, 86400)]),  # a second counts from its first whole second
    ("tue", SUNDAY, 86400, []),  # never in the run
])
def test_a_window_is_the_runs_seconds_on_the_calendar(text, start, end_t, ranges):
    assert parse_window(text).intervals(start, end_t) == ranges


def series_with(requests: dict[int, int], end_t: int) -> TimeSeries:
    series = TimeSeries(end_t)
    series.per_second["http"] = array("I", bytes(4 * (end_t + 1)))
    for second, count in requests.items():
        series.per_second["http"][second] = count
    return series


def test_window_metrics_count_only_the_seconds_and_minutes_inside():
    # Monday 02:00 (a resync window) and Monday 13:00 (someone's working hours)
    series = series_with({26 * H + 5: 7, 26 * H + 65: 3, 37 * H: 4}, 2 * 86400)
    work = series.window_metrics(2 * 86400, SUNDAY, parse_window("mon-fri 08:00-18:00"))
    assert work["service.http.requests"] == 4
    assert work["service.http.requests_per_s.max"] == 4 and work["service.http.requests_per_min.max"] == 4
    assert work["service.http.requests_per_s.mean"] == round(4 / (10 * H), 4)
    assert work["service.http.requests_per_min.mean"] == round(4 / 600, 4)
    night = series.window_metrics(2 * 86400, SUNDAY, parse_window("mon 01:00-03:00"))
    assert night["service.http.requests"] == 10 and night["service.http.requests_per_min.max"] == 7
    assert series.window_metrics(2 * 86400, SUNDAY, parse_window("wed")) == {}  # no Wednesday in the run
    # the whole run, as before: the busiest minute is Monday 02:00's
    assert series.metrics(2 * 86400)["service.http.requests_per_min.max"] == 7


def test_an_expectation_with_a_window_is_judged_on_the_windows_metrics():
    check = parse_expectation("service.http.requests == 0 during mon-fri 08:00-18:00")
    assert check.metric == "service.http.requests" and check.key == "service.http.requests during mon-fri 08:00-18:00"
    verdict = evaluate(check, {"service.http.requests": 14, check.key: 0}, {}, 10)
    assert verdict.passed and verdict.observed == 0
    assert not evaluate(check, {"service.http.requests": 14}, {}, 10).passed  # no data: never judged passed
    with pytest.raises(BadExpectation, match="only applies to the time series"):
        parse_expectation("phones.ready == 100% during mon")


@given(st.text(max_size=40))
def test_any_window_text_reads_or_is_refused_with_a_reason(text):
    try:
        check = parse_expectation(f"service.http.requests == 0 during {text}")
    except BadExpectation as exc:
        assert str(exc)
        return
    ranges = check.window.intervals(SUNDAY, 8 * 86400)
    assert all(0 <= a < b <= 8 * 86400 + 1 for a, b in ranges)
    assert parse_window(check.window.text) == check.window  # what it says it is reads back the same

import pytest

from labsim.scenario.durations import clock_text, format_duration, parse_duration, parse_moment


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("15m", 900), ("12h", 43200), ("7d", 604800),
                                           ("8d12h", 734400), ("1h30m", 5400), (" 2 h ", 7200), (45, 45),
                                           ("0.5d", 43200)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["7w", "7", "d", "12h8d", "1h1h", "0s", -5, True, "7 days", float("nan"), float("inf")])
def test_not_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format():
    assert [format_duration(s) for s in (604800, 3600, 90, 1.5)] == ["7d", "1h", "90s", "1.5s"]
    # Several units from the largest, as a scenario writes them, and read back the same.
    cases = {734400: "8d12h", 5400: "1h30m", 86460: "1d1m", 200: "3m20s", 150: "2m30s", 119: "119s", 14: "14s", 120: "2m"}
    assert {seconds: format_duration(seconds) for seconds in cases} == cases
    assert all(parse_duration(text) == seconds for seconds, text in cases.items())


def test_moments_after_the_start_are_durations_or_zero():
    assert [parse_moment(v) for v in (0, "0s", 0.5, "6d", "8d6h")] == [0, 0, 0.5, 518400, 712800]
    for bad in (-1, "-1s", "x", True, "6 days", float("nan"), float("inf")):
        with pytest.raises(ValueError):
            parse_moment(bad)


@pytest.mark.parametrize("seconds, text", [(0, "0d 00:00:00"), (59.9, "0d 00:00:59"), (3600, "0d 01:00:00"),
                                           (151126.4092, "1d 17:58:46"), (8 * 86400 + 12 * 3600, "8d 12:00:00")])
def test_clock_text_is_days_and_a_clock_to_the_second(seconds, text):
    assert clock_text(seconds) == text


def test_a_duration_past_the_time_limit_is_said_only_on_the_real_clock():
    from types import SimpleNamespace

    from labsim.scenario.durations import outlasts_the_time_limit

    def scenario(clock, duration, limit=300):
        return SimpleNamespace(clock=clock, duration=duration, time_limit_s=limit)

    assert outlasts_the_time_limit(scenario("real", 7 * 86400)).startswith(
        "7d 00:00:00 on the real clock outlasts time_limit_s (300 s of wall time)")
    assert outlasts_the_time_limit(scenario("real", 301)) is not None
    assert outlasts_the_time_limit(scenario("real", 300)) is None  # it reaches its duration as the limit comes
    assert outlasts_the_time_limit(scenario("real", None)) is None  # ends when the phones settle
    assert outlasts_the_time_limit(scenario("virtual", 7 * 86400)) is None  # simulated time: the limit is wall time

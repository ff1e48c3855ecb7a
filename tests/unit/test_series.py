"""The run's time series: requests per service and phones per state, counted as they go."""

import pytest

from labsim.scenario.expectations import BadExpectation, evaluate, parse_expectation
from labsim.observe.series import TimeSeries, bucket_for


def test_bucket_from_the_runs_length():
    assert [bucket_for(s) for s in (60, 3600, 86400, 2 * 86400, 7 * 86400)] == [1, 1, 60, 60, 600]


def test_requests_per_second_minute_and_bucket_exact():
    series = TimeSeries(7 * 86400)
    for t in [0.5] * 3 + [59.9] * 2 + [61.0] + [3600 * 5 + 1.0] * 7:
        series.request("http", t)
    series.fetch("tftp://127.0.0.1:69/x.cfg", 10.0)
    series.fetch("https://127.0.0.1/x.cfg", 10.0)
    metrics = series.metrics(end_t=7 * 86400)
    assert metrics["service.http.requests"] == 14
    assert metrics["service.http.requests_per_s.max"] == 7
    assert metrics["service.http.requests_per_min.max"] == 7  # 0.5 s x3 + 59.9 s x2 = 5 in minute 0
    assert metrics["service.tftp.requests"] == 1
    report = series.to_report(end_t=7 * 86400)
    assert report["bucket_s"] == 600 and len(report["requests"]["http"]) == 7 * 144 + 1
    assert report["requests"]["http"][0] == 7 and report["requests"]["http"][30] == 7 and sum(report["requests"]["http"]) == 14


def test_means_are_over_every_second_of_the_run_after_the_service_went_quiet():
    # The counts run an hour ahead of the last request: a mean over them, not over the
    # run, made ten requests in a week's first seconds 0.0028 a second (10 / 3,610).
    series = TimeSeries(7 * 86400)
    for t in range(10):
        series.request("http", float(t))
    week = 7 * 86400
    metrics = series.metrics(end_t=week - 0.5)
    assert metrics["service.http.requests"] == 10
    assert metrics["service.http.requests_per_s.mean"] == round(10 / week, 4) == 0.0
    assert metrics["service.http.requests_per_min.mean"] == round(10 / (week // 60), 4) == 0.001
    assert metrics["service.http.requests_per_s.max"] == 1 and metrics["service.http.requests_per_min.max"] == 10
    # and within the counts, as before: 10 in the first 60 s
    assert series.metrics(end_t=59.5)["service.http.requests_per_s.mean"] == round(10 / 60, 4)


def test_phones_per_state_sampled_at_each_bucket_boundary():
    series = TimeSeries(60, total_phones=2)  # 1 s buckets
    series.state_changed(0.2, "off", "booting")
    series.state_changed(2.5, "booting", "ready")
    series.state_changed(2.7, "off", "booting")
    report = series.to_report(end_t=4.0)
    assert report["states"]["off"] == [2, 1, 1, 0, 0]
    assert report["states"]["booting"] == [0, 1, 1, 1, 1]
    assert report["states"]["ready"] == [0, 0, 0, 1, 1]


def test_expectations_on_the_series():
    check = parse_expectation("service.http.requests_per_min.max < 2000")
    assert evaluate(check, {"service.http.requests_per_min.max": 1999}, {}, 10).passed
    assert not evaluate(check, {"service.http.requests_per_min.max": 2000}, {}, 10).passed
    # A service no phone asked made no request in any second: its counts are 0 (before:
    # "no data", so 'service.tftp.requests == 0' failed for an HTTP-only fleet).
    verdict = evaluate(parse_expectation("service.tftp.requests == 0"), {"service.http.requests": 40}, {}, 10)
    assert verdict.passed and verdict.observed == 0
    assert evaluate(check, {}, {}, 10).passed
    assert not evaluate(parse_expectation("service.ftp.requests_per_s.max > 0"), {}, {}, 10).passed
    with pytest.raises(BadExpectation):
        parse_expectation("service.http.requests_per_hour.max < 5")
    # and a name the series does not count under is refused, not judged "no data"
    with pytest.raises(BadExpectation, match=r"unknown metric 'service.htpp.requests'.*service.<dhcp\|http\|tftp\|ftp\|other>"):
        parse_expectation("service.htpp.requests < 5")


def test_a_window_has_zeros_for_a_service_never_asked_and_nothing_when_it_never_came():
    from labsim.observe.day_window import parse_window

    series = TimeSeries(3 * 86400)
    series.request("http", 9 * 3600.0)  # Sunday 09:00 (the default calendar starts on a Sunday)
    window = series.window_metrics(3 * 86400 - 1, 1767484800.0, parse_window("mon 08:00-18:00"))
    assert window["service.http.requests"] == 0 and window["service.tftp.requests"] == 0
    assert window["service.tftp.requests_per_min.max"] == 0
    assert series.window_metrics(3 * 86400 - 1, 1767484800.0, parse_window("wed")) == {}

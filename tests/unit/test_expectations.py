"""Expectations: parsing 'METRIC OP VALUE' and judging it against a run's metrics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labsim.scenario.expectations import BadExpectation, evaluate, parse_expectation
from labsim.phones.phone import STATES

# --- parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, metric, op, value, percent",
    [
        ("phones.ready == 100%", "phones.ready", "==", 100.0, True),
        ("  phones.failed<=0  ", "phones.failed", "<=", 0.0, False),
        ("phone.reboots != 2", "phone.reboots", "!=", 2.0, False),
        ("time_to_ready.p95 < 30s", "time_to_ready.p95", "<", 30.0, False),
        ("time_to_ready.max>=1.25", "time_to_ready.max", ">=", 1.25, False),
        ("stage.mac_cfg.p99 > -0.5", "stage.mac_cfg.p99", ">", -0.5, False),
        ("reboots.total == 500", "reboots.total", "==", 500.0, False),
        ("phones.total == 50 %", "phones.total", "==", 50.0, True),
    ],
)
def test_parse_well_formed(text, metric, op, value, percent):
    check = parse_expectation(text)
    assert (check.metric, check.op, check.value, check.percent) == (metric, op, value, percent)
    assert check.text == text.strip()


def test_two_character_operators_are_not_split():
    # '<=' must not parse as '<' followed by a value starting with '='.
    assert parse_expectation("phones.ready <= 3").op == "<="
    assert parse_expectation("phones.ready >= 3").op == ">="


@pytest.mark.parametrize("state", STATES)
def test_every_phone_state_is_a_metric(state):
    assert parse_expectation(f"phones.{state} >= 0").metric == f"phones.{state}"


@pytest.mark.parametrize("stat", ["p50", "p90", "p95", "p99", "max", "mean", "count"])
def test_every_stat_is_accepted_for_time_and_stages(stat):
    parse_expectation(f"time_to_ready.{stat} < 1")
    parse_expectation(f"stage.dhcp.{stat} < 1")


@pytest.mark.parametrize(
    "text, hint",
    [
        ("phones.ready", "METRIC OP VALUE"),
        ("phones.ready = 3", "OP is one of"),
        ("phones.ready =< 3", "OP is one of"),
        ("phones.ready == three", "METRIC OP VALUE"),
        ("phones.ready == 1e3", "METRIC OP VALUE"),
        ("phones.ready == 3 ms", "METRIC OP VALUE"),
        ("Phones.Ready == 3", "METRIC OP VALUE"),
        ("phones.asleep == 0", "phones.<off|booting"),
        ("time_to_ready.p42 < 3", "time_to_ready.<p50"),
        ("stage.dhcp < 3", "stage.<name>"),
        ("latency.p95 < 3", "unknown metric"),
        ("time_to_ready.p95 < 30%", "'%' only applies"),
        ("phone.reboots == 100%", "'%' only applies"),
    ],
)
def test_bad_expectations_are_rejected_with_a_hint(text, hint):
    with pytest.raises(BadExpectation) as caught:
        parse_expectation(text)
    assert hint in str(caught.value)
    assert isinstance(caught.value, ValueError)  # pydantic turns ValueErrors into located problems


def test_only_phone_reboots_is_checked_per_phone():
    assert parse_expectation("phone.reboots == 1").per_phone
    assert not parse_expectation("reboots.total == 1").per_phone
    assert not parse_expectation("phones.ready == 1").per_phone


# --- evaluating -------------------------------------------------------------------------


def _eval(text, metrics=None, per_phone=None, total=0, name=None):
    return evaluate(parse_expectation(text), metrics or {}, per_phone or {}, total, name)


def test_percent_is_of_all_phones():
    assert _eval("phones.ready == 100%", {"phones.ready": 500}, total=500).passed
    assert not _eval("phones.ready == 100%", {"phones.ready": 499}, total=500).passed
    assert _eval("phones.ready >= 99%", {"phones.ready": 99}, total=100).passed
    assert not _eval("phones.ready >= 99%", {"phones.ready": 98}, total=100).passed
    verdict = _eval("phones.ready >= 50%", {"phones.ready": 1}, total=4)
    assert not verdict.passed and verdict.observed == 1 and "25.0%" in verdict.detail


def test_absent_state_count_means_zero_phones_in_that_state():
    assert _eval("phones.failed == 0", {}, total=10).passed
    assert not _eval("phones.failed > 0", {}, total=10).passed


def test_missing_timing_metric_fails_with_a_reason():
    verdict = _eval("time_to_ready.p95 < 30", {"time_to_ready.p95": None}, total=3)
    assert not verdict.passed and verdict.observed is None and "no data" in verdict.detail


def test_a_stage_no_phone_went_through_has_a_count_of_zero_and_no_latency():
    """'No firmware was downloaded' is stage.firmware.count == 0, which had failed with
    'no data'; its latencies have none, and the verdict names the stages the run had
    (a misspelt stage reads as one that never happened)."""
    metrics = {"stage.mac_cfg.count": 10, "stage.mac_cfg.p95": 0.001, "stage.dhcp.count": 10}
    assert _eval("stage.firmware.count == 0", metrics, total=10).passed
    assert _eval("stage.firmware.count == 0", metrics, total=10).observed == 0
    assert not _eval("stage.firmware.count >= 1", metrics, total=10).passed
    verdict = _eval("stage.mac_cfgg.p95 < 2", metrics, total=10)
    assert not verdict.passed and verdict.observed is None
    assert verdict.detail == "no data for this metric: no 'mac_cfgg' timing in this run (its stages: dhcp, mac_cfg)"


@pytest.mark.parametrize(
    "op, observed, threshold, expected",
    [
        ("<", 29.9, 30, True), ("<", 30, 30, False),
        ("<=", 30, 30, True), ("<=", 30.01, 30, False),
        (">", 5, 4, True), (">", 4, 4, False),
        (">=", 4, 4, True), (">=", 3.99, 4, False),
        ("==", 2, 2, True), ("==", 3, 2, False),
        ("!=", 3, 2, True), ("!=", 2, 2, False),
    ],
)
def test_operator_boundaries(op, observed, threshold, expected):
    assert _eval(f"time_to_ready.max {op} {threshold}", {"time_to_ready.max": observed}, total=1).passed is expected


def test_per_phone_check_must_hold_for_every_phone_and_names_the_failures():
    values = [("00:15:65:00:00:01", 1), ("00:15:65:00:00:02", 2), ("00:15:65:00:00:03", 1)]
    verdict = _eval("phone.reboots == 1", per_phone={"phone.reboots": values}, total=3)
    assert not verdict.passed
    assert "1 of 3" in verdict.detail and "00:15:65:00:00:02" in verdict.detail
    assert "00:15:65:00:00:01" not in verdict.detail
    assert verdict.observed == {"min": 1, "max": 2}
    assert _eval("phone.reboots <= 2", per_phone={"phone.reboots": values}, total=3).passed


def test_per_phone_check_with_no_phones_fails():
    assert not _eval("phone.reboots == 1", per_phone={"phone.reboots": []}, total=0).passed
    assert not _eval("phone.reboots == 1", per_phone={}, total=0).passed


def test_verdict_is_named_by_the_expectation_name_or_its_text():
    assert _eval(" phones.ready == 1 ", {"phones.ready": 1}, total=1).name == "phones.ready == 1"
    assert _eval("phones.ready == 1", {"phones.ready": 1}, total=1, name="all up").name == "all up"


@given(total=st.integers(1, 5000), data=st.data())
def test_integer_percent_matches_exact_arithmetic(total, data):
    ready = data.draw(st.integers(0, total))
    pct = data.draw(st.integers(0, 100))
    # Exact: ready / total >= pct / 100  <=>  100 * ready >= pct * total
    assert _eval(f"phones.ready >= {pct}%", {"phones.ready": ready}, total=total).passed is (100 * ready >= pct * total)
    assert _eval(f"phones.ready == {pct}%", {"phones.ready": ready}, total=total).passed is (100 * ready == pct * total)


def test_decimal_percent_is_exact():
    assert _eval("phones.ready >= 16.1%", {"phones.ready": 161}, total=1000).passed
    assert _eval("phones.ready == 16.1%", {"phones.ready": 161}, total=1000).passed


def test_the_fleets_downloads_are_counts_an_expectation_may_read():
    from labsim.phones.events import DOWNLOAD_OUTCOMES

    for name in ("requests", "errors", *DOWNLOAD_OUTCOMES):
        assert parse_expectation(f"downloads.{name} >= 0").metric == f"downloads.{name}"
    with pytest.raises(BadExpectation, match=r"downloads\.<requests\|errors\|ok\|not_found\|optional_missing"):
        parse_expectation("downloads.failures == 0")
    with pytest.raises(BadExpectation, match="'%' only applies"):
        parse_expectation("downloads.errors < 1%")
    # A run whose phones downloaded nothing has none of anything: 0, not "no data".
    verdict = evaluate(parse_expectation("downloads.errors == 0"), {}, {}, 3)
    assert verdict.passed and verdict.observed == 0

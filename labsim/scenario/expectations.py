"""Expectations: thresholds over a run's metrics, as k6 has them.

An expectation is ``METRIC OP VALUE``, for example::

    phones.ready == 100%        # a count; '%' compares against the number of phones
    phone.reboots == 1          # per phone: must hold for every phone
    time_to_ready.p95 < 60      # seconds
    stage.mac_cfg.p99 < 2
    service.http.requests_per_min.max < 10 during mon-fri 08:00-18:00

Metrics:
    phones.total, phones.<state>              phones by final state
    reboots.total                             reboots of the whole fleet
    phone.reboots                             checked on every phone
    time_to_ready.<stat>                      power-on to ready, seconds
    stage.<stage>.<stat>                      one stage's latency (dhcp, common_cfg, ...)
    service.<name>.requests                   the time series (observe.series): requests in all,
    service.<name>.requests_per_<s|min>.<max|mean>   and per second or minute
    downloads.<requests|errors|outcome>       the fleet's downloads: in all, failed (neither ok
                                              nor optional_missing), or by outcome (ok, not_found ...)
with <stat> one of p50, p90, p95, p99, max, mean, count. A service.* metric may be judged
over a part of every day on the lab's calendar: ``during [DAYS] [HH:MM-HH:MM]``
(observe.day_window).

The models of a scenario's ``expectations:`` (``Expectation``, ``FlashExpectation``) are
here too, beside the grammar.
"""

from __future__ import annotations

import functools
import operator
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Annotated, Union

from pydantic import AfterValidator, BaseModel, Discriminator, Field, Tag, model_validator

from labsim.observe.day_window import BadWindow, DayWindow, parse_window
from labsim.phones.events import DOWNLOAD_OUTCOMES
from labsim.phones.phone import STATES
from labsim.scenario.fields import ModelName, Strict
from labsim.scenario.suggest import unknown


OPERATORS = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
    "<": operator.lt, ">": operator.gt,
}
STATS = ("p50", "p90", "p95", "p99", "max", "mean", "count")
DOWNLOAD_METRICS = ("requests", "errors", *DOWNLOAD_OUTCOMES)  # downloads.<these>
PER_PHONE_METRICS = ("phone.reboots",)

_EXPRESSION = re.compile(
    r"^\s*([a-z0-9_.]+)\s*(<=|>=|==|!=|<|>)\s*(-?[0-9]+(?:\.[0-9]+)?)\s*(%|s)?(?:\s+during\s+(\S.*?))?\s*$")


class BadExpectation(ValueError):
    pass


@dataclass(frozen=True)
class Check:
    text: str
    metric: str
    op: str
    value: float
    percent: bool
    window: DayWindow | None = None  # "during mon-fri 08:00-18:00": the series' metrics in that part of each day

    @property
    def per_phone(self) -> bool:
        return self.metric in PER_PHONE_METRICS

    @property
    def key(self) -> str:
        """The metric's name among a run's metrics: with a window, ``METRIC during WINDOW``."""
        return self.metric if self.window is None else f"{self.metric} during {self.window.text}"


@functools.cache
def spelt_out_metrics() -> tuple[str, ...]:
    """Every metric name but the stages' (which depend on the vendors), spelt out: what a
    metric is checked against, and what a misspelt one is compared with."""
    from labsim.observe.series import SERIES_METRICS, SERIES_STATS, SERVICES

    return ("phones.total", "reboots.total", *PER_PHONE_METRICS, *(f"phones.{s}" for s in STATES),
            *(f"time_to_ready.{s}" for s in STATS), *(f"downloads.{m}" for m in DOWNLOAD_METRICS),
            *(f"service.{name}.requests" for name in SERVICES),
            *(f"service.{name}.{m}.{s}" for name in SERVICES for m in SERIES_METRICS for s in SERIES_STATS))


def known_metric(metric: str) -> bool:
    parts = metric.split(".")
    if len(parts) == 3 and parts[0] == "stage":  # which names: the fleets' vendors' (checks.stage_problems)
        return parts[2] in STATS
    return metric in spelt_out_metrics()


def parse_expectation(text: str) -> Check:
    match = _EXPRESSION.match(text)
    if not match:
        raise BadExpectation(
            f"{text!r} is not 'METRIC OP VALUE' (e.g. 'phones.ready == 100%', 'time_to_ready.p95 < 60'); "
            f"OP is one of {', '.join(OPERATORS)}"
        )
    metric, op, value, unit, during = match.groups()
    if not known_metric(metric):
        raise BadExpectation(unknown(
            "metric", metric, spelt_out_metrics(),
            f"phones.total, phones.<{'|'.join(STATES)}>, reboots.total, "
            f"phone.reboots, time_to_ready.<{'|'.join(STATS)}>, stage.<name>.<{'|'.join(STATS)}>, "
            f"service.<dhcp|http|tftp|ftp|other>.requests, "
            f"service.<dhcp|http|tftp|ftp|other>.<requests_per_s|requests_per_min>.<max|mean>, "
            f"downloads.<{'|'.join(DOWNLOAD_METRICS)}>"))
    percent = unit == "%"
    if percent and not metric.startswith("phones."):
        raise BadExpectation(f"'%' only applies to phones.<state> counts, not {metric!r}")
    window = None
    if during is not None:
        if not metric.startswith("service."):
            raise BadExpectation(f"'during' only applies to the time series' service.* metrics, not {metric!r}")
        try:
            window = parse_window(during)
        except BadWindow as exc:
            raise BadExpectation(str(exc)) from None
    return Check(text.strip(), metric, op, float(value), percent, window)


@dataclass(frozen=True)
class Verdict:
    name: str
    passed: bool
    observed: object
    detail: str = ""


def evaluate(check: Check, metrics: dict[str, float | None], per_phone: dict[str, list[tuple[str, float]]],
             total_phones: int, name: str | None = None) -> Verdict:
    compare = OPERATORS[check.op]
    label = name or check.text
    if check.per_phone:
        values = per_phone.get(check.metric, [])
        failing = [mac for mac, value in values if not compare(value, check.value)]
        numbers = [value for _, value in values]
        observed = {"min": min(numbers), "max": max(numbers)} if numbers else None
        detail = f"{len(failing)} of {len(values)} phones fail" + (f", e.g. {', '.join(failing[:5])}" if failing else "")
        return Verdict(label, bool(values) and not failing, observed, detail)
    observed = metrics.get(check.key)
    if observed is None:
        if (check.metric.startswith(("phones.", "downloads.")) or (check.metric.startswith("service.") and check.window is None)
                or check.metric.endswith(".count")):
            observed = 0  # no phone in that state; no request to that service, no timing of that stage (a window: it never came)
        else:
            return Verdict(label, False, None, "no data for this metric" + _which_stages(check.metric, metrics))
    if check.percent:
        # Exact arithmetic: '16.1%' of 1000 phones is 161, not 160.99999999999997.
        passed = compare(Fraction(observed) * 100, Fraction(str(check.value)) * total_phones)
    else:
        passed = compare(observed, check.value)
    detail = f"{observed / total_phones * 100:.1f}% of {total_phones}" if check.percent and total_phones else ""
    return Verdict(label, passed, observed, detail)


def _which_stages(metric: str, metrics) -> str:
    """For a stage with no timing (a stage the run's phones never went through, or a
    misspelt one): the stages they did."""
    if not metric.startswith("stage."):
        return ""
    seen = sorted({key.split(".")[1] for key in metrics if key.startswith("stage.")})
    return f": no {metric.split('.')[1]!r} timing in this run" + (f" (its stages: {', '.join(seen)})" if seen else "")


def evaluate_flash(check, members, name: str | None = None) -> Verdict:
    """Every selected phone's flash setting ``check.key`` passes the check."""
    return flash_verdict(check, *flash_failures(check, members), name)


def flash_failures(check, members) -> tuple[int, list[str]]:
    """(how many phones the check selects, the MACs of those whose flash fails it)."""
    selected = 0
    failing = []
    for member in members:
        if (check.model is not None and member.phone.model != check.model) or (
                check.fleet is not None and member.fleet != check.fleet):
            continue
        selected += 1
        value = member.phone.flash.settings.get(check.key)
        if check.equals is not None:
            ok = value == check.equals
        else:
            ok = bool(value) == check.set
        if not ok:
            failing.append(member.phone.mac)
    return selected, failing


def flash_verdict(check, selected: int, failing: list[str], name: str | None = None) -> Verdict:
    """The verdict on ``selected`` phones of which ``failing`` (MACs, in fleet order) fail:
    one process's, or a fleet's whose workers each counted theirs."""
    detail = f"{len(failing)} of {selected} phones fail" + (f", e.g. {', '.join(failing[:5])}" if failing else "")
    return Verdict(name or check.describe(), bool(selected) and not failing,
                   {"phones": selected, "failing": len(failing)}, detail)


def _valid_check(check: str) -> str:
    parse_expectation(check)
    return check


ExpectationText = Annotated[str, AfterValidator(_valid_check)]


def _valid_condition(check: str) -> str:
    parsed = parse_expectation(check)
    if parsed.window is not None:
        raise ValueError("'during' is for expectations, which judge the whole run: a when: condition holds "
                         "or not at an instant")
    return check


ConditionText = Annotated[str, AfterValidator(_valid_condition)]


class Expectation(Strict):
    name: str | None = None
    check: ExpectationText


class FlashCheck(Strict):
    key: str = Field(description="a setting in the phones' flash, e.g. account.1.user_name")
    equals: str | None = Field(None, description="the value every selected phone must hold")
    set: bool | None = Field(None, description="true: must have a non-empty value; false: must not")
    model: ModelName | None = None
    fleet: str | None = None

    @model_validator(mode="after")
    def _one_test(self):
        if (self.equals is None) == (self.set is None):
            raise ValueError("give either 'equals' or 'set' (true/false)")
        return self

    def describe(self) -> str:
        who = " ".join(filter(None, [self.fleet and f"fleet {self.fleet}", self.model])) or "every phone"
        test = f"== {self.equals!r}" if self.equals is not None else ("is set" if self.set else "is not set")
        return f"{who}: flash {self.key} {test}"


class FlashExpectation(Strict):
    """A check of every selected phone's flash (applied settings)."""

    name: str | None = None
    flash: FlashCheck

    @property
    def check(self) -> str:
        return self.flash.describe()


def _expectation_kind(value) -> str:
    # Pick the branch from what the user wrote, so errors come from that branch alone.
    if isinstance(value, dict):
        return "FlashExpectation" if "flash" in value else "Expectation"
    if isinstance(value, BaseModel):
        return type(value).__name__
    return "Text"


ExpectationItem = Annotated[
    Union[Annotated[ExpectationText, Tag("Text")], Annotated[Expectation, Tag("Expectation")],
          Annotated[FlashExpectation, Tag("FlashExpectation")]],
    Discriminator(_expectation_kind),
]

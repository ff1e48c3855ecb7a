"""Lengths of simulated time as a scenario and the command line write them: ``90s``,
``15m``, ``12h``, ``7d`` (these unit names exactly), several together from the largest
(``8d12h``, ``1h30m``), or a plain number of seconds. A run's ``duration`` is one, and so
is a timeline entry's ``at`` (how long after the start: ``6d`` is Saturday 00:00 of a
virtual run, which starts on a Sunday)."""

from __future__ import annotations

import math
import re

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = r"(\d+(?:\.\d+)?)\s*([smhd])"
_DURATION = re.compile(rf"^\s*(?:{_PART}\s*)+$")


def parse_duration(value) -> float:
    """Seconds, more than 0; ValueError naming the accepted forms for anything else."""
    seconds = _seconds(value)
    if seconds <= 0:
        raise ValueError(f"{value!r}: a duration must be more than 0")
    return seconds


def parse_moment(value) -> float:
    """How long after the start, in seconds: a duration, or 0 (the start itself)."""
    seconds = _seconds(value)
    if seconds < 0:
        raise ValueError(f"{value!r}: a moment after the start is not negative")
    return seconds


def _seconds(value) -> float:
    if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(f"{value!r} is not a duration")  # YAML's .nan and .inf are floats
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value)
        parts = re.findall(_PART, text)
        units = [unit for _, unit in parts]
        ordered = units == sorted(units, key=lambda unit: -UNITS[unit]) and len(set(units)) == len(units)
        if _DURATION.match(text) is None or not ordered:
            raise ValueError(f"{value!r} is not a duration: a number and one of the units s, m, h, d "
                             "(e.g. 90s, 15m, 12h, 7d, 8d12h), or a number of seconds")
        seconds = sum(float(number) * UNITS[unit] for number, unit in parts)
    return seconds


def clock_text(seconds: float) -> str:
    """A long span as days and a clock, to the second: ``8d 12:00:00``, ``0d 06:30:15``."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def format_duration(seconds: float) -> str:
    """As a scenario writes it: ``7d``, ``8d12h``, ``1h30m``, ``2m30s``, ``1.5s`` (under two
    minutes, seconds alone: ``90s``)."""
    if seconds != int(seconds):
        return f"{seconds:g}s"
    rest, parts = int(seconds), []
    for unit in ("d", "h", "m"):
        size = int(UNITS[unit])
        if rest >= size and (unit != "m" or rest % size == 0 or rest >= 2 * size):
            parts.append(f"{rest // size}{unit}")
            rest %= size
    if rest or not parts:
        parts.append(f"{rest}s")
    return "".join(parts)


def outlasts_the_time_limit(scenario) -> str | None:
    """Words for a run on the real clock whose ``duration`` is longer than its
    ``time_limit_s`` (wall time): it would stop at the limit, incomplete, every time (the
    usual cause: a week written for virtual time without ``clock: virtual``); None when
    the run can reach its duration."""
    duration = scenario.duration
    if scenario.clock == "virtual" or duration is None or duration <= scenario.time_limit_s:
        return None
    return (f"{clock_text(duration)} on the real clock outlasts time_limit_s ({scenario.time_limit_s:g} s of wall "
            "time): the run would stop at the time limit, incomplete; run it in simulated time with clock: virtual "
            "(or --clock virtual), or raise time_limit_s")

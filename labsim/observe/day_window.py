"""A part of every day on the lab's calendar, for expectations on the time series:
``service.http.requests_per_min.max < 10 during mon-fri 08:00-18:00``.

The calendar is the lab's clock, UTC, the one the phones' windows are read on: the run
starts at the scenario's ``clock_starts`` (Sunday 2026-01-04 00:00 without it). A window
is days, hours or both:

- ``mon-fri 08:00-18:00``: those hours of those days;
- ``22:00-06:00``: every day's night (an end before the start wraps past midnight: a
  second counts when its time of day is after 22:00 or before 06:00, on its own day);
- ``sat-sun``: whole days; ``fri-mon`` wraps across the week; ``24:00`` ends a day.

A second of the run counts when its day and time of day are in the window; a minute,
when its first second is (minutes count from the run's start, as the series' do).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

DAY_S = 86_400
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # the calendar's weeks start on Sunday
_DAY_RANGE = re.compile(r"([a-z]{3})(?:-([a-z]{3}))?", re.ASCII)
_HOURS = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})", re.ASCII)


class BadWindow(ValueError):
    pass


@dataclass(frozen=True)
class DayWindow:
    text: str  # as written, normalised: "mon-fri 08:00-18:00"
    days: frozenset[int]  # 0 Sunday … 6 Saturday
    start_s: int  # the time of day it opens, seconds after midnight
    end_s: int  # and closes (86,400: midnight at the day's end); before start_s: past midnight

    def intervals(self, calendar_from: float, end_t: float) -> list[tuple[int, int]]:
        """The run's seconds in the window, as ``[a, b)`` ranges of whole seconds from its start."""
        ranges = []
        first_day = int((calendar_from // DAY_S) * DAY_S)
        day = first_day
        while day - calendar_from <= end_t:
            if (day // DAY_S + 4) % 7 in self.days:  # 1970-01-01 was a Thursday
                for begin, end in self._parts_of_day():
                    a = max(0, math.ceil(day + begin - calendar_from))
                    b = min(int(end_t) + 1, math.ceil(day + end - calendar_from))
                    if a < b:
                        ranges.append((a, b))
            day += DAY_S
        return ranges

    def _parts_of_day(self) -> list[tuple[int, int]]:
        if self.start_s < self.end_s:
            return [(self.start_s, self.end_s)]
        return [(0, self.end_s), (self.start_s, DAY_S)]


def parse_window(text: str) -> DayWindow:
    """``[DAYS] [HH:MM-HH:MM]``, at least one of them; BadWindow says what is wrong."""
    parts = text.strip().lower().split()
    if not parts or len(parts) > 2:
        raise BadWindow(f"'during {text.strip()}': give days, hours or both, e.g. 'during mon-fri 08:00-18:00'")
    days, hours = frozenset(range(7)), (0, DAY_S)
    words = []
    if parts[0][:1].isalpha():
        words.append(parts[0])
        days = _days(parts.pop(0))
    if parts:
        hours = _hours(parts.pop(0))
        words.append(f"{_clock(hours[0])}-{_clock(hours[1])}")
    if parts:
        raise BadWindow(f"'during {text.strip()}': days come before hours, e.g. 'during mon-fri 08:00-18:00'")
    return DayWindow(" ".join(words), days, *hours)


def _days(text: str) -> frozenset[int]:
    match = _DAY_RANGE.fullmatch(text)
    if match is None or match.group(1) not in DAYS or (match.group(2) or "sun") not in DAYS:
        raise BadWindow(f"{text!r} is not a day or a range of days ({', '.join(DAYS)}; e.g. mon-fri)")
    first = DAYS.index(match.group(1))
    last = DAYS.index(match.group(2)) if match.group(2) else first
    return frozenset((first + step) % 7 for step in range((last - first) % 7 + 1))


def _hours(text: str) -> tuple[int, int]:
    match = _HOURS.fullmatch(text)
    if match is None:
        raise BadWindow(f"{text!r} is not hours HH:MM-HH:MM (e.g. 08:00-18:00)")
    start_h, start_m, end_h, end_m = (int(group) for group in match.groups())
    if start_h > 23 or end_h > 24 or start_m > 59 or end_m > 59 or (end_h == 24 and end_m):
        raise BadWindow(f"{text!r}: hours 00:00 to 24:00")
    start, end = start_h * 3600 + start_m * 60, end_h * 3600 + end_m * 60
    if start == end:
        raise BadWindow(f"{text!r} is empty: it ends where it starts (a whole day is 00:00-24:00 or no hours)")
    return start, end


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}" if seconds != DAY_S else "24:00"

"""Where on the calendar a run starts: a scenario's ``clock_starts``, the date and time the
phones' clocks read when the run begins (UTC), as YAML and the command line write it:
``2026-03-28``, ``2026-03-28 22:00``, ``2026-03-28T22:00:00Z``, ``2026-03-29T00:00+01:00``
(an offset is turned into UTC).

The phones' resync windows and summer time read it (``labsim.phones.local_time``), a
timeline's dates (``at: 2026-03-29 01:00``) count from it, and a virtual run's clock
starts there. Without it, Sunday 2026-01-04 00:00 UTC."""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timezone

from labsim.phones.local_time import CALENDAR_ORIGIN_S

EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
_DATE = re.compile(r"\s*\d{4}-\d{1,2}-\d{1,2}")
# What an editor is told (the JSON Schema): YAML writes a date and time as a string or a timestamp.
START_SCHEMA = {"type": "string", "examples": ["2026-03-27 12:00", "2026-10-24T00:00:00Z"]}
FORMS = "a date and time in UTC such as 2026-03-28, 2026-03-28 22:00 or 2026-03-28T22:00:00Z"


def parse_start(value) -> float:
    """Seconds since 1970 (UTC); ValueError naming the accepted forms for anything else."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):  # YAML reads 2026-03-28 as a date
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not {FORMS}") from None
    else:
        raise ValueError(f"{value!r} is not {FORMS}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    if not EARLIEST <= moment < LATEST:
        raise ValueError(f"{value!r}: a start from 2000 to 2099, please")
    return float(calendar.timegm(moment.astimezone(timezone.utc).timetuple())) + moment.microsecond / 1e6


def is_calendar_moment(value) -> bool:
    """Whether ``value`` is written as a date (``2026-03-29``, ``2026-03-29 01:00``), not as
    a duration or a number of seconds."""
    return isinstance(value, (date, datetime)) or (isinstance(value, str) and _DATE.match(value) is not None)


def start_text(moment: float) -> str:
    """``2026-03-28 00:00 UTC``."""
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def calendar_from(start: float | None) -> float:
    """Where a run starting at ``start`` (a scenario's ``clock_starts``, or None) begins on
    the lab's calendar: seconds since 1970, UTC."""
    return float(CALENDAR_ORIGIN_S) if start is None else start


def clock_start_s(start: float | None) -> float:
    """A vendor behaviour's ``clock_start_s`` for a run starting at ``start``: seconds
    after ``CALENDAR_ORIGIN_S`` (negative before it)."""
    return 0.0 if start is None else start - CALENDAR_ORIGIN_S

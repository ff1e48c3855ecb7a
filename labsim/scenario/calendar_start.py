"""Where on the calendar a run starts: a scenario's ``clock_starts``, the date and time the
phones' clocks read when the run begins (UTC), as YAML and the command line write it:
``2026-03-28``, ``2026-03-28 22:00``, ``2026-03-28T22:00:00Z``, ``2026-03-29T00:00+01:00``
(an offset is turned into UTC).

The phones' resync windows and summer time read it (``labsim.phones.local_time``); a
virtual run's clock starts there too. Without it, Sunday 2026-01-04 00:00 UTC."""

from __future__ import annotations

import calendar
from datetime import date, datetime, timezone

from labsim.phones.local_time import CALENDAR_ORIGIN_S

EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
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


def clock_start_s(start: float | None) -> float:
    """A vendor behaviour's ``clock_start_s`` for a run starting at ``start``: seconds
    after ``CALENDAR_ORIGIN_S`` (negative before it)."""
    return 0.0 if start is None else start - CALENDAR_ORIGIN_S

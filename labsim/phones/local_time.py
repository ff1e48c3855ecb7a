"""A phone's own clock, as its resync windows read it: the lab's clock moved by the time
zone the phone was provisioned with.

A real phone takes UTC from NTP and keeps its schedule in local time: a weekly window of
02:00-04:00 on phones provisioned with a zone of ``+1`` opens at 01:00 UTC, and on phones
provisioned with ``-5`` at 07:00 UTC. The lab's clock is UTC (a virtual run starts on
Sunday 2026-01-04 00:00 UTC). Each vendor profile names the setting that holds the zone
and its form; this module reads the forms.

Three forms: hours and minutes east of UTC (``+8``, ``GMT-05:00``), whole seconds east of
UTC (``-18000``), and a POSIX ``TZ`` string (``EST5EDT``, ``CET-1CEST,M3.5.0,M10.5.0/3``),
whose offset counts the other way: hours *west* of UTC.

Not modelled: daylight saving time (a virtual run starts in January; a POSIX string's
summer part is read past, not applied), and the vendors' factory zones: a phone
provisioned with no zone, or with a value that is not one, keeps the lab's clock.
"""

from __future__ import annotations

import re

EAST_MAX_S = 14 * 3600  # UTC+14:00, the easternmost zone in use
WEST_MAX_S = 12 * 3600  # UTC-12:00

# POSIX TZ (IEEE Std 1003.1, "TZ"): the standard time's name, three or more letters or
# anything but "<>" between angle brackets, then its offset [+-]hh[:mm[:ss]], hours 0-24,
# positive *west* of Greenwich; the summer time's name and rules may follow.
_POSIX_STANDARD = re.compile(r"(?:[A-Za-z]{3,}|<[A-Za-z0-9+-]{3,}>)([+-]?)(\d{1,2})(?::(\d{1,2})(?::(\d{1,2}))?)?"
                             r"(?=$|[A-Za-z]{3}|<)")
_HOURS_MINUTES = re.compile(r"(?:GMT|UTC)?([+-]?)(\d{1,2})(?::(\d{2}))?", re.IGNORECASE)


def hours_offset_s(text: str | None) -> int:
    """A zone written as hours and minutes east of UTC, as most phones write it: ``+8``,
    ``-5``, ``+5:30``, ``0``, ``GMT-05:00``, ``UTC+1``, ``GMT``. Seconds east of UTC; 0
    for anything else."""
    if not text:
        return 0
    match = _HOURS_MINUTES.fullmatch(text.replace(" ", "").strip('"'))  # "GMT" alone: no match, 0
    if match is None:
        return 0
    sign, hours, minutes = match.groups()
    if minutes is not None and int(minutes) > 59:
        return 0
    offset = int(hours) * 3600 + int(minutes or 0) * 60
    return _within_range(-offset if sign == "-" else offset)


def seconds_offset_s(text: str | None) -> int:
    """A zone written as whole seconds east of UTC (``-18000`` for UTC-5). 0 for anything
    else."""
    try:
        return _within_range(int((text or "").strip()))
    except ValueError:
        return 0


def posix_offset_s(text: str | None) -> int:
    """A zone written as a POSIX ``TZ`` string (``EST5EDT``, ``<+0530>-5:30``,
    ``CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00``): seconds east of UTC of its standard
    time. 0 for anything else, a name alone (``UTC``) included."""
    match = _POSIX_STANDARD.match((text or "").strip().strip('"'))
    if match is None:
        return 0
    sign, hours, minutes, seconds = match.groups()
    if int(hours) > 24 or int(minutes or 0) > 59 or int(seconds or 0) > 59:
        return 0
    west = int(hours) * 3600 + int(minutes or 0) * 60 + int(seconds or 0)
    return _within_range(west if sign == "-" else -west)


def _within_range(offset_s: int) -> int:
    return offset_s if -WEST_MAX_S <= offset_s <= EAST_MAX_S else 0

"""A phone's own clock, as its resync windows read it: the lab's clock moved by the time
zone the phone was provisioned with, and by its summer time when it has one.

A real phone takes UTC from NTP and keeps its schedule in local time: a weekly window of
02:00-04:00 on phones provisioned with a zone of ``+1`` opens at 01:00 UTC, and on phones
provisioned with ``-5`` at 07:00 UTC. The lab's clock is UTC; it counts from
``CALENDAR_ORIGIN_S``, Sunday 2026-01-04 00:00 UTC, plus the vendor behaviour's
``clock_start_s`` (which a scenario's ``clock_starts`` sets). Each vendor profile names the
settings that hold the zone and its form; this module reads the forms.

Three forms of zone: hours and minutes east of UTC (``+8``, ``GMT-05:00``), whole seconds
east of UTC (``-18000``), and a POSIX ``TZ`` string (``EST5EDT``,
``CET-1CEST,M3.5.0,M10.5.0/3``), whose offset counts the other way: hours *west* of UTC.

Summer time is a :class:`Zone` with two :class:`DayRule` (or :class:`YearDayRule`) changes
a year. A change's time is the local time in force just before it (POSIX's rule: spring's
02:00 is standard time, autumn's 02:00 summer time). A phone waiting for a moment on its
own clock waits for it on that clock, across a change (:meth:`Zone.wait_s`).

A phone given no zone keeps its factory zone where the vendor documents one (Yealink's
``+8``, Cisco's ``GMT-08:00``, Polycom's ``0`` with the United States' summer time); where
not, the lab's clock. Some phones let a DHCP server's
option 2 (RFC 2132 §3.4, Time Offset: seconds east of UTC) stand for the zone they were
given: :func:`dhcp_time_offset_s` reads it from the phone's lease.
"""

from __future__ import annotations

import calendar
import functools
import re
import time
from dataclasses import dataclass

EAST_MAX_S = 14 * 3600  # UTC+14:00, the easternmost zone in use
WEST_MAX_S = 12 * 3600  # UTC-12:00
# Where the lab's calendar counts from: a behaviour's clock_start_s 0 is this moment, a
# Sunday (0 Sunday in the weekly windows' day numbers), and so is a virtual run's default start.
CALENDAR_ORIGIN_S = 1767484800  # 2026-01-04 00:00:00 UTC
DAY_S = 86400

# POSIX TZ (IEEE Std 1003.1, "TZ"): the standard time's name, three or more letters or
# anything but "<>" between angle brackets, then its offset [+-]hh[:mm[:ss]], hours 0-24,
# positive *west* of Greenwich; the summer time's name and rules may follow.
_POSIX_NAME = r"(?:[A-Za-z]{3,}|<[A-Za-z0-9+-]{3,}>)"
_POSIX_OFFSET = r"([+-]?)(\d{1,2})(?::(\d{1,2})(?::(\d{1,2}))?)?"
_POSIX_STANDARD = re.compile(_POSIX_NAME + _POSIX_OFFSET + r"(?=$|[A-Za-z]{3}|<)", re.ASCII)
_POSIX_SUMMER = re.compile(_POSIX_NAME + r"(?:" + _POSIX_OFFSET + r")?(?:,([^,]+),([^,]+))?", re.ASCII)
# A change's day: Mm.w.d (day d, 0 Sunday, of week w, 5 the last, of month m), Jn (day n of
# 1-365, 29 February never counted) or n (0-365, counted); then /time, 02:00:00 if absent.
_POSIX_DAY = re.compile(r"(?:M(\d{1,2})\.(\d)\.(\d)|J(\d{1,3})|(\d{1,3}))(?:/([+-]?\d{1,3}(?::\d{1,2}){0,2}))?", re.ASCII)
_HOURS_MINUTES = re.compile(r"(?:GMT|UTC)?([+-]?)(\d{1,2})(?::(\d{2}))?", re.IGNORECASE | re.ASCII)
_POSIX_TIME = re.compile(r"([+-]?)(\d{1,3})(?::(\d{1,2})(?::(\d{1,2}))?)?", re.ASCII)


@dataclass(frozen=True)
class DayRule:
    """The day of each year a clock change falls on, and the local time it happens at.

    ``day`` is a day of ``month`` (1-31; negative counts back from its end, -1 its last
    day). Without a ``weekday`` the change is on that day; with one (0 Sunday … 6
    Saturday) on the first such weekday on or after it: day 8 and weekday 0 is the second
    Sunday, day -7 and weekday 0 the last Sunday."""

    month: int
    day: int
    weekday: int | None = None
    time_s: int = 7200

    def local_moment(self, year: int) -> int:
        """The change, in seconds since 1970 on that year's local clock (as if it were UTC)."""
        length = calendar.monthrange(year, self.month)[1]
        day = self.day if self.day > 0 else length + 1 + self.day
        day = min(max(day, 1), length)
        if self.weekday is not None:
            first_weekday = (calendar.weekday(year, self.month, day) + 1) % 7  # 0 Sunday
            day += (self.weekday - first_weekday) % 7
            if day > length:  # on or after a day late in the month: that month's last such weekday
                day -= 7
        return calendar.timegm((year, self.month, day, 0, 0, 0)) + self.time_s


@dataclass(frozen=True)
class YearDayRule:
    """POSIX's ``Jn`` (``counts_leap_day`` False: 1-365, 29 February never counted) and
    ``n`` (True: 0-365, counted)."""

    day: int
    counts_leap_day: bool
    time_s: int = 7200

    def local_moment(self, year: int) -> int:
        day = self.day if self.counts_leap_day else self.day - 1
        if not self.counts_leap_day and calendar.isleap(year) and self.day >= 60:
            day += 1  # J60 is 1 March in every year
        return calendar.timegm((year, 1, 1, 0, 0, 0)) + day * DAY_S + self.time_s


@dataclass(frozen=True)
class Zone:
    """A phone's time zone: its standard offset east of UTC and, if it has summer time,
    how much its clock goes forward and when."""

    standard_s: int = 0
    summer_extra_s: int = 0  # 0: no summer time
    summer_starts: DayRule | YearDayRule | None = None
    summer_ends: DayRule | YearDayRule | None = None

    @property
    def has_summer_time(self) -> bool:
        return bool(self.summer_extra_s) and self.summer_starts is not None and self.summer_ends is not None

    def offset_at(self, lab_s: float) -> int:
        """Seconds east of UTC at ``lab_s`` on the lab's clock (seconds after ``CALENDAR_ORIGIN_S``)."""
        if not self.has_summer_time:
            return self.standard_s
        utc = CALENDAR_ORIGIN_S + lab_s
        starts, ends = _changes(self, time.gmtime(utc + self.standard_s).tm_year)
        if starts < ends:  # summer inside the year (the northern hemisphere)
            summer = starts <= utc < ends
        else:  # summer across the new year (the southern)
            summer = not ends <= utc < starts
        return self.standard_s + self.summer_extra_s if summer else self.standard_s

    def local_s(self, lab_s: float) -> float:
        """The phone's clock at ``lab_s``: seconds after the Sunday 00:00 local its weeks count from."""
        return lab_s + self.offset_at(lab_s)

    def wait_s(self, lab_s: float, local_wait_s: float) -> float:
        """Seconds of the lab's clock from ``lab_s`` until the phone's own clock has moved on
        ``local_wait_s`` from where it stands at ``lab_s``, across a change of clock.

        A moment the spring change skips comes as much later as the clock jumped (02:30,
        when 02:00 becomes 03:00, at 03:30, as C's ``mktime`` reads such a time), so a
        window's spread is kept; a moment the autumn change repeats comes the first time."""
        if not self.has_summer_time:
            return local_wait_s
        now_offset = self.offset_at(lab_s)
        target_local = lab_s + now_offset + local_wait_s
        first = target_local - now_offset
        then_offset = self.offset_at(first)
        if then_offset == now_offset:
            return local_wait_s
        second = target_local - then_offset
        if self.offset_at(second) == then_offset:
            return second - lab_s  # after a change of clock
        return first - lab_s  # in the hour the spring change skips


SUMMER_EXTRA_MAX_S = 3 * 3600


def zone_from(standard_s: int | None, starts: DayRule | YearDayRule | None = None,
              ends: DayRule | YearDayRule | None = None, summer_extra_s: int = 0) -> Zone:
    """The zone a phone's settings give: none for a standard offset that was not given or
    did not read (the lab's clock); summer time only when both changes read and it goes
    forward (by up to three hours), else standard time alone."""
    if standard_s is None:
        return Zone()
    if starts is None or ends is None or not 0 < summer_extra_s <= SUMMER_EXTRA_MAX_S:
        return Zone(standard_s)
    return Zone(standard_s, summer_extra_s, starts, ends)


@functools.lru_cache(maxsize=4096)
def _changes(zone: Zone, year: int) -> tuple[int, int]:
    """When summer time starts and ends in ``year``, in seconds since 1970 UTC."""
    starts = zone.summer_starts.local_moment(year) - zone.standard_s
    ends = zone.summer_ends.local_moment(year) - zone.standard_s - zone.summer_extra_s
    return starts, ends


def hours_offset_s(text: str | None) -> int | None:
    """A zone written as hours and minutes east of UTC, as most phones write it: ``+8``,
    ``-5``, ``+5:30``, ``0``, ``GMT-05:00``, ``UTC+1``, ``GMT``. Seconds east of UTC; None
    for anything else."""
    if not text:
        return None
    match = _HOURS_MINUTES.fullmatch(text.replace(" ", "").strip('"'))
    if match is None:
        return 0 if text.strip().upper() in ("GMT", "UTC") else None
    sign, hours, minutes = match.groups()
    if minutes is not None and int(minutes) > 59:
        return None
    offset = int(hours) * 3600 + int(minutes or 0) * 60
    return _within_range(-offset if sign == "-" else offset)


def summer_words(zone: Zone) -> str:
    """``summer time +60 min`` or ``no summer time``: the end of a phone's clock note."""
    return f"summer time +{zone.summer_extra_s // 60} min" if zone.has_summer_time else "no summer time"


def hours_text(offset_s: int) -> str:
    """An offset east of UTC as phones write it: ``+8``, ``-5``, ``+5:30``, ``0``."""
    if offset_s == 0:
        return "0"
    hours, seconds = divmod(abs(offset_s), 3600)
    minutes = seconds // 60
    return f"{'-' if offset_s < 0 else '+'}{hours}" + (f":{minutes:02d}" if minutes else "")


DHCP_TIME_OFFSET = 2  # RFC 2132 §3.4: the subnet's offset from UTC, signed seconds, east positive


# Remembered: a fleet's phones give the same few zones, and a phone with a clock-based
# window asks at every pass (the words are only read for its timeline).
@functools.lru_cache(maxsize=1024)
def standard_offset(key: str, given: str | None, factory: str, dhcp_offset_s: int | None = None,
                    dhcp_switch: str = "", read=hours_offset_s) -> tuple[int, str]:
    """A phone's standard offset east of UTC in seconds, and where it comes from in words
    for its timeline: ``dhcp_offset_s`` (option 2, when the phone's ``dhcp_switch`` lets it
    stand for the zone), else the zone setting ``key`` as ``given``, else the ``factory``
    zone (none given, or a value that is not a zone). ``read``: the setting's form,
    :func:`hours_offset_s` (``+1``, ``GMT-05:00``) or :func:`seconds_offset_s`."""
    if dhcp_offset_s is not None:
        return dhcp_offset_s, f"{hours_text(dhcp_offset_s)} from DHCP option 2 ({dhcp_switch})"
    given = (given or "").strip()
    offset_s = read(given)
    if offset_s is not None:
        return offset_s, given
    why = "not set" if not given else f"{given!r} is no zone"
    return read(factory), f"{factory}, the factory zone ({key} {why})"


def dhcp_time_offset_s(options) -> int | None:
    """Option 2 of a lease's options, or None: none sent, not the four bytes RFC 2132
    fixes, or no zone in use (more than 14 hours east or 12 west)."""
    payload = options.get(DHCP_TIME_OFFSET) if options else None
    if payload is None or len(payload) != 4:
        return None
    return _within_range(int.from_bytes(payload, "big", signed=True))


def seconds_offset_s(text: str | None) -> int | None:
    """A zone written as whole seconds east of UTC (``-18000`` for UTC-5). None for anything
    else."""
    text = (text or "").strip()
    return _within_range(int(text)) if re.fullmatch(r"-?[0-9]+", text) else None


# North America's rule since 2007: the second Sunday of March to the first Sunday of
# November, 02:00 local. Where a POSIX string names a summer time but gives no rule, C
# libraries take it; so do phones with a fixed rule (Avaya's 1100/1200 series).
NORTH_AMERICAN_RULE = POSIX_DEFAULT_RULE = (DayRule(3, 8, 0), DayRule(11, 1, 0))


@functools.lru_cache(maxsize=1024)
def posix_zone(text: str | None) -> Zone:
    """A POSIX ``TZ`` string as a :class:`Zone`, its summer part included (``EST5EDT``
    without a rule takes ``POSIX_DEFAULT_RULE``). A string whose standard part is not a
    zone gives UTC; one whose summer part cannot be read gives its standard time alone."""
    text = (text or "").strip().strip('"')
    standard_part = _posix_standard(text)
    if standard_part is None:
        return Zone()
    west, end = standard_part
    standard = Zone(standard_s=-west)
    rest = text[end:]
    if not rest:
        return standard
    summer = _POSIX_SUMMER.fullmatch(rest)
    if summer is None:
        return standard
    sign, hours, minutes, seconds, start_text, end_text = summer.groups()
    summer_west = west - 3600 if hours is None else _posix_seconds(sign, hours, minutes, seconds, max_hours=24)
    if summer_west is None or summer_west >= west:
        return standard  # summer time that is not ahead of standard time: not read
    if start_text is None:
        starts, ends = POSIX_DEFAULT_RULE
    else:
        starts, ends = _posix_day(start_text), _posix_day(end_text)
        if starts is None or ends is None:
            return standard
    return Zone(-west, west - summer_west, starts, ends)


def is_posix_zone(text: str | None) -> bool:
    """Whether ``text`` starts with a POSIX zone's standard part (``EST5``, ``<+0530>-5:30``):
    one :func:`posix_zone` reads, rather than the UTC it gives for anything else."""
    return _posix_standard((text or "").strip().strip('"')) is not None


def _posix_standard(text: str) -> tuple[int, int] | None:
    """A POSIX zone's standard offset (seconds *west* of UTC) and where its part ends."""
    match = _POSIX_STANDARD.match(text)
    if match is None:
        return None
    west = _posix_seconds(*match.groups(), max_hours=24)
    return None if west is None or _within_range(-west) is None else (west, match.end())


def _posix_day(text: str) -> DayRule | YearDayRule | None:
    match = _POSIX_DAY.fullmatch(text)
    if match is None:
        return None
    month, week, weekday, julian, zero_based, at = match.groups()
    time_s = 7200
    if at is not None:
        time_s = clock_offset_s(at, max_hours=167)
        if time_s is None:
            return None
    if month is not None:
        month, week, weekday = int(month), int(week), int(weekday)
        if not (1 <= month <= 12 and 1 <= week <= 5 and weekday <= 6):
            return None
        return DayRule(month, -7 if week == 5 else 1 + 7 * (week - 1), weekday, time_s)
    if julian is not None:
        return YearDayRule(int(julian), False, time_s) if 1 <= int(julian) <= 365 else None
    return YearDayRule(int(zero_based), True, time_s) if int(zero_based) <= 365 else None


def clock_offset_s(text: str, max_hours: int) -> int | None:
    """``[+|-]h[:mm[:ss]]`` in seconds (``2``, ``-1:30``, ``02:00:00``), hours up to
    ``max_hours``: the time of a change of clock, or how far it moves. None for anything else."""
    match = _POSIX_TIME.fullmatch(text.strip())
    return _posix_seconds(*match.groups(), max_hours=max_hours) if match else None


def _posix_seconds(sign, hours, minutes, seconds, max_hours: int) -> int | None:
    if hours is None:
        return 0
    if int(hours) > max_hours or int(minutes or 0) > 59 or int(seconds or 0) > 59:
        return None
    value = int(hours) * 3600 + int(minutes or 0) * 60 + int(seconds or 0)
    return -value if sign == "-" else value


def _within_range(offset_s: int) -> int | None:
    return offset_s if -WEST_MAX_S <= offset_s <= EAST_MAX_S else None

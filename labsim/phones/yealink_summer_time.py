"""Yealink's summer time: the rule in the phone's settings, or its AutoDST template.

``local_time.summer_time`` (Yealink's administrator guides, "DST Configuration"):

- ``0``: no summer time;
- ``1``: by the rule in the settings: ``local_time.dst_time_type`` 0 by date, 1 by week,
  ``local_time.start_time``/``end_time`` and ``local_time.offset_time`` (minutes);
- ``2``, the factory value, "automatic": by the AutoDST template's entry for the phone's
  zone, ``local_time.time_zone`` and ``local_time.time_zone_name``.

An AutoDST template is ``<DSTData>`` holding one entry per zone::

    <DST szTime="+1" szZone="Germany(Berlin)" iType="1" szStart="3/5/7/2" szEnd="10/5/7/3" szOffset="60"/>

``szTime`` is the zone's offset (``+5:30``), ``szZone`` its name, ``iType``, ``szStart``,
``szEnd`` and ``szOffset`` the rule as the four settings above write it. Only ``szTime``
and ``szZone`` are required: an entry without a rule is a zone without summer time.

The phone keeps the template its firmware came with, or the one ``auto_dst.url`` names
(downloaded as a resource and kept on flash). It reads its own first and the factory one
only when it has none or its own does not parse: a downloaded template replaces the
factory one as a whole *(inferred from Yealink's firmware, not documented)*. The entry is
the one whose offset and name are the phone's *(inferred: the phone lists names under
their offset)*; none there, no summer time. The factory name is ``China(Beijing)``, whose
entry has no rule, at the factory offset ``+8``: a phone given no zone keeps China's clock.
With ``local_time.dhcp_time`` 1, a DHCP server's option 2 stands for the zone.

Yealink does not publish the factory template whole, and copies of it in the wild carry
rules since abolished. ``FACTORY_TEMPLATE`` is labsim's: today's civil rules (2026) under
the names Yealink's guides and templates give, for a selection of zones; other zones
through ``auto_dst.url`` or ``summer_time = 1``.
"""

from __future__ import annotations

import functools
from typing import Mapping

from labsim.phones import local_time
from labsim.phones.kit import parse_int
from labsim.phones.local_time import DayRule, Zone, hours_offset_s, summer_words, zone_from
from labsim.wire.numbers import is_number
from labsim.wire.xml_document import NotXml, parse_xml

SUMMER_TIME_KEY = "local_time.summer_time"
DST_TYPE_KEY = "local_time.dst_time_type"  # 0 by date ("month/day/hour"), 1 by week ("month/week/weekday/hour")
DST_START_KEY, DST_END_KEY = "local_time.start_time", "local_time.end_time"
DST_OFFSET_KEY = "local_time.offset_time"  # minutes the clock goes forward
TIME_ZONE_KEY = "local_time.time_zone"  # "+8", "-5", "+5:30": the clock the weekly window keeps
TIME_ZONE_NAME_KEY = "local_time.time_zone_name"
# The factory zone: Yealink's templates, "the default value is +8", "the default time zone
# name is China(Beijing)". A phone given none keeps it.
FACTORY_TIME_ZONE, FACTORY_TIME_ZONE_NAME = "+8", "China(Beijing)"
# 1: the lease's option 2 (DHCP Time Offset) stands for local_time.time_zone. Factory 0.
# Yealink's template: "update time with the offset time obtained from the DHCP server. It is
# only available to offset from GMT 0"; that it replaces the zone, summer time still by
# local_time.summer_time, is *inferred*.
DHCP_TIME_KEY = "local_time.dhcp_time"
AUTO_DST_URL_KEY = "auto_dst.url"
AUTO_DST_FILE = "AutoDST.xml"  # the name the phone keeps a downloaded template under

# Today's rules, in each zone's local time before the change: Europe's at 01:00 UTC on
# the last Sundays of March and October; North America's at 02:00 on the second Sunday
# of March and the first of November; south-east Australia's on the first Sundays of
# October (02:00) and April (03:00); Lord Howe Island's half hour at 02:00 both ways;
# New Zealand's on the last Sunday of September (02:00) and the first of April (03:00).
FACTORY_TEMPLATE = """\
<DSTData>
  <DST szTime="-9" szZone="United States-Alaska Time" iType="1" szStart="3/2/7/2" szEnd="11/1/7/2" szOffset="60"/>
  <DST szTime="-8" szZone="United States-Pacific Time" iType="1" szStart="3/2/7/2" szEnd="11/1/7/2" szOffset="60"/>
  <DST szTime="-7" szZone="United States-Mountain Time" iType="1" szStart="3/2/7/2" szEnd="11/1/7/2" szOffset="60"/>
  <DST szTime="-7" szZone="United States-MST no DST"/>
  <DST szTime="-6" szZone="United States-Central Time" iType="1" szStart="3/2/7/2" szEnd="11/1/7/2" szOffset="60"/>
  <DST szTime="-6" szZone="Mexico(Mexico City,Acapulco)"/>
  <DST szTime="-5" szZone="United States-Eastern Time" iType="1" szStart="3/2/7/2" szEnd="11/1/7/2" szOffset="60"/>
  <DST szTime="-5" szZone="Canada(Montreal,Ottawa,Quebec)" iType="1" szStart="3/2/7/2" szEnd="11/1/7/2" szOffset="60"/>
  <DST szTime="-3:30" szZone="Canada-New Foundland(St.Johns)" iType="1" szStart="3/2/7/2" szEnd="11/1/7/2" szOffset="60"/>
  <DST szTime="0" szZone="GMT"/>
  <DST szTime="0" szZone="United Kingdom(London)" iType="1" szStart="3/5/7/1" szEnd="10/5/7/2" szOffset="60"/>
  <DST szTime="0" szZone="Ireland(Dublin)" iType="1" szStart="3/5/7/1" szEnd="10/5/7/2" szOffset="60"/>
  <DST szTime="0" szZone="Portugal(Lisboa,Porto,Funchal)" iType="1" szStart="3/5/7/1" szEnd="10/5/7/2" szOffset="60"/>
  <DST szTime="+1" szZone="Austria(Vienna)" iType="1" szStart="3/5/7/2" szEnd="10/5/7/3" szOffset="60"/>
  <DST szTime="+1" szZone="Belgium(Brussels)" iType="1" szStart="3/5/7/2" szEnd="10/5/7/3" szOffset="60"/>
  <DST szTime="+1" szZone="Czech Republic(Prague)" iType="1" szStart="3/5/7/2" szEnd="10/5/7/3" szOffset="60"/>
  <DST szTime="+1" szZone="Denmark(Kopenhagen)" iType="1" szStart="3/5/7/2" szEnd="10/5/7/3" szOffset="60"/>
  <DST szTime="+1" szZone="France(Paris)" iType="1" szStart="3/5/7/2" szEnd="10/5/7/3" szOffset="60"/>
  <DST szTime="+1" szZone="Germany(Berlin)" iType="1" szStart="3/5/7/2" szEnd="10/5/7/3" szOffset="60"/>
  <DST szTime="+1" szZone="Hungary(Budapest)" iType="1" szStart="3/5/7/2" szEnd="10/5/7/3" szOffset="60"/>
  <DST szTime="+1" szZone="Italy(Rome)" iType="1" szStart="3/5/7/2" szEnd="10/5/7/3" szOffset="60"/>
  <DST szTime="+1" szZone="Netherlands(Amsterdam)" iType="1" szStart="3/5/7/2" szEnd="10/5/7/3" szOffset="60"/>
  <DST szTime="+2" szZone="Finland(Helsinki)" iType="1" szStart="3/5/7/3" szEnd="10/5/7/4" szOffset="60"/>
  <DST szTime="+2" szZone="Greece(Athens)" iType="1" szStart="3/5/7/3" szEnd="10/5/7/4" szOffset="60"/>
  <DST szTime="+2" szZone="Romania(Bucharest)" iType="1" szStart="3/5/7/3" szEnd="10/5/7/4" szOffset="60"/>
  <DST szTime="+2" szZone="Ukraine(Kyiv,Odessa)" iType="1" szStart="3/5/7/3" szEnd="10/5/7/4" szOffset="60"/>
  <DST szTime="+3" szZone="Russia(Moscow)"/>
  <DST szTime="+5:30" szZone="India(Calcutta)"/>
  <DST szTime="+8" szZone="China(Beijing)"/>
  <DST szTime="+8" szZone="Singapore(Singapore)"/>
  <DST szTime="+8" szZone="Australia(Perth)"/>
  <DST szTime="+9" szZone="Japan(Tokyo)"/>
  <DST szTime="+9" szZone="Korea(Seoul)"/>
  <DST szTime="+9:30" szZone="Australia(Adelaide)" iType="1" szStart="10/1/7/2" szEnd="4/1/7/3" szOffset="60"/>
  <DST szTime="+9:30" szZone="Australia(Darwin)"/>
  <DST szTime="+10" szZone="Australia(Sydney,Melbourne,Canberra)" iType="1" szStart="10/1/7/2" szEnd="4/1/7/3" szOffset="60"/>
  <DST szTime="+10" szZone="Australia(Hobart)" iType="1" szStart="10/1/7/2" szEnd="4/1/7/3" szOffset="60"/>
  <DST szTime="+10" szZone="Australia(Brisbane)"/>
  <DST szTime="+10:30" szZone="Australia(Lord Howe Islands)" iType="1" szStart="10/1/7/2" szEnd="4/1/7/2" szOffset="30"/>
  <DST szTime="+12" szZone="New Zealand(Wellington,Auckland)" iType="1" szStart="9/5/7/2" szEnd="4/1/7/3" szOffset="60"/>
</DSTData>
"""


class TemplateError(ValueError):
    """An AutoDST template that does not parse: the phone keeps to its factory template."""


# A template's zones: (offset east of UTC in seconds, name) -> the zone, with its summer time if it has one.
Template = Mapping[tuple[int, str], Zone]


def read_template(text: str) -> Template:
    """The zones of an AutoDST template. Entries without a readable ``szTime`` or a
    ``szZone`` are passed over (the phone's menus skip them); the first entry of a zone
    counts. Raises :class:`TemplateError` for text that is not such a template."""
    try:
        root = parse_xml(text, roots=("DSTData",))
    except NotXml as exc:
        raise TemplateError(str(exc)) from None
    zones: dict[tuple[int, str], Zone] = {}
    for entry in root.iter("DST"):
        standard_s = hours_offset_s(entry.get("szTime"))
        name = (entry.get("szZone") or "").strip()
        if standard_s is None or not name or (standard_s, name) in zones:
            continue
        kind = entry.get("iType", "0")
        zones[standard_s, name] = zone_from(standard_s, dst_day(kind, entry.get("szStart", "")),
                                            dst_day(kind, entry.get("szEnd", "")), forward_minutes(entry.get("szOffset")) * 60)
    return zones


@functools.lru_cache(maxsize=16)
def _template_or_none(text: str) -> Template | None:
    try:
        return read_template(text)
    except TemplateError:
        return None


def standard_offset(settings: Mapping[str, str], dhcp_offset_s: int | None = None) -> tuple[int, str]:
    """The phone's standard offset and where it comes from in words: the lease's option 2
    with ``local_time.dhcp_time`` 1, else ``local_time.time_zone``, else the factory ``+8``."""
    if settings.get(DHCP_TIME_KEY, "0").strip() != "1":
        dhcp_offset_s = None
    return local_time.standard_offset(TIME_ZONE_KEY, settings.get(TIME_ZONE_KEY), FACTORY_TIME_ZONE, dhcp_offset_s,
                                      f"{DHCP_TIME_KEY} = 1")


def phone_zone(settings: Mapping[str, str], own_template: str | None = None,
               dhcp_offset_s: int | None = None) -> Zone:
    """The zone the phone keeps its clock in: :func:`standard_offset` and the summer time
    ``local_time.summer_time`` gives; ``own_template`` is the AutoDST template it keeps on
    flash, if any; ``dhcp_offset_s`` the option 2 of its lease, if any."""
    return _zone(standard_offset(settings, dhcp_offset_s)[0], settings.get(SUMMER_TIME_KEY, "2").strip(),
                 settings.get(TIME_ZONE_NAME_KEY, FACTORY_TIME_ZONE_NAME).strip(), own_template,
                 settings.get(DST_TYPE_KEY, "0"), settings.get(DST_START_KEY, "1/1/0"),
                 settings.get(DST_END_KEY, "12/31/23"), settings.get(DST_OFFSET_KEY, "60"))


@functools.lru_cache(maxsize=1024)
def _zone(standard_s: int, summer: str, name: str, own_template: str | None,
          kind: str, start: str, end: str, offset: str) -> Zone:
    if summer == "1":
        return zone_from(standard_s, dst_day(kind, start), dst_day(kind, end), forward_minutes(offset) * 60)
    if summer == "2":
        return template_zones(own_template).get((standard_s, name), Zone(standard_s))
    return Zone(standard_s)


def describe(settings: Mapping[str, str], own_template: str | None = None, dhcp_offset_s: int | None = None) -> str:
    """What the phone's clock keeps, in words for its timeline:
    ``clock +1, Germany(Berlin) in the factory AutoDST template: summer time +60 min``."""
    standard_s, source = standard_offset(settings, dhcp_offset_s)
    zone = phone_zone(settings, own_template, dhcp_offset_s)
    summer = settings.get(SUMMER_TIME_KEY, "2").strip()
    kept = summer_words(zone)
    if summer == "1":
        rule = "by its rule" if zone.has_summer_time else "its rule does not read"
        return f"clock {source}, {rule}: {kept}"
    if summer != "2":
        return f"clock {source}: {kept}"
    name = settings.get(TIME_ZONE_NAME_KEY, FACTORY_TIME_ZONE_NAME).strip()
    own = own_template is not None and _template_or_none(own_template) is not None
    template = f"its own AutoDST template ({AUTO_DST_FILE})" if own else "the factory AutoDST template"
    found = (standard_s, name) in template_zones(own_template)
    return f"clock {source}, {name} {'in' if found else 'not in'} {template}: {kept}"


def template_zones(own_template: str | None) -> Template:
    """The zones the phone looks its own up in: its own template if it parses, else the factory one."""
    own = _template_or_none(own_template) if own_template is not None else None
    return FACTORY_ZONES if own is None else own


def forward_minutes(text: str | None) -> int:
    """``szOffset``/``local_time.offset_time``: minutes the clock goes forward, 60 when absent
    or not a number. A negative one (the guides allow -300) comes back negative, which
    :func:`zone_from` keeps as standard time: labsim has no summer time that goes back."""
    text = (text or "").strip()
    minutes = parse_int(text.lstrip("+-"), None)
    if minutes is None:
        return 60
    return -minutes if text.startswith("-") else minutes


def dst_day(kind: str, text: str) -> DayRule | None:
    """A change's day and hour: by date (``kind`` 0) "month/day/hour" (``3/29/2``); by week
    (``kind`` 1) "month/week/weekday/hour", week 1-5 (5 the last), weekday 1 Monday … 7
    Sunday (``3/2/7/2``, the second Sunday of March at 02:00), and optionally a fifth field,
    days -1 to -6 before that day (``3/5/7/2/-2``, the Friday before March's last Sunday).
    Hours 0-23 from midnight. None for anything else."""
    parts = [part.strip() for part in (text or "").split("/")]
    by_week = (kind or "").strip() == "1"
    days_before = 0
    if by_week and len(parts) == 5:
        before = parts.pop()
        days_before = parse_int(before[1:], 0) if before.startswith("-") else 0
        if not 1 <= days_before <= 6:
            return None
    digits = all(is_number(part) for part in parts)
    if not digits or len(parts) != (4 if by_week else 3):
        return None
    numbers = [int(part) for part in parts]
    month, hour = numbers[0], numbers[-1]
    if not 1 <= month <= 12 or hour > 23:
        return None
    if len(numbers) == 3:
        return DayRule(month, numbers[1], None, hour * 3600) if 1 <= numbers[1] <= 31 else None
    week, weekday = numbers[1], numbers[2]
    if not (1 <= week <= 5 and 1 <= weekday <= 7):
        return None
    return DayRule(month, -7 if week == 5 else 1 + 7 * (week - 1), weekday % 7, (hour - 24 * days_before) * 3600)


FACTORY_ZONES = read_template(FACTORY_TEMPLATE)

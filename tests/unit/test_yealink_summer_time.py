"""Yealink's summer time: the AutoDST template (``local_time.summer_time = 2``, the factory
value) and the rules both it and ``summer_time = 1`` write."""

import zoneinfo
from datetime import datetime, timedelta, timezone

import pytest

from labsim.phones import yealink_summer_time as summer_time
from labsim.phones.local_time import CALENDAR_ORIGIN_S, DayRule, Zone
from labsim.phones.yealink_summer_time import FACTORY_ZONES, TemplateError, dst_day, phone_zone, read_template


def lab(text: str) -> float:
    """A UTC date and time as seconds of the lab's clock."""
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)
    return moment.timestamp() - CALENDAR_ORIGIN_S


# Each name of labsim's factory template, and the IANA zone that keeps the same clock.
IANA = {
    "United States-Alaska Time": "America/Anchorage", "United States-Pacific Time": "America/Los_Angeles",
    "United States-Mountain Time": "America/Denver", "United States-MST no DST": "America/Phoenix",
    "United States-Central Time": "America/Chicago", "Mexico(Mexico City,Acapulco)": "America/Mexico_City",
    "United States-Eastern Time": "America/New_York", "Canada(Montreal,Ottawa,Quebec)": "America/Toronto",
    "Canada-New Foundland(St.Johns)": "America/St_Johns", "GMT": "Etc/GMT",
    "United Kingdom(London)": "Europe/London", "Ireland(Dublin)": "Europe/Dublin",
    "Portugal(Lisboa,Porto,Funchal)": "Europe/Lisbon", "Austria(Vienna)": "Europe/Vienna",
    "Belgium(Brussels)": "Europe/Brussels", "Czech Republic(Prague)": "Europe/Prague",
    "Denmark(Kopenhagen)": "Europe/Copenhagen", "France(Paris)": "Europe/Paris", "Germany(Berlin)": "Europe/Berlin",
    "Hungary(Budapest)": "Europe/Budapest", "Italy(Rome)": "Europe/Rome", "Netherlands(Amsterdam)": "Europe/Amsterdam",
    "Finland(Helsinki)": "Europe/Helsinki", "Greece(Athens)": "Europe/Athens", "Romania(Bucharest)": "Europe/Bucharest",
    "Ukraine(Kyiv,Odessa)": "Europe/Kyiv", "Russia(Moscow)": "Europe/Moscow", "India(Calcutta)": "Asia/Kolkata",
    "China(Beijing)": "Asia/Shanghai", "Singapore(Singapore)": "Asia/Singapore", "Australia(Perth)": "Australia/Perth",
    "Japan(Tokyo)": "Asia/Tokyo", "Korea(Seoul)": "Asia/Seoul", "Australia(Adelaide)": "Australia/Adelaide",
    "Australia(Darwin)": "Australia/Darwin", "Australia(Sydney,Melbourne,Canberra)": "Australia/Sydney",
    "Australia(Hobart)": "Australia/Hobart", "Australia(Brisbane)": "Australia/Brisbane",
    "Australia(Lord Howe Islands)": "Australia/Lord_Howe", "New Zealand(Wellington,Auckland)": "Pacific/Auckland",
}


def test_every_factory_zone_is_named_once_and_has_its_iana_twin():
    assert sorted(name for _, name in FACTORY_ZONES) == sorted(IANA)


@pytest.mark.parametrize("offset_s, name", sorted(FACTORY_ZONES), ids=lambda value: str(value))
def test_factory_template_keeps_the_clock_iana_keeps_in_2026(offset_s, name):
    # Every hour of the year, and the minute either side of each of IANA's changes of clock
    # (the rules are the same every year; summer across the new year counts both ends).
    zone, iana = FACTORY_ZONES[offset_s, name], zoneinfo.ZoneInfo(IANA[name])

    def offsets(at: datetime) -> tuple[int, int]:
        return zone.offset_at(at.timestamp() - CALENDAR_ORIGIN_S), int(at.astimezone(iana).utcoffset().total_seconds())

    hours = [datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(hours=hour) for hour in range(365 * 24 + 1)]
    wrong = [at.isoformat() for at in hours if offsets(at)[0] != offsets(at)[1]]
    changes = 0
    for before, after in zip(hours, hours[1:]):
        if offsets(before)[1] == offsets(after)[1]:
            continue
        changes += 1
        minute = next(before + timedelta(minutes=m) for m in range(1, 61)
                      if offsets(before + timedelta(minutes=m))[1] == offsets(after)[1])
        wrong += [at.isoformat() for at in (minute - timedelta(minutes=1), minute) if offsets(at)[0] != offsets(at)[1]]
    assert not wrong, wrong[:5]
    assert changes == (2 if zone.has_summer_time else 0)


@pytest.mark.parametrize("settings, standard_s, summer", [
    ({"local_time.time_zone": "+1", "local_time.time_zone_name": "Germany(Berlin)"}, 3600, True),  # 2, the factory value
    ({"local_time.time_zone": "+1", "local_time.time_zone_name": " Germany(Berlin) ", "local_time.summer_time": "2"},
     3600, True),
    ({"local_time.time_zone": "+01:00", "local_time.time_zone_name": "Germany(Berlin)"}, 3600, True),
    ({"local_time.time_zone": "+1"}, 3600, False),  # the factory name, China(Beijing), has no entry at +1
    ({"local_time.time_zone": "+8"}, 8 * 3600, False),  # China(Beijing) itself: no summer time
    ({"local_time.time_zone": "+1", "local_time.time_zone_name": "germany(berlin)"}, 3600, False),  # names are exact
    ({"local_time.time_zone": "+2", "local_time.time_zone_name": "Germany(Berlin)"}, 7200, False),  # not at +2
    ({"local_time.time_zone": "+1", "local_time.time_zone_name": "Germany(Berlin)", "local_time.summer_time": "0"},
     3600, False),
    ({"local_time.time_zone_name": "Germany(Berlin)"}, 8 * 3600, False),  # no zone: the factory +8, no Berlin there
    ({}, 8 * 3600, False),  # the factory zone and name: China's clock
    ({"local_time.time_zone": "China(Beijing)"}, 8 * 3600, False),  # not a zone: the factory one
    ({"local_time.time_zone": "+1", "local_time.time_zone_name": "Germany(Berlin)", "local_time.summer_time": "1",
      "local_time.start_time": "x"}, 3600, False),  # 1 reads the settings' rule only, and it does not read
])
def test_automatic_summer_time_is_the_template_entry_of_the_phones_offset_and_name(settings, standard_s, summer):
    zone = phone_zone(settings)
    assert (zone.standard_s, zone.has_summer_time) == (standard_s, summer)
    if summer:
        assert zone == FACTORY_ZONES[3600, "Germany(Berlin)"]


OWN = """<?xml version="1.0" encoding="UTF-8"?>
<DSTData>
  <DST szTime="+1" szZone="Lab(Town)" iType="0" szStart="4/5/2" szEnd="10/25/3" szOffset="120"/>
  <DST szTime="+1" szZone="Lab(Town)" iType="0" szStart="6/1/2" szEnd="7/1/3" szOffset="60"/>
  <DST szZone="No offset(Here)" iType="0" szStart="4/5/2" szEnd="10/25/3"/>
  <DST szTime="+1" iType="0" szStart="4/5/2" szEnd="10/25/3"/>
  <DST szTime="+1:30" szZone="Half(Way)" iType="1" szStart="3/5/7/2/-2" szEnd="10/5/7/3"/>
  <DST szTime="+1" szZone="Back(Wards)" iType="0" szStart="4/5/2" szEnd="10/25/3" szOffset="-60"/>
  <DST szTime="+2" szZone="Standard(Only)"/>
</DSTData>
"""


def test_an_own_template_replaces_the_factory_one_as_a_whole():
    zones = read_template(OWN)
    assert sorted(zones) == [(3600, "Back(Wards)"), (3600, "Lab(Town)"), (5400, "Half(Way)"), (7200, "Standard(Only)")]
    # the first entry of a zone counts; by date; szOffset minutes
    assert zones[3600, "Lab(Town)"] == Zone(3600, 7200, DayRule(4, 5, None, 7200), DayRule(10, 25, None, 10800))
    # szOffset absent: 60 minutes; a fifth field: days before (the Friday before March's last Sunday)
    half = zones[5400, "Half(Way)"]
    assert half.summer_extra_s == 3600
    assert half.offset_at(lab("2026-03-27 00:29")) == 5400 and half.offset_at(lab("2026-03-27 00:30")) == 9000
    assert not zones[3600, "Back(Wards)"].has_summer_time  # summer time that goes back: standard time
    assert zones[7200, "Standard(Only)"] == Zone(7200)
    own = {"local_time.time_zone": "+1", "local_time.time_zone_name": "Lab(Town)"}
    assert phone_zone(own, OWN) == zones[3600, "Lab(Town)"] and not phone_zone(own).has_summer_time
    berlin = {"local_time.time_zone": "+1", "local_time.time_zone_name": "Germany(Berlin)"}
    assert phone_zone(berlin).has_summer_time and not phone_zone(berlin, OWN).has_summer_time


@pytest.mark.parametrize("text, error", [
    ("", "not well-formed XML"), ("<DSTData><DST szTime='+1'></DSTData>", "not well-formed XML"),
    ("+1 Germany(Berlin) 3/5/7/2", "not well-formed XML"),
    ("<Zones><DST szTime='+1' szZone='A(B)'/></Zones>", "root element is <Zones>"),
])
def test_an_own_template_that_does_not_parse_leaves_the_factory_one(text, error):
    # (The phone keeps the file as text, UTF-8: a declared encoding is not read again.)
    with pytest.raises(TemplateError, match=error):
        read_template(text)
    berlin = {"local_time.time_zone": "+1", "local_time.time_zone_name": "Germany(Berlin)"}
    assert phone_zone(berlin, text) == FACTORY_ZONES[3600, "Germany(Berlin)"]


@pytest.mark.parametrize("kind, text, rule", [
    ("0", "3/29/2", DayRule(3, 29, None, 7200)),
    ("1", "3/5/7/2", DayRule(3, -7, 0, 7200)),  # the last Sunday
    ("1", "3/2/7/2", DayRule(3, 8, 0, 7200)),  # the second Sunday
    ("1", "10/1/1/0", DayRule(10, 1, 1, 0)),  # the first Monday, midnight
    ("1", "3/5/7/2/-2", DayRule(3, -7, 0, 7200 - 2 * 86400)),  # two days before the last Sunday
    ("1", "3/5/7/2/-7", None), ("1", "3/5/7/2/2", None), ("1", "3/5/7/2/-0", None), ("0", "3/29/2/-1", None),
    ("1", "3/6/7/2", None), ("1", "3/5/0/2", None), ("0", "3/29/24", None), ("0", "3/2²/2", None), ("0", "", None),
])
def test_a_change_reads_as_yealinks_rules_write_it(kind, text, rule):
    assert dst_day(kind, text) == rule


@pytest.mark.parametrize("text, minutes", [(None, 60), ("", 60), ("30", 30), ("+90", 90), ("-60", -60), ("x", 60)])
def test_minutes_forward(text, minutes):
    assert summer_time.forward_minutes(text) == minutes


@pytest.mark.parametrize("settings, own, words", [
    ({"local_time.time_zone": "+1", "local_time.time_zone_name": "Germany(Berlin)"}, None,
     "clock +1, Germany(Berlin) in the factory AutoDST template: summer time +60 min"),
    ({"local_time.time_zone": "+1"}, None, "clock +1, China(Beijing) not in the factory AutoDST template: no summer time"),
    ({"local_time.time_zone": "+8"}, None, "clock +8, China(Beijing) in the factory AutoDST template: no summer time"),
    ({"local_time.time_zone": "+1", "local_time.time_zone_name": "Lab(Town)"}, OWN,
     "clock +1, Lab(Town) in its own AutoDST template (AutoDST.xml): summer time +120 min"),
    ({"local_time.time_zone": "+1", "local_time.time_zone_name": "Germany(Berlin)"}, "<x",
     "clock +1, Germany(Berlin) in the factory AutoDST template: summer time +60 min"),  # its own does not parse
    ({"local_time.time_zone": "0", "local_time.summer_time": "1", "local_time.dst_time_type": "1",
      "local_time.start_time": "3/5/7/1", "local_time.end_time": "10/5/7/2"}, None, "clock 0, by its rule: summer time +60 min"),
    ({"local_time.time_zone": "0", "local_time.summer_time": "1"}, None,  # 1/1/0 to 12/31/23: a rule that reads
     "clock 0, by its rule: summer time +60 min"),
    ({"local_time.time_zone": "0", "local_time.summer_time": "1", "local_time.start_time": "x"}, None,
     "clock 0, its rule does not read: no summer time"),
    ({"local_time.time_zone": "+1", "local_time.summer_time": "0"}, None, "clock +1: no summer time"),
    ({"local_time.time_zone_name": "Germany(Berlin)"}, None, "clock +8, the factory zone (local_time.time_zone "
     "not set), Germany(Berlin) not in the factory AutoDST template: no summer time"),
    ({"local_time.time_zone": "GMT+1"}, None, "clock GMT+1, China(Beijing) not in the factory AutoDST template: "
                                              "no summer time"),
    ({"local_time.time_zone": "Berlin"}, None, "clock +8, the factory zone (local_time.time_zone 'Berlin' is no zone), "
                                               "China(Beijing) in the factory AutoDST template: no summer time"),
])
def test_the_phones_timeline_says_what_its_clock_keeps(settings, own, words):
    assert summer_time.describe(settings, own) == words


BERLIN = {"local_time.time_zone": "-5", "local_time.time_zone_name": "Germany(Berlin)"}


@pytest.mark.parametrize("settings, dhcp_offset_s, standard_s, summer, words", [
    # local_time.dhcp_time 1: the lease's option 2 stands for local_time.time_zone, its
    # name still looked up with it (Berlin at +1 has summer time)
    (dict(BERLIN, **{"local_time.dhcp_time": "1"}), 3600, 3600, True,
     "clock +1 from DHCP option 2 (local_time.dhcp_time = 1), Germany(Berlin) in the factory AutoDST template: "
     "summer time +60 min"),
    (dict(BERLIN, **{"local_time.dhcp_time": "1"}), 19800, 19800, False,
     "clock +5:30 from DHCP option 2 (local_time.dhcp_time = 1), Germany(Berlin) not in the factory AutoDST "
     "template: no summer time"),
    (dict(BERLIN, **{"local_time.dhcp_time": "0"}), 3600, -18000, False,  # 0, the factory value: the setting's
     "clock -5, Germany(Berlin) not in the factory AutoDST template: no summer time"),
    (BERLIN, 3600, -18000, False, "clock -5, Germany(Berlin) not in the factory AutoDST template: no summer time"),
    (dict(BERLIN, **{"local_time.dhcp_time": "1"}), None, -18000, False,  # no option 2 in the lease
     "clock -5, Germany(Berlin) not in the factory AutoDST template: no summer time"),
])
def test_dhcp_time_lets_option_2_stand_for_the_zone(settings, dhcp_offset_s, standard_s, summer, words):
    zone = phone_zone(settings, None, dhcp_offset_s)
    assert (zone.standard_s, zone.has_summer_time) == (standard_s, summer)
    assert summer_time.describe(settings, None, dhcp_offset_s) == words

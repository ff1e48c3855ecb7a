"""The zones phones are provisioned with, as their resync windows read them, summer time
included."""

import calendar
from datetime import datetime, timezone
from types import SimpleNamespace
from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import given, strategies as st

from labsim.phones import avaya, cisco, grandstream, polycom, yealink_summer_time
from labsim.phones.local_time import (CALENDAR_ORIGIN_S, EAST_MAX_S, WEST_MAX_S, DayRule, YearDayRule, Zone,
                                      dhcp_time_offset_s, hours_offset_s, hours_text, is_posix_zone, posix_zone,
                                      seconds_offset_s)
from labsim.phones.vendors import profile_for
from tests.phonelab import PhoneLab


@pytest.mark.parametrize("text, offset", [
    ("+8", 8 * 3600), ("-5", -5 * 3600), ("+5:30", 5 * 3600 + 1800), ("-3:30", -(3 * 3600 + 1800)),
    ("+5:45", 5 * 3600 + 2700), ("0", 0), ("8", 8 * 3600), ("+14", EAST_MAX_S), ("-12", -WEST_MAX_S),
    ("GMT-05:00", -5 * 3600), ("GMT+05:30", 5 * 3600 + 1800), ("gmt+1", 3600), ("UTC+1", 3600),
    (" +1 ", 3600), ('"-5:00"', -5 * 3600), ("GMT", 0), ("UTC", 0),
])
def test_hours_and_minutes_east_of_utc(text, offset):
    assert hours_offset_s(text) == offset


@pytest.mark.parametrize("text", [None, "", "+15", "-13", "+5:60", "+5:3", "123", "EST", "+8h", "China(Beijing)",
                                  "GMT-", "--5", "+5:30:00"])
def test_what_is_not_a_zone_keeps_the_labs_clock(text):
    assert hours_offset_s(text) is None


@pytest.mark.parametrize("text, offset", [("-18000", -18000), ("3600", 3600), (" 19800 ", 19800), ("0", 0),
                                          ("50400", EAST_MAX_S), ("-43200", -WEST_MAX_S)])
def test_whole_seconds_east_of_utc(text, offset):
    assert seconds_offset_s(text) == offset


@pytest.mark.parametrize("text", [None, "", "x", "50401", "-43201", "3600.5", "-5:00"])
def test_seconds_that_are_not_a_zone_keep_the_labs_clock(text):
    assert seconds_offset_s(text) is None


@pytest.mark.parametrize("text, offset", [
    ("EST5EDT", -5 * 3600), ("EST+5EDT,M3.2.0/02:00:00,M11.1.0/02:00:00", -5 * 3600), ("EST5", -5 * 3600),
    ("CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00", 3600), ("GMT0BST,M3.5.0/1,M10.5.0", 0), ("UTC0", 0),
    ("IST-5:30", 5 * 3600 + 1800), ("<+0545>-5:45", 5 * 3600 + 2700), ("<-03>3", -3 * 3600),
    ("NZST-12NZDT,M9.5.0,M4.1.0/3", 12 * 3600), ("TZA+12", -WEST_MAX_S), ("LINT-14", EAST_MAX_S),
    ("EST05:00:30", -(5 * 3600 + 30)), ("EST5<EDT>", -5 * 3600), (' "CST6CDT" ', -6 * 3600),
])
def test_posix_tz_counts_hours_west_of_utc(text, offset):
    # POSIX TZ: the standard time's offset is positive west of Greenwich (EST5 is UTC-5).
    assert posix_zone(text).standard_s == offset


@pytest.mark.parametrize("text", [None, "", "auto", "UTC", "EST", "ES5", "EST5x", "EST5,M3.2.0,M11.1.0",
                                  "EST25", "XYZ-15", "EST5:60", "EST5:00:60", ":America/New_York", "+8", "-18000",
                                  "<+05>"])
def test_what_is_not_a_posix_zone_keeps_the_labs_clock(text):
    assert posix_zone(text) == Zone()


# --- summer time -----------------------------------------------------------------------------


def lab(text: str) -> float:
    """A UTC date and time as the lab's clock counts it."""
    return calendar.timegm(datetime.fromisoformat(text).timetuple()) - CALENDAR_ORIGIN_S


def on_the_clock(seconds: float) -> str:
    return datetime.fromtimestamp(CALENDAR_ORIGIN_S + seconds, timezone.utc).strftime("%Y-%m-%d %H:%M")


CET = "CET-1CEST,M3.5.0,M10.5.0/3"


@pytest.mark.parametrize("rule, year, day", [
    (DayRule(3, -7, 0), 2026, "2026-03-29"),  # the last Sunday of March
    (DayRule(3, -7, 0), 2027, "2027-03-28"),
    (DayRule(3, 8, 0), 2026, "2026-03-08"),  # the second Sunday: on or after the 8th
    (DayRule(11, 1, 0), 2026, "2026-11-01"),  # the first Sunday of November
    (DayRule(10, -1, None), 2026, "2026-10-31"),  # the month's last day
    (DayRule(2, 29, None), 2026, "2026-02-28"),  # a day the month lacks: its last
    (DayRule(4, 1, 3), 2026, "2026-04-01"),  # the first Wednesday of April 2026 is the 1st
    (YearDayRule(60, False), 2028, "2028-03-01"),  # J60 is 1 March, leap year or not
    (YearDayRule(60, False), 2026, "2026-03-01"),
    (YearDayRule(59, True), 2028, "2028-02-29"),  # n counts 29 February
])
def test_a_change_falls_on_the_day_its_rule_names(rule, year, day):
    assert datetime.fromtimestamp(rule.local_moment(year), timezone.utc).strftime("%Y-%m-%d %H:%M") == day + " 02:00"


@pytest.mark.parametrize("text, moments", [
    # Europe: 01:00 UTC both times (02:00 CET forward, 03:00 CEST back).
    (CET, {"2026-03-29 00:59": 3600, "2026-03-29 01:00": 7200, "2026-10-25 00:59": 7200, "2026-10-25 01:00": 3600}),
    # The United States: 02:00 EST is 07:00 UTC, 02:00 EDT 06:00 UTC; EST5EDT without a rule takes theirs.
    ("EST5EDT", {"2026-03-08 06:59": -18000, "2026-03-08 07:00": -14400, "2026-11-01 05:59": -14400,
                 "2026-11-01 06:00": -18000, "2026-01-04 00:00": -18000}),
    ("EST5EDT4,M3.2.0/2:00:00,M11.1.0/2:00:00", {"2026-03-08 07:00": -14400, "2026-07-01 00:00": -14400}),
    # New Zealand: summer across the new year.
    ("NZST-12NZDT,M9.5.0,M4.1.0/3", {"2026-01-04 00:00": 13 * 3600, "2026-04-04 13:59": 13 * 3600,
                                     "2026-04-04 14:00": 12 * 3600, "2026-09-26 14:00": 13 * 3600}),
    # A summer time of its own size, and Julian days.
    ("<+1030>-10:30<+11>-11,M10.1.0,M4.1.0", {"2026-01-04 00:00": 11 * 3600, "2026-06-01 00:00": 37800}),
    ("XST3XDT,J60/0,J300/0", {"2026-02-28 12:00": -3 * 3600, "2026-03-01 03:00": -2 * 3600}),
])
def test_a_posix_zone_keeps_summer_time_by_its_rule(text, moments):
    zone = posix_zone(text)
    assert zone.has_summer_time
    assert {moment: zone.offset_at(lab(moment)) for moment in moments} == moments


@pytest.mark.parametrize("text", ["EST5", "UTC0", "EST5EDT,M13.1.0,M11.1.0", "EST5EDT,M3.2.0", "EST5EDT6",
                                  "EST5EDT,M3.2.7,M11.1.0", "EST5EDT,J0,J100", "EST5EDT,M3.2.0/200,M11.1.0"])
def test_a_posix_summer_time_that_cannot_be_read_keeps_standard_time(text):
    assert posix_zone(text) == Zone(0 if text == "UTC0" else -5 * 3600)


def wait_until(zone: Zone, now: str, local_wait_s: float) -> str:
    return on_the_clock(lab(now) + zone.wait_s(lab(now), local_wait_s))


@pytest.mark.parametrize("now, local_wait_h, comes_at", [
    # Saturday 12:00 UTC is 13:00 CET; Sunday 04:00 CEST is 02:00 UTC: 15 h on the phone, 14 on the lab's clock.
    ("2026-03-28 12:00", 15, "2026-03-29 02:00"),
    ("2026-03-28 12:00", 12.5, "2026-03-29 00:30"),  # 01:30 CET: before the change
    ("2026-03-28 12:00", 13.5, "2026-03-29 01:30"),  # 02:30 does not exist: 03:30 CEST, as mktime reads it
    # Saturday 12:00 UTC is 14:00 CEST; Sunday 04:00 CET is 03:00 UTC: 14 h on the phone, 15 on the lab's clock.
    ("2026-10-24 12:00", 14, "2026-10-25 03:00"),
    ("2026-10-24 12:00", 12.5, "2026-10-25 00:30"),  # 02:30 comes twice: the first time, CEST
    ("2026-06-01 12:00", 24, "2026-06-02 12:00"),  # no change on the way
])
def test_a_phone_waits_for_its_own_clock_across_a_change(now, local_wait_h, comes_at):
    assert wait_until(posix_zone(CET), now, local_wait_h * 3600) == comes_at


def test_without_summer_time_a_wait_is_the_labs():
    assert Zone(3600).wait_s(lab("2026-03-28 12:00"), 54000.0) == 54000.0
    assert Zone(3600).offset_at(lab("2026-07-01 00:00")) == 3600


# --- properties: any text reads without an error; a wait lands where the phone's clock says --------

RULES = [CET, "EST5EDT", "NZST-12NZDT,M9.5.0,M4.1.0/3", "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
         "XST3XDT,J60/0,J300/0", "AAA-2BBB-5,M3.5.0/-1,M10.5.0/26"]


def settings_phone(settings: dict, option_2: bytes | None = None) -> SimpleNamespace:
    """Just what a vendor's ``phone_zone`` reads: flash settings and the lease's options."""
    lease = SimpleNamespace(options={2: option_2}) if option_2 is not None else None
    return SimpleNamespace(flash=SimpleNamespace(settings=settings), lease=lease, model="SPA504G")


@given(st.text(max_size=60))
def test_any_text_is_a_zone_or_none_never_an_error(text):
    value = quoteattr(text)
    template = (f'<DSTData><DST szTime={value} szZone={value} iType={quoteattr(text[:1])} szStart={value} '
                f'szEnd={value} szOffset={value}/><DST szTime="+1" szZone={value} iType="1" szStart={value} '
                f'szEnd={value} szOffset={value}/></DSTData>')
    for zone in (posix_zone(text), yealink_summer_time.phone_zone({"local_time.time_zone": "+1",
                                                                   "local_time.summer_time": "1",
                                                                   "local_time.dst_time_type": text[:1],
                                                                   "local_time.start_time": text,
                                                                   "local_time.end_time": text,
                                                                   "local_time.offset_time": text}),
                 yealink_summer_time.phone_zone({"local_time.time_zone": "+1", "local_time.time_zone_name": text},
                                                own_template=template),
                 yealink_summer_time.phone_zone({"local_time.time_zone": text, "local_time.time_zone_name": text},
                                                own_template=text),
                 cisco.phone_zone(settings_phone({"Time_Zone": text, "Ignore_DHCP_Time_Offset": "No",
                                                  "Daylight_Saving_Time_Rule": text}, option_2=text.encode()[:4])),
                 cisco._zone(3600, True, f"start={text};end={text};save={text}"),
                 grandstream.phone_zone(settings_phone({"P64": text}, option_2=text.encode()[-4:])),
                 grandstream.phone_zone(settings_phone({"P64": "customize", "P246": text, "P143": "0"})),
                 avaya._zone(text, text, text), avaya._zone("YES", text, "YES"),
                 polycom.phone_zone(settings_phone({"tcpIpApp.sntp.gmtOffset": text,
                                                    **{polycom.DST + name: text for name, _ in polycom.DST_DEFAULTS}},
                                                   option_2=text.encode()[1:5]))):
        assert isinstance(zone, Zone) and zone.offset_at(0.0) == zone.offset_at(0.0)
    assert hours_offset_s(text) is None or -WEST_MAX_S <= hours_offset_s(text) <= EAST_MAX_S
    assert seconds_offset_s(text) is None or -WEST_MAX_S <= seconds_offset_s(text) <= EAST_MAX_S


@given(st.sampled_from(RULES), st.floats(0, 2 * 365 * 86400), st.floats(0, 8 * 86400))
def test_a_wait_ends_where_the_phones_own_clock_has_moved_on_by_it(rule, lab_s, local_wait_s):
    zone = posix_zone(rule)
    wait = zone.wait_s(lab_s, local_wait_s)
    assert wait >= 0
    moved = zone.local_s(lab_s + wait) - zone.local_s(lab_s)
    # Exactly the wait, or, for a moment the spring change skipped, as much later as the clock jumped.
    assert moved == pytest.approx(local_wait_s, abs=1e-6) or moved == pytest.approx(
        local_wait_s + zone.summer_extra_s, abs=1e-6)


@pytest.mark.parametrize("payload, offset", [
    ((-18000).to_bytes(4, "big", signed=True), -18000), ((19800).to_bytes(4, "big", signed=True), 19800),
    (bytes(4), 0), (EAST_MAX_S.to_bytes(4, "big", signed=True), EAST_MAX_S),
    ((EAST_MAX_S + 1).to_bytes(4, "big", signed=True), None),  # no zone in use
    ((-WEST_MAX_S - 1).to_bytes(4, "big", signed=True), None),
    (b"\xff\xff\xb9", None), (b"\x00" * 5, None), (b"", None), (None, None),  # RFC 2132 fixes four bytes
])
def test_option_2_is_a_signed_offset_east_of_utc(payload, offset):
    assert dhcp_time_offset_s({} if payload is None else {2: payload}) == offset


@pytest.mark.parametrize("offset, text", [(8 * 3600, "+8"), (-5 * 3600, "-5"), (19800, "+5:30"), (-12600, "-3:30"),
                                          (0, "0"), (20700, "+5:45")])
def test_an_offset_is_written_as_phones_write_it_and_reads_back(offset, text):
    assert hours_text(offset) == text and hours_offset_s(text) == offset


@pytest.mark.parametrize("text, is_zone", [("EST5EDT", True), ("<+0530>-5:30", True), ("UTC0", True), ("auto", False),
                                           ("customize", False), ("", False), ("420", False), ("EST25", False)])
def test_a_posix_zone_is_told_from_what_is_not_one(text, is_zone):
    assert is_posix_zone(text) == is_zone
    assert is_zone or posix_zone(text) == Zone()


@pytest.mark.parametrize("vendor, model, mac, asks", [
    # The vendors whose phones read option 2 ask for it, as every capture of their
    # requests does (Fingerbank, satori); snom's and Avaya's captures do not.
    ("yealink", "T46S", "00:15:65:13:ae:0b", True), ("polycom", "VVX400", "00:04:f2:12:34:56", True),
    ("cisco", "SPA504G", "e0:5f:b9:12:34:56", True), ("grandstream", "GXP2170", "00:0b:82:12:34:56", True),
    ("snom", "D785", "00:04:13:ab:cd:ef", False), ("avaya", "1220", "00:17:65:fd:bf:1d", False),
])
def test_phones_that_read_option_2_ask_for_it(vendor, model, mac, asks):
    lab = PhoneLab(profile_for(vendor), model=model, mac=mac, options={66: b"http://127.0.0.1:8080/"})
    lab.boot()
    discover = lab.network.dhcp_sent[0]
    assert (2 in discover.options[55]) == asks

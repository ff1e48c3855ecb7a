"""The zones phones are provisioned with, as their resync windows read them."""

import pytest

from labsim.phones.local_time import EAST_MAX_S, WEST_MAX_S, hours_offset_s, posix_offset_s, seconds_offset_s


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
    assert hours_offset_s(text) == 0


@pytest.mark.parametrize("text, offset", [("-18000", -18000), ("3600", 3600), (" 19800 ", 19800), ("0", 0),
                                          ("50400", EAST_MAX_S), ("-43200", -WEST_MAX_S)])
def test_whole_seconds_east_of_utc(text, offset):
    assert seconds_offset_s(text) == offset


@pytest.mark.parametrize("text", [None, "", "x", "50401", "-43201", "3600.5", "-5:00"])
def test_seconds_that_are_not_a_zone_keep_the_labs_clock(text):
    assert seconds_offset_s(text) == 0


@pytest.mark.parametrize("text, offset", [
    ("EST5EDT", -5 * 3600), ("EST+5EDT,M3.2.0/02:00:00,M11.1.0/02:00:00", -5 * 3600), ("EST5", -5 * 3600),
    ("CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00", 3600), ("GMT0BST,M3.5.0/1,M10.5.0", 0), ("UTC0", 0),
    ("IST-5:30", 5 * 3600 + 1800), ("<+0545>-5:45", 5 * 3600 + 2700), ("<-03>3", -3 * 3600),
    ("NZST-12NZDT,M9.5.0,M4.1.0/3", 12 * 3600), ("TZA+12", -WEST_MAX_S), ("LINT-14", EAST_MAX_S),
    ("EST05:00:30", -(5 * 3600 + 30)), ("EST5<EDT>", -5 * 3600), (' "CST6CDT" ', -6 * 3600),
])
def test_posix_tz_counts_hours_west_of_utc(text, offset):
    # POSIX TZ: the standard time's offset is positive west of Greenwich (EST5 is UTC-5).
    assert posix_offset_s(text) == offset


@pytest.mark.parametrize("text", [None, "", "auto", "UTC", "EST", "ES5", "EST5x", "EST5,M3.2.0,M11.1.0",
                                  "EST25", "XYZ-15", "EST5:60", "EST5:00:60", ":America/New_York", "+8", "-18000",
                                  "<+05>"])
def test_what_is_not_a_posix_zone_keeps_the_labs_clock(text):
    assert posix_offset_s(text) == 0

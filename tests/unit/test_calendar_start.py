"""A scenario's clock_starts: where on the calendar the phones' clocks start."""

import datetime

import pytest

from labsim import cli
from labsim.fleet.fleet import build_fleets
from labsim.phones.local_time import CALENDAR_ORIGIN_S
from labsim.scenario.calendar_start import clock_start_s, parse_start
from labsim.scenario.loader import ScenarioError, load_scenario, parse_scenario_text
from labsim.virtual.run import on_the_calendar, virtual_epoch, virtual_time_line

SATURDAY = 1774656000.0  # 2026-03-28 00:00:00 UTC


@pytest.mark.parametrize("value, seconds", [
    ("2026-03-28", SATURDAY), (datetime.date(2026, 3, 28), SATURDAY), ("2026-03-28 22:00", SATURDAY + 22 * 3600),
    ("2026-03-28T22:00:00Z", SATURDAY + 22 * 3600), ("2026-03-29T00:00+01:00", SATURDAY + 23 * 3600),
    (datetime.datetime(2026, 3, 28, 22, 0), SATURDAY + 22 * 3600),  # YAML's timestamp without a zone: UTC
    (datetime.datetime(2026, 3, 28, 22, 0, tzinfo=datetime.timezone.utc), SATURDAY + 22 * 3600),
    ("2026-01-04", CALENDAR_ORIGIN_S), ("2026-03-28 00:00:00.5", SATURDAY + 0.5),
])
def test_a_start_is_a_utc_moment(value, seconds):
    assert parse_start(value) == seconds


@pytest.mark.parametrize("value", ["saturday", "2026-13-01", "28/03/2026", 1774656000, None, "1999-12-31",
                                   "2100-01-01"])
def test_what_is_not_a_start_names_the_forms(value):
    with pytest.raises(ValueError, match=r"2026-03-28|2000 to 2099"):
        parse_start(value)


def test_the_behaviours_clock_counts_from_the_calendars_origin():
    assert clock_start_s(None) == 0.0
    assert clock_start_s(SATURDAY) == 83 * 86400  # Saturday: a weekday 6 of the phones' weeks
    assert clock_start_s(parse_start("2025-12-28")) == -7 * 86400  # before the origin: negative


SCENARIO = """\
name: t
clock_starts: {start}
services: {{dhcp: {{}}}}
fleets:
  - {{name: desk, vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}}
  - {{name: spa, vendor: cisco, model: SPA504G, count: 1, first_mac: "00:15:65:00:01:01"}}
  - {{name: own, vendor: cisco, model: SPA504G, count: 1, first_mac: "00:15:65:00:02:01",
      behaviour: {{clock_start_s: 3600.0}}}}
  - {{name: snom, vendor: snom, model: D785, count: 1, first_mac: "00:04:13:00:00:01"}}
"""


def test_clock_starts_starts_every_fleets_clock_unless_the_fleet_names_its_own():
    members = {m.fleet: m.phone.profile.behaviour for m in build_fleets(parse_scenario_text(
        SCENARIO.format(start="2026-03-28")))}
    assert members["desk"].week_starts_s == 83 * 86400 and members["spa"].clock_start_s == 83 * 86400
    assert members["own"].clock_start_s == 3600.0  # the fleet's own behaviour wins
    without = {m.fleet: m.phone.profile.behaviour for m in build_fleets(parse_scenario_text(
        SCENARIO.format(start="null")))}
    assert without["desk"].week_starts_s == 0.0 and without["spa"].clock_start_s == 0.0


def test_a_bad_clock_starts_names_its_line_and_field():
    with pytest.raises(ScenarioError) as caught:
        parse_scenario_text(SCENARIO.format(start="next saturday"), "s.yaml")
    [problem] = caught.value.problems
    assert problem.field == "clock_starts" and "2026-03-28" in str(problem) and str(problem).startswith("s.yaml:2:")


def test_the_virtual_clock_and_its_calendar_start_there():
    scenario = parse_scenario_text(SCENARIO.format(start="2026-03-28"))
    assert virtual_epoch(scenario) == SATURDAY
    assert virtual_epoch(parse_scenario_text(SCENARIO.format(start="null"))) == CALENDAR_ORIGIN_S
    assert on_the_calendar(86400 + 3600, SATURDAY) == "Sunday 2026-03-29 01:00 UTC"
    assert "(to Monday 2026-03-30 00:00 UTC)" in virtual_time_line(2 * 86400, 1.0, SATURDAY)


def test_clock_starts_on_the_command_line_is_checked_before_anything_starts(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(start="null"))
    code = cli.main(["run", str(path), "--clock", "virtual", "--clock-starts", "soon",
                     "--report-dir", str(tmp_path / "r")])
    assert code == 2 and "--clock-starts: 'soon' is not a date and time" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


TIMELINE = """\
name: t
{start}
services: {{dhcp: {{}}}}
fleets:
  - {{name: desk, vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}}
timeline:
  - at: {at}
    do: {{stop_service: dhcp}}
"""


@pytest.mark.parametrize("start, at, seconds", [
    ("clock_starts: 2026-03-28", "2026-03-29 01:00", 86400 + 3600),  # Europe's change, from Saturday
    ("clock_starts: 2026-03-28 12:00", "'2026-03-29T01:00:00Z'", 13 * 3600),
    ("", "2026-01-10", 6 * 86400),  # without clock_starts, from Sunday 2026-01-04
    ("clock_starts: 2026-03-28", "6d", 6 * 86400),  # durations still count from the start
    ("clock_starts: 2026-03-28", "90", 90),
])
def test_a_timeline_moment_may_be_a_date_on_the_runs_calendar(start, at, seconds):
    assert parse_scenario_text(TIMELINE.format(start=start, at=at)).timeline[0].at == seconds


def test_a_date_before_the_start_names_its_line_and_field():
    with pytest.raises(ScenarioError) as caught:
        parse_scenario_text(TIMELINE.format(start="clock_starts: 2026-03-28", at="2026-03-27 23:00"), "s.yaml")
    [problem] = caught.value.problems
    assert str(problem) == "s.yaml:7:5: timeline[0].at: 2026-03-27 23:00 is before the run starts (2026-03-28 00:00 UTC)"


def test_clock_starts_from_the_command_line_is_what_a_timelines_dates_count_from(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(TIMELINE.format(start="clock_starts: 2026-03-28", at="2026-03-29 01:00"))
    assert load_scenario(str(path)).scenario.timeline[0].at == 86400 + 3600
    moved = load_scenario(str(path), {"clock_starts": "2026-03-29"}).scenario
    assert moved.clock_starts == SATURDAY + 86400 and moved.timeline[0].at == 3600
    with pytest.raises(ScenarioError, match=r"timeline\[0\]\.at: 2026-03-29 01:00 is before the run starts"):
        load_scenario(str(path), {"clock_starts": "2026-03-30"})

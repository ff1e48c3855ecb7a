"""What labsim says before a run about the fleet's size (labsim/scenario/sizing.py): a
DHCP pool smaller than the phones that lease from it, and the counts ``--phones`` keeps
as written."""

from __future__ import annotations

import dataclasses

import pytest

from labsim.fleet.fleet import scale_scenario
from labsim.scenario.expectations import parse_expectation
from labsim.scenario.loader import load_scenario
from labsim.scenario.sizing import grows_with_fleet, kept_as_written_matters, noted, scaled_fleet_problems

SCENARIO = """\
name: sized
services:
  dhcp:
    pool: {start: 10.1.0.10, end: 10.1.0.19}
    reservations: {"00:15:65:00:00:01": 10.1.0.10}
  http: {port: 8080}
fleets:
  - vendor: yealink
    model: T46S
    count: 12
    first_mac: "00:15:65:00:00:01"
timeline:
  - when: phones.ready >= 10
    do:
      - power_cycle: {phones: 5}
      - check_sync: {phones: 50%}
  - at: 30
    do: {power_cycle: {phones: 3}}
  - when: phones.ready == 100%
    do: {power_cycle: {phones: all}}
expect:
  - phones.ready >= 10
  - {name: few, check: "service.http.requests < 100"}
  - time_to_ready.p95 < 30
  - phones.ready == 100%
  - phone.reboots == 1
  - stage.mac_cfg.p95 < 2
  - flash: {key: lang.gui, equals: English}
"""


def load(tmp_path, text: str, phones: int | None = None):
    path = tmp_path / "sized.yaml"
    path.write_text(text)
    loaded = load_scenario(str(path))
    written = sum(fleet.total for fleet in loaded.scenario.fleets)
    if phones is not None:
        loaded = dataclasses.replace(loaded, scenario=scale_scenario(loaded.scenario, phones))
    return noted(loaded, written)


@pytest.mark.parametrize("text, grows", [
    ("phones.ready >= 10", True), ("phones.failed == 0", True), ("phones.total == 500", True),
    ("reboots.total <= 500", True), ("stage.mac_cfg.count == 500", True), ("time_to_ready.count == 20", True),
    ("service.http.requests < 100", True), ("service.http.requests_per_min.max < 400", True),
    ("service.dhcp.requests_per_s.mean < 4", True),
    ("phones.ready == 100%", False), ("phone.reboots == 1", False), ("time_to_ready.p95 < 30", False),
    ("stage.mac_cfg.p99 < 2", False), ("stage.dhcp.max < 5", False),
])
def test_which_counts_grow_with_the_fleet(text, grows):
    assert grows_with_fleet(parse_expectation(text)) is grows


@pytest.mark.parametrize("text, matters", [
    ("phones.failed == 0", False), ("service.http.requests == 0 during mon-fri 08:00-23:00", False),
    ("phones.failed >= 1", False), ("stage.firmware.count > 0", False), ("service.http.requests < 1", False),
    ("phones.failed <= 0", False), ("phones.ready != 0", False),
    ("phones.failed <= 1", True), ("phones.failed > 1", True), ("phones.ready >= 10", True),
    ("service.http.requests_per_min.max < 400", True), ("phones.ready == 100%", False),
])
def test_none_or_some_means_the_same_at_any_size(text, matters):
    assert kept_as_written_matters(parse_expectation(text)) is matters


def test_a_pool_smaller_than_the_phones_that_lease_is_named_at_its_line(tmp_path):
    # 10 addresses, one of them reserved for the first phone: 9 for the 11 others.
    notes = load(tmp_path, SCENARIO).notes
    assert notes == (f"{tmp_path / 'sized.yaml'}:4:5: services.dhcp.pool: 10.1.0.10-10.1.0.19 holds 9 address(es) "
                     "for the 11 phones that lease one: 2 will get no lease while the others hold theirs "
                     "(the server counts pool_exhausted)",)


def test_a_pool_that_holds_the_fleet_and_a_scenario_without_labsims_dhcp_say_nothing(tmp_path):
    assert load(tmp_path, SCENARIO.replace("10.1.0.19", "10.1.0.21")).notes == ()
    assert not any("services.dhcp.pool" in note for note in load(tmp_path, SCENARIO, phones=10).notes)  # 9 lease
    external = SCENARIO.replace("  dhcp:\n    pool: {start: 10.1.0.10, end: 10.1.0.19}\n"
                                "    reservations: {\"00:15:65:00:00:01\": 10.1.0.10}\n", "") + (
                                "network: {dhcp_server: 127.0.0.1, dhcp_port: 6767}\n")
    assert "dhcp" not in external.split("fleets:")[0]
    assert load(tmp_path, external).notes == ()


def test_phones_names_every_count_it_keeps_as_written_in_file_order(tmp_path):
    notes = load(tmp_path, SCENARIO, phones=4).notes
    path = tmp_path / "sized.yaml"
    kept = "written for 12 phones; --phones runs 4: kept as written"
    assert notes == (
        f"{path}:13:5: timeline[0].when: 'phones.ready >= 10' compares a count that grows with the fleet, {kept}",
        f"{path}:15:23: timeline[0].do[0].power_cycle.phones: power_cycle acts on 5 phones, {kept} (all 4 of them)",
        f"{path}:18:24: timeline[1].do.power_cycle.phones: power_cycle acts on 3 phones, {kept}",
        f"{path}:22:5: expect[0]: 'phones.ready >= 10' compares a count that grows with the fleet, {kept}",
        f"{path}:23:17: expect[1].check: 'service.http.requests < 100' compares a count that grows with the fleet, "
        f"{kept}",
    )  # not the percentages, 'all', per-phone checks, latencies or the flash check


def test_phones_at_the_written_size_keeps_nothing_worth_a_note(tmp_path):
    roomy = SCENARIO.replace("10.1.0.19", "10.1.0.250")
    assert load(tmp_path, roomy, phones=12).notes == ()
    assert len(load(tmp_path, roomy, phones=13).notes) == 5


def test_a_lab_check_is_named_too(tmp_path):
    text = SCENARIO.replace("10.1.0.19", "10.1.0.250") + "lab:\n  task: t\n  check:\n    - phones.ready >= 12\n"
    [*_, lab] = load(tmp_path, text, phones=30).notes
    assert lab.endswith("lab.check[0]: 'phones.ready >= 12' compares a count that grows with the fleet, "
                        "written for 12 phones; --phones runs 30: kept as written")


TWO_FLEETS = """\
name: two
services: {dhcp: {pool: {start: 10.1.0.10, end: 10.1.250.250}}}
fleets:
  - name: desk
    vendor: yealink
    model: T46S
    count: 8
    first_mac: "00:15:65:00:00:01"
  - name: lobby
    vendor: yealink
    model: T46S
    count: 2
    first_mac: "00:15:65:00:01:01"
"""


def test_phones_that_make_a_fleets_macs_run_into_the_next_is_a_problem_at_its_first_mac(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(TWO_FLEETS)
    loaded = load_scenario(str(path))

    def scaled(phones):
        return scaled_fleet_problems(dataclasses.replace(loaded, scenario=scale_scenario(loaded.scenario, phones)))

    assert scaled(10) == [] and scaled(320) == []  # desk's 256 MACs end at 00:15:65:00:01:00
    [problem] = scaled(330)
    assert str(problem) == (
        f"{path}:13:5: fleets[1].first_mac: fleet 'lobby' has overlapping MAC ranges with fleet 'desk' once --phones "
        "scales them (desk 264 from 00:15:65:00:00:01, lobby 66 from 00:15:65:00:01:01): set the fleets' first_mac "
        "further apart, or run fewer phones")
    with pytest.raises(ValueError, match="already used by another fleet"):  # what the run would meet
        from labsim.fleet.fleet import build_fleets

        build_fleets(scale_scenario(loaded.scenario, 330))

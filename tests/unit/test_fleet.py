"""Fleets: MAC ranges, boot offsets for storm and ramp, and building phones from a scenario."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labsim.fleet.fleet import boot_offsets, build_fleets, mac_range
from labsim.scenario.loader import parse_scenario_text
from labsim.scenario.schema import RampBoot, StormBoot

# --- MAC ranges -------------------------------------------------------------------------


def test_mac_range_counts_up_with_carry_in_lowercase_colon_form():
    assert mac_range("00:15:65:00:00:FE", 4) == [
        "00:15:65:00:00:fe", "00:15:65:00:00:ff", "00:15:65:00:01:00", "00:15:65:00:01:01",
    ]
    assert mac_range("00:15:65:ff:ff:ff", 2) == ["00:15:65:ff:ff:ff", "00:15:66:00:00:00"]


@pytest.mark.parametrize("first", ["00-15-65-00-00-01", "001565000001", "00:15:65:00:00:01"])
def test_mac_range_accepts_the_forms_the_schema_accepts(first):
    assert mac_range(first, 2) == ["00:15:65:00:00:01", "00:15:65:00:00:02"]


def test_mac_range_up_to_and_past_the_last_mac():
    assert mac_range("ff:ff:ff:ff:ff:fe", 2)[-1] == "ff:ff:ff:ff:ff:ff"
    with pytest.raises(ValueError):
        mac_range("ff:ff:ff:ff:ff:fe", 3)
    assert mac_range("00:00:00:00:00:00", 0) == []


@given(st.integers(0, (1 << 48) - 1000), st.integers(1, 200))
def test_mac_range_is_consecutive_and_distinct(start, count):
    first = ":".join(f"{start:012x}"[i:i + 2] for i in range(0, 12, 2))
    macs = mac_range(first, count)
    numbers = [int(m.replace(":", ""), 16) for m in macs]
    assert numbers == list(range(start, start + count))
    assert all(len(m) == 17 and m == m.lower() for m in macs)


# --- boot offsets -----------------------------------------------------------------------


def test_storm_without_delay_powers_everyone_on_at_once():
    assert boot_offsets(StormBoot(pattern="storm"), 5, random.Random(1)) == [0.0] * 5


def test_storm_with_delay_spreads_within_the_window_reproducibly():
    boot = StormBoot(pattern="storm", random_delay_s=10.0)
    first = boot_offsets(boot, 500, random.Random("seed"))
    assert len(first) == 500 and all(0.0 <= t <= 10.0 for t in first)
    assert first == boot_offsets(boot, 500, random.Random("seed"))
    assert first != boot_offsets(boot, 500, random.Random("other seed"))
    # Spread over the window, not bunched: each half gets a fair share.
    early = sum(1 for t in first if t < 5.0)
    assert 150 < early < 350


@pytest.mark.parametrize("per_second", [1.0, 4.0, 250.0, 0.5])
def test_ramp_powers_on_per_second_phones_each_second(per_second):
    offsets = boot_offsets(RampBoot(pattern="ramp", per_second=per_second), 1000, random.Random(1))
    assert offsets[0] == 0.0
    assert offsets == sorted(offsets)
    gaps = {round(b - a, 9) for a, b in zip(offsets, offsets[1:])}
    assert gaps == {round(1 / per_second, 9)}
    # Within any first second, exactly per_second phones start (when it is whole).
    if per_second >= 1:
        assert sum(1 for t in offsets if t < 1.0) == int(per_second)


def test_ramp_ignores_the_random_source():
    boot = RampBoot(pattern="ramp", per_second=3)
    assert boot_offsets(boot, 7, random.Random(1)) == boot_offsets(boot, 7, random.Random(2))


# --- building fleets from a scenario ----------------------------------------------------

SCENARIO = """\
name: f
seed: {seed}
services: {{dhcp: {{}}}}
fleets:
  - name: desk
    vendor: yealink
    models: {{T46S: 5, T48S: 3, T54S: 2}}
    first_mac: "00:15:65:00:00:fe"
    boot: {{pattern: ramp, per_second: 4}}
    boot_time_s: 2.5
    firmware: 66.84.0.10
  - vendor: yealink
    model: T42S
    count: 4
    first_mac: "80:5e:c0:00:00:01"
    boot: {{pattern: storm, random_delay_s: 3}}
"""


def _build(seed: int = 1):
    return build_fleets(parse_scenario_text(SCENARIO.format(seed=seed)))


def test_each_model_gets_exactly_its_count():
    members = _build()
    desk = [m for m in members if m.fleet == "desk"]
    assert Counter(m.phone.model for m in desk) == {"T46S": 5, "T48S": 3, "T54S": 2}
    assert len(members) == 14


def test_macs_follow_the_fleets_range_and_are_unique():
    members = _build()
    desk = [m.phone.mac for m in members if m.fleet == "desk"]
    assert desk == mac_range("00:15:65:00:00:fe", 10)
    other = [m.phone.mac for m in members if m.fleet != "desk"]
    assert other == mac_range("80:5e:c0:00:00:01", 4)
    assert len({m.phone.mac for m in members}) == len(members)


def test_unnamed_fleet_is_named_by_its_position():
    assert {m.fleet for m in _build()} == {"desk", "fleet2"}


def test_phones_carry_the_fleets_settings():
    members = _build()
    desk = [m for m in members if m.fleet == "desk"]
    assert all(m.vendor == "yealink" for m in members)
    assert all(m.phone.boot_time_s == 2.5 and m.phone.flash.firmware == "66.84.0.10" for m in desk)
    other = [m for m in members if m.fleet == "fleet2"]
    assert all(m.phone.boot_time_s == 1.0 for m in other)  # the schema's default
    assert all(m.phone.flash.firmware for m in other)        # the vendor's default firmware, not empty
    assert all(m.phone.state == "off" for m in members)


def test_power_on_times_follow_each_fleets_pattern():
    members = _build()
    desk = [m.power_on_at for m in members if m.fleet == "desk"]
    assert desk == [i / 4 for i in range(10)]
    storm = [m.power_on_at for m in members if m.fleet == "fleet2"]
    assert all(0.0 <= t <= 3.0 for t in storm) and len(set(storm)) > 1


def test_same_seed_same_fleet_other_seed_other_schedule():
    def schedule(members):
        return [(m.phone.mac, m.phone.model, m.power_on_at) for m in members]

    assert schedule(_build(1)) == schedule(_build(1))
    a, b = _build(1), _build(2)
    assert [m.phone.mac for m in a] == [m.phone.mac for m in b]
    assert [m.power_on_at for m in a if m.fleet == "fleet2"] != [m.power_on_at for m in b if m.fleet == "fleet2"]
    # Each phone has its own random source, seeded per run and per MAC.
    assert a[0].phone.rng.random() == _build(1)[0].phone.rng.random()
    assert a[0].phone.rng.random() != a[1].phone.rng.random()


def test_overlapping_fleets_are_refused_even_without_the_schema():
    scenario = parse_scenario_text(SCENARIO.format(seed=1))
    clash = scenario.fleets[1].model_copy(update={"first_mac": "00:15:65:00:01:00"})  # inside desk's range
    unchecked = scenario.model_copy(update={"fleets": [scenario.fleets[0], clash]})
    with pytest.raises(ValueError, match="already used"):
        build_fleets(unchecked)

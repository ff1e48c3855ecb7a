"""The shard rule: every phone in exactly one shard, the same one every run, and a
sharded phone identical to the phone one process would build."""

from __future__ import annotations

import pytest

from labsim.fleet.fleet import build_fleets
from labsim.fleet.shard import BadShard, Shard, relay_address_for, roster
from labsim.scenario.loader import parse_scenario_text

SCENARIO = """
name: shards
seed: 7
network: {dhcp_server: 127.0.0.1}
fleets:
  - {vendor: yealink, models: {T46S: 7, T54S: 3}, first_mac: "00:15:65:00:00:01",
     boot: {pattern: storm, random_delay_s: 5}}
  - {name: lobby, vendor: polycom, models: {VVX410: 5}, first_mac: "00:04:f2:00:00:01",
     boot: {pattern: ramp, per_second: 10}}
  - {vendor: cisco, model: CP-8841-3PCC, count: 1, first_mac: "00:1b:54:00:00:01"}
"""


@pytest.fixture(scope="module")
def scenario():
    return parse_scenario_text(SCENARIO)


def _fingerprint(member):
    phone = member.phone
    return (member.order, member.fleet, phone.mac, phone.model, member.power_on_at, phone.rng.random())


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 16, 17, 40])
def test_every_phone_is_in_exactly_one_shard_and_is_the_phone_one_process_builds(scenario, count):
    whole = {member.phone.mac: _fingerprint(member) for member in build_fleets(scenario)}
    seen: dict[str, int] = {}
    for index in range(count):
        for member in build_fleets(scenario, shard=Shard(index, count)):
            assert member.phone.mac not in seen, f"{member.phone.mac} in shards {seen[member.phone.mac]} and {index}"
            seen[member.phone.mac] = index
            # Same MAC, model, fleet, power-on time and random stream as in one process.
            assert _fingerprint(member) == whole[member.phone.mac]
    assert set(seen) == set(whole)


def test_shards_interleave_each_fleet_so_each_gets_its_share_of_every_fleet(scenario):
    shards = [build_fleets(scenario, shard=Shard(i, 2)) for i in range(2)]
    fleets = [{m.fleet: sum(1 for x in shard if x.fleet == m.fleet) for m in shard} for shard in shards]
    assert fleets == [{"fleet1": 5, "lobby": 3, "fleet3": 1}, {"fleet1": 5, "lobby": 2}]
    # The lobby ramp (10/s) becomes two ramps of 5/s: shard 0 gets positions 0, 2, 4.
    lobby0 = [m.power_on_at for m in shards[0] if m.fleet == "lobby"]
    assert lobby0 == pytest.approx([0.0, 0.2, 0.4])


def test_the_rule_is_stable_across_runs(scenario):
    first = [m.phone.mac for m in build_fleets(scenario, shard=Shard(1, 3))]
    again = [m.phone.mac for m in build_fleets(parse_scenario_text(SCENARIO), shard=Shard(1, 3))]
    assert first == again == ["00:15:65:00:00:02", "00:15:65:00:00:05", "00:15:65:00:00:08",
                              "00:04:f2:00:00:02", "00:04:f2:00:00:05"]


def test_the_roster_names_the_shard_build_fleets_gives_each_phone(scenario):
    entries = roster(scenario, 3)
    assert [e.phone.mac for e in entries] == [m.phone.mac for m in build_fleets(scenario)]
    for index in range(3):
        assert [e.phone.mac for e in entries if e.shard == index] == \
            [m.phone.mac for m in build_fleets(scenario, shard=Shard(index, 3))]


@pytest.mark.parametrize("text, expected", [("0/1", Shard(0, 1)), ("3/4", Shard(3, 4)), (" 1 / 2 ", Shard(1, 2))])
def test_parse(text, expected):
    assert Shard.parse(text) == expected


@pytest.mark.parametrize("text, says", [("4/4", "outside 0..3"), ("1/0", "at least 1"), ("1", "INDEX/COUNT"),
                                        ("a/2", "INDEX/COUNT"), ("-1/2", "INDEX/COUNT")])
def test_parse_refuses_with_the_reason(text, says):
    with pytest.raises(BadShard, match=says):
        Shard.parse(text)


def test_each_shard_relays_from_its_own_loopback_address():
    assert [relay_address_for("127.0.0.2", Shard(i, 3)) for i in range(3)] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    with pytest.raises(BadShard, match="leaves 127.0.0.0/8"):
        relay_address_for("127.255.255.254", Shard(5, 8))

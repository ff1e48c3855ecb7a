"""What scale-out refuses, before anything starts, naming the option."""

from __future__ import annotations

import pytest

from labsim.cli import main
from labsim.fleet.shard import wall_time
from labsim.scale.shard_run import refuse_uncoordinated_timeline
from labsim.scale.workers import refuse_what_workers_cannot_keep
from labsim.scenario.loader import parse_scenario_text

BASE = """
name: t
network: {dhcp_server: 127.0.0.1}
services: {http: {port: 8080}}  # run by labsim serve FILE beside the shards
fleets: [{vendor: yealink, model: T46S, count: 4, first_mac: "00:15:65:00:00:01"}]
"""


@pytest.mark.parametrize("args, says", [
    (["--workers", "2", "--shard", "0/2"], "--workers and --shard: give one"),
    (["--start-at", "2026-12-05T00:10:00Z"], "--start-at goes with --shard"),
    (["--workers", "0"], "--workers '0': a number of processes"),
    (["--workers", "many"], "--workers 'many'"),
    (["--shard", "2/2"], "--shard shard index 2 is outside 0..1"),
    (["--shard", "0/2", "--start-at", "at dawn"], "--start-at 'at dawn': expected an ISO 8601 time"),
    (["--shard", "0/2", "--ui", "127.0.0.1:0"], "--ui with --shard: a shard sees only its own phones"),
])
def test_bad_scale_options_exit_2_naming_the_option(tmp_path, capsys, args, says):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(BASE)
    assert main(["run", str(scenario), *args]) == 2
    assert says in capsys.readouterr().err


def test_start_at_takes_iso_8601_or_epoch_seconds():
    assert wall_time("2026-12-05T00:10:00Z") == wall_time("2026-12-05T00:10:00+00:00") == 1796429400.0
    assert wall_time("1796429400.5") == 1796429400.5


@pytest.mark.parametrize("timeline, says", [
    ("- {when: phones.ready >= 50%, do: {power_cycle: {phones: 10%}}}", "waits for 'when: phones.ready >= 50%'"),
    ("- {at: 5, do: {stop_service: http}}", "does stop_service, which acts on the lab's services or files"),
    ("- {at: 5, name: edit, do: [{power_cycle: {phones: 1}}, {delete_file: a.cfg}]}", "entry 1 (edit) does delete_file"),
])
def test_a_standalone_shard_refuses_what_it_cannot_see_or_run(timeline, says):
    scenario = parse_scenario_text(BASE + "timeline:\n  " + timeline + "\n")
    with pytest.raises(ValueError, match=r"^--shard: timeline entry 1") as caught:
        refuse_uncoordinated_timeline(scenario)
    assert says in str(caught.value)


def test_a_standalone_shard_keeps_timed_phone_actions():
    scenario = parse_scenario_text(BASE + "timeline:\n  - {at: 5, do: {power_cycle: {phones: 10%}}}\n")
    refuse_uncoordinated_timeline(scenario)


def test_workers_on_sockets_keep_a_when_on_any_metric():
    """The workers tell their requests and stage latencies as they go, the mirror has the rest."""
    for when in ("stage.dhcp.p95 < 1", "service.http.requests_per_min.max > 500", "time_to_ready.p95 < 9"):
        refuse_what_workers_cannot_keep(parse_scenario_text(
            BASE + f"timeline:\n  - {{when: {when}, do: {{check_sync: {{phones: all}}}}}}\n"))


def test_workers_auto_is_the_cpus_this_process_may_use():
    import os

    from labsim.scale.cli_scale import workers_count

    assert workers_count("auto") == len(os.sched_getaffinity(0))
    assert workers_count("3") == 3


def test_a_standalone_shard_refuses_a_service_port_it_cannot_know():
    from labsim.scale.shard_run import refuse_unknown_ports

    text = """
name: t
services: {dhcp: {port: 0, subnet: 10.1.0.0/16, pool: {start: 10.1.0.10, end: 10.1.0.99}}}
fleets: [{vendor: yealink, model: T46S, count: 4, first_mac: "00:15:65:00:00:01"}]
"""
    with pytest.raises(ValueError, match=r"--shard: services.dhcp.port is 0"):
        refuse_unknown_ports(parse_scenario_text(text))
    refuse_unknown_ports(parse_scenario_text(text.replace("port: 0", "port: 6767")))


def test_real_network_mode_runs_in_shards_with_their_share_of_the_rate_not_under_workers():
    from labsim.fleet.shard import Shard
    from labsim.scale.shard_run import refuse_real_network, shard_share_of_rate
    from labsim.scenario.loader import LoadedScenario

    text = BASE.replace("network: {dhcp_server: 127.0.0.1}",
                        "network: {interface: eth9, allow: [198.18.0.0/24], dhcp_rate: 300}")
    scenario = parse_scenario_text(text)
    with pytest.raises(ValueError, match=r"^--workers: network.interface \(real-network mode\) runs in one process"):
        refuse_what_workers_cannot_keep(scenario)
    refuse_real_network(scenario, "--shard")
    shared = shard_share_of_rate(LoadedScenario(scenario, "s.yaml"), Shard(1, 3))
    assert shared.scenario.network.dhcp_rate == 100 and scenario.network.dhcp_rate == 300
    relay = parse_scenario_text(text.replace("dhcp_rate: 300", "dhcp_rate: 300, dhcp_mode: relay, "
                                             "dhcp_server: 198.18.0.1"))
    with pytest.raises(ValueError, match=r"^--shard: network.dhcp_mode relay"):
        refuse_real_network(relay, "--shard")

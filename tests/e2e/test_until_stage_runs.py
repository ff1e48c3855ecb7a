"""fleets[].until end to end: a DHCP load test with labsim's DHCP server and nothing else,
and a fleet that stops after its first provisioning pass next to one that goes on."""

import pytest

from tests.e2e.test_run_scenarios import ports, run_labsim, scenario_text
from tests.peers import free_udp_port

pytestmark = pytest.mark.e2e


def test_a_dhcp_only_fleet_needs_no_other_server(tmp_path):
    text = f"""\
name: dhcp-load
time_limit_s: 60
services:
  dhcp:
    port: {free_udp_port()}
    subnet: 10.30.0.0/16
    pool: {{start: 10.30.0.10, end: 10.30.3.250}}
fleets:
  - vendor: yealink
    model: T46S
    count: 200
    first_mac: "00:15:65:70:00:01"
    boot: {{pattern: ramp, per_second: 400}}
    boot_time_s: 0
    until: dhcp
expect:
  - phones.ready == 100%
"""
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["summary"]["by_state"]["ready"] == 200
    assert set(report["summary"]["stages_s"]) == {"dhcp"}
    assert report["services"]["dhcp"]["ack"] == 200
    assert set(report["services"]) == {"dhcp"}
    leased = {event["detail"].split()[1] for phone in report["phones"] for event in phone["events"]
              if event["detail"].startswith("lease ")}
    assert len(leased) == 200  # a lease each, all different


def test_until_config_next_to_a_whole_cycle(tmp_path):
    p = ports()
    text = scenario_text(option66=f"http://127.0.0.1:{p['http_port']}/", count=10, expect=("phones.ready == 100%",),
                         **p)
    text = text.replace("fleets:\n", "fleets:\n  - vendor: yealink\n    name: first-pass\n    model: T46S\n"
                        "    count: 5\n    first_mac: \"00:15:65:71:00:01\"\n    until: config\n", 1)
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    by_fleet: dict[str, set] = {}
    for phone in report["phones"]:
        by_fleet.setdefault(phone["fleet"], set()).add((phone["state"], phone["reboots"]))
    assert by_fleet == {"first-pass": {("ready", 0)}, "desk": {("ready", 1)}}
    first_pass = [phone for phone in report["phones"] if phone["fleet"] == "first-pass"]
    assert all(phone["files"]["y000000000066.cfg"] for phone in first_pass)  # provisioned, not rebooted


def test_a_stage_that_does_not_exist_is_refused_with_its_line(tmp_path):
    p = ports()
    text = scenario_text(option66=f"http://127.0.0.1:{p['http_port']}/", count=2, **p)
    text = text.replace("fleets:\n  - ", "fleets:\n  - until: tftp\n    ", 1)
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 2 and report is None
    said = proc.stdout + proc.stderr
    assert "until" in said and "'dhcp', 'config' or 'ready'" in said, said

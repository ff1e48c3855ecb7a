"""The DHCP server's lease file in virtual time: written by the server's own keeper on
the simulated clock, its times simulated time (from the virtual epoch, 2026-01-04 UTC),
and read back by a restarted server as on sockets, so that a phone booting after the
restart gets a new address, not one the file says is taken."""

import json

import pytest

from labsim.services.lease_file import read_lease_file
from labsim.virtual.run import VIRTUAL_EPOCH
from tests.e2e.test_virtual_http import run, run_on_both_clocks
from tests.peers import free_tcp_port, free_udp_port

pytestmark = pytest.mark.e2e

LEASE_TIME_S = 3600
SCENARIO = """\
name: virtual-lease-file
time_limit_s: 60
services:
  dhcp: {{port: {dhcp}, subnet: 10.1.0.0/16, pool: {{start: 10.1.0.10, end: 10.1.3.250}}, lease_time_s: {lease},
         lease_file: leases.txt, options: {{66: "http://127.0.0.1:{http}/"}}}}
  http: {{port: {http}}}
provisioning:
  files:
    y000000000066.cfg: "#!version:1.0.0.1\\nstatic.network.lldp.enable = 1\\n"
fleets:
  - {{vendor: yealink, models: {{T46S: 5}}, first_mac: "00:15:65:00:00:01", boot: {{pattern: ramp, per_second: 1}}}}
timeline:
  - at: 2.5
    do: {{restart_service: dhcp}}
"""


def leases(tmp_path, name: str) -> list:
    return sorted((r.state, r.mac.hex(":"), r.ip) for r in read_lease_file(str(tmp_path / name / "report" / "leases.txt")))


def test_the_lease_file_ends_as_on_sockets(tmp_path):
    text = SCENARIO.format(dhcp=free_udp_port(), http=free_tcp_port(), lease=LEASE_TIME_S)
    on_sockets, in_memory = run_on_both_clocks(tmp_path, text)
    assert [(p["mac"], p["state"]) for p in in_memory["phones"]] == [(p["mac"], p["state"]) for p in on_sockets["phones"]]
    assert in_memory["services"]["dhcp"]["leases_restored"] == on_sockets["services"]["dhcp"]["leases_restored"] == 2
    expected = [("bound", f"00:15:65:00:00:0{n}", f"10.1.0.{9 + n}") for n in range(1, 6)]  # boot order, no reuse
    assert leases(tmp_path, "virtual") == leases(tmp_path, "sockets") == expected


def test_lease_times_in_the_file_are_simulated_time(tmp_path):
    text = SCENARIO.format(dhcp=6767, http=8080, lease=LEASE_TIME_S).replace("name:", "duration: 3h\nname:")
    report = run(tmp_path, "virtual", text, "--clock", "virtual")
    assert report["end_reason"] == "duration of 3h reached"
    events = [json.loads(line) for line in (tmp_path / "virtual" / "report" / "events.jsonl").read_text().splitlines()]
    last_ack = {}
    for event in events:
        if event["kind"] == "dhcp" and event["type"] == "ACK":
            last_ack[event["mac"]] = event["t"]
    assert len(last_ack) == 5 and all(t > 2 * 1800 for t in last_ack.values())  # renewed at T1 (30 min) since
    records = read_lease_file(str(tmp_path / "virtual" / "report" / "leases.txt"))
    assert {r.mac.hex(":") for r in records} == set(last_ack)
    for record in records:  # the server's ACK went out 1 ms (one hop) before the phone's "in" line
        acked = VIRTUAL_EPOCH + last_ack[record.mac.hex(":")] - 0.001
        assert record.state == "bound" and record.expires == pytest.approx(acked + LEASE_TIME_S, abs=1e-6)

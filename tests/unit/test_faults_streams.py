"""The stream side of labsim.faults (down, answer delay, bandwidth, the Pacer), without
I/O, and the per-service rules of the scenario's ``Fault``: which keys fit which service,
rejected with the file, line and key."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.faults import ActiveFault, FaultSet, FaultyLink, Pacer
from labsim.scenario.loader import ScenarioError, parse_scenario_text
from labsim.scenario.schema import FAULT_KEY_SERVICES, FAULT_SERVICES, Fault


class Clock:
    def __init__(self, now=0.0):
        self.now = now

    def seconds(self):
        return self.now


def fault_set(*active: ActiveFault) -> FaultSet:
    faults = FaultSet(random.Random(1))
    for fault in active:
        faults.add(fault)
    return faults


# --- FaultSet / FaultyLink on streams -----------------------------------------------------


def test_down_refuses_whatever_the_direction_and_counts():
    faults = fault_set(ActiveFault("outage", "ftp", direction="in", down=True))
    link = FaultyLink(faults, "ftp", Clock())
    assert link.refuses() and link.refuses()
    assert faults.stats["refused"] == 2
    assert not FaultyLink(faults, "dns", Clock()).refuses()  # another service: untouched
    faults.remove("outage")
    assert not link.refuses() and faults.stats["refused"] == 2


def test_answer_delay_adds_delay_slow_and_jitter_of_every_fault_on_the_service():
    faults = fault_set(ActiveFault("a", "ftp", slow_s=0.5), ActiveFault("b", "ftp", direction="in", delay_s=0.25),
                       ActiveFault("c", "dns", delay_s=9))
    link = FaultyLink(faults, "ftp", Clock())
    assert link.answer_delay() == pytest.approx(0.75)
    faults.add(ActiveFault("d", "ftp", jitter_s=0.1))
    delays = [link.answer_delay() for _ in range(200)]
    assert 0.65 <= min(delays) < 0.70 and 0.80 < max(delays) <= 0.85
    assert FaultyLink(fault_set(), "ftp", Clock()).answer_delay() == 0.0


def test_answer_delay_never_negative_with_more_jitter_than_delay():
    link = FaultyLink(fault_set(ActiveFault("j", "dns", delay_s=0.01, jitter_s=1.0)), "dns", Clock())
    assert min(link.answer_delay() for _ in range(200)) == 0.0


def test_bandwidth_is_per_direction_and_the_tightest_cap_wins():
    faults = fault_set(ActiveFault("down", "ftp", direction="out", bandwidth_kbps=64),
                       ActiveFault("both", "ftp", bandwidth_kbps=128))
    link = FaultyLink(faults, "ftp", Clock())
    assert link.bandwidth_kbps("out") == 64
    assert link.bandwidth_kbps("in") == 128
    faults.remove("both")
    assert link.bandwidth_kbps("in") is None


def test_http_jitter_varies_the_slow_answer():
    faults = fault_set(ActiveFault("h", "http", slow_s=1.0, jitter_s=0.5))
    delays = {round(faults.http("/x.cfg")[1], 6) for _ in range(50)}
    assert len(delays) > 40 and all(0.5 <= d <= 1.5 for d in delays)


# --- Pacer --------------------------------------------------------------------------------------


def drain(total: int, kbps: float, chunk: int) -> float:
    """Send ``total`` bytes through a Pacer as a paced sender does; returns the end time."""
    pacer, now, left = Pacer(), 0.0, total
    while left:
        size = min(chunk, left)
        wait = pacer.wait(now, size, kbps)
        if wait > 0:
            now += wait
            continue
        left -= size
    return now


@settings(max_examples=50, deadline=None)
@given(total=st.integers(1, 200_000), kbps=st.floats(1, 10_000), chunk=st.integers(64, 65536))
def test_pacer_takes_exactly_size_over_bandwidth(total, kbps, chunk):
    assert drain(total, kbps, chunk) == pytest.approx(total * 8 / (kbps * 1000), rel=1e-6)


def test_pacer_waits_before_the_chunk_so_the_last_one_is_late_too():
    pacer = Pacer()
    assert pacer.wait(0.0, 1000, 8) == pytest.approx(1.0)  # 1000 bytes at 8 kbit/s: one second
    assert pacer.wait(0.5, 1000, 8) == pytest.approx(0.5)  # asked again early: still waiting
    assert pacer.wait(1.0, 1000, 8) == 0.0  # now it goes
    assert pacer.wait(5.0, 500, 8) == pytest.approx(0.5)  # an idle line does not bank credit


def test_pacer_after_charges_what_has_arrived():
    pacer = Pacer()
    assert pacer.after(0.0, 1000, 8) == pytest.approx(1.0)
    assert pacer.after(0.2, 1000, 8) == pytest.approx(1.8)  # queued behind the first


def test_chunk_size_is_about_fifty_milliseconds_of_line_within_bounds():
    assert Pacer.chunk_size(64) == 400
    assert Pacer.chunk_size(1) == 64
    assert Pacer.chunk_size(1e9) == 65536


# --- the scenario's Fault: which keys fit which service ------------------------------------

SCENARIO = """\
# Every service runs (a fault acts inside labsim's own services: one on a service the
# scenario does not run is refused), and the fault is on line 7.
name: faults
fleets:
  - {{name: desk, vendor: yealink, models: {{T46S: 1}}, first_mac: "00:15:65:00:00:01"}}
faults:
  - {fault}
services:
  dhcp: {{port: 6767, subnet: 10.9.0.0/16, pool: {{start: 10.9.0.10, end: 10.9.0.250}}}}
  tftp: {{}}
  http: {{}}
  ftp: {{}}
  dns: {{}}
  pnp: {{url: "http://127.0.0.1:8080/"}}
"""

VALUE = {"loss": 0.2, "delay_s": 0.1, "jitter_s": 0.1, "duplicate": 0.2, "reorder": 0.2, "corrupt": 0.2,
         "bandwidth_kbps": 64, "drop_dhcp": "[OFFER]", "http_status": 500, "path": '"/*.cfg"', "slow_s": 1,
         "down": "true"}


def scenario_with(fault: str):
    return parse_scenario_text(SCENARIO.format(fault=fault), "f.yaml")


@pytest.mark.parametrize("service", FAULT_SERVICES)
@pytest.mark.parametrize("key", sorted(VALUE))
def test_every_key_is_accepted_exactly_for_its_services(key, service):
    text = f"{{service: {service}, {key}: {VALUE[key]}}}"
    if service in FAULT_KEY_SERVICES[key]:
        assert scenario_with(text).faults[0].service == service
        return
    with pytest.raises(ScenarioError) as caught:
        scenario_with(text)
    [problem] = caught.value.problems
    # Located: file, the fault's line, the key itself; the message names the services.
    assert str(problem).startswith("f.yaml:7:")
    assert problem.field == f"faults[0].{key}"
    assert f"{key} applies to " in problem.message and f"not {service}" in problem.message
    assert all(name in problem.message for name in FAULT_KEY_SERVICES[key])


@pytest.mark.parametrize("key", ["loss", "duplicate", "reorder", "corrupt"])
def test_datagram_faults_on_ftp_say_why_tcp_does_not_take_them(key):
    with pytest.raises(ScenarioError) as caught:
        scenario_with(f"{{service: ftp, {key}: 0.1}}")
    assert "TCP" in caught.value.problems[0].message


def test_an_explicit_default_is_not_an_error():
    fault = scenario_with('{service: ftp, loss: 0, path: "*", drop_dhcp: []}').faults[0]
    assert fault.loss == 0 and fault.path == "*"


def test_dns_slow_s_points_to_delay_s():
    with pytest.raises(ScenarioError) as caught:
        scenario_with("{service: dns, slow_s: 1}")
    assert "use delay_s" in caught.value.problems[0].message


def test_http_direction_in_is_rejected_out_and_both_fit():
    with pytest.raises(ScenarioError) as caught:
        scenario_with("{service: http, direction: in, http_status: 500}")
    assert caught.value.problems[0].field == "faults[0].direction"
    for direction in ("out", "both"):
        assert scenario_with(f"{{service: http, direction: {direction}, http_status: 500}}").faults


def test_a_timeline_add_fault_is_checked_the_same_way():
    text = SCENARIO.format(fault="{service: ftp, slow_s: 1}") + """\
timeline:
  - at: 1
    do:
      - add_fault: {service: ftp, corrupt: 0.5}
"""
    with pytest.raises(ScenarioError) as caught:
        parse_scenario_text(text, "f.yaml")
    located = [p for p in caught.value.problems if p.field.endswith("add_fault.corrupt")]
    number, line = next((n, line) for n, line in enumerate(text.splitlines(), 1) if "add_fault" in line)
    assert located and (located[0].mark.line, located[0].mark.column) == (number, line.index("corrupt") + 1)


def test_the_table_covers_every_fault_key_but_name_service_and_direction():
    assert set(FAULT_KEY_SERVICES) == set(Fault.model_fields) - {"name", "service", "direction"}

"""fleets[].until: a phone is done (ready) at its fleet's stage and does nothing more."""

import random

import pytest
from twisted.internet.task import Clock

from labsim.phones import yealink
from labsim.phones.phone import Phone
from labsim.services.dhcp import DhcpServer, DhcpServerConfig
from labsim.transport.driver import PhoneDriver
from labsim.transport.memory import InMemoryNetwork
from tests.unit.test_phone_boot_cycle import COMMON, MAC, MAC_FILE, run_until_settled


def lab(until: str, options=None):
    clock = Clock()
    server = DhcpServer(DhcpServerConfig(server_id="127.0.0.1", options=options if options is not None else {
        66: b"http://127.0.0.1:8080/"}))
    network = InMemoryNetwork(clock, dhcp_server=server,
                              files={"y000000000066.cfg": COMMON, "00156513ae0b.cfg": MAC_FILE})
    phone = Phone(MAC, "T46S", yealink, rng=random.Random(1), boot_time_s=1.0, until=until)
    PhoneDriver(phone, clock, network).power_on()
    run_until_settled(clock, phone)
    return clock, network, phone


def test_until_dhcp_is_ready_with_a_lease_and_asks_for_nothing_else():
    # No option 66 at all: a DHCP load test needs no provisioning server.
    clock, network, phone = lab("dhcp", options={})
    assert phone.state == "ready" and phone.lease is not None
    assert network.fetches == []
    assert [stage.stage for stage in phone.stages] == ["dhcp"]
    assert phone.ready_at == pytest.approx(phone.stages[0].ended)
    assert "until: dhcp" in phone.events[-1][2]
    clock.advance(600)  # and stays done
    assert phone.state == "ready" and network.fetches == []


def test_until_config_stops_after_the_first_pass_without_its_reboot():
    clock, network, phone = lab("config")
    assert phone.state == "ready" and phone.reboots == 0
    assert phone.flash.settings["account.1.user_name"] == "1001"  # applied
    assert [f.url.rsplit("/", 1)[1] for f in network.fetches] == [
        "00156513ae0b.boot", "y000000000000.boot", "y000000000066.cfg", "00156513ae0b.cfg"]  # one pass
    assert "until: config" in phone.events[-1][2]


def test_until_ready_is_the_whole_cycle():
    _, network, phone = lab("ready")
    assert phone.state == "ready" and phone.reboots == 1 and len(network.fetches) == 8


def test_an_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="until must be one of dhcp, config, ready"):
        Phone(MAC, "T46S", yealink, rng=random.Random(1), until="tftp")

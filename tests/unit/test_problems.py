"""The report's grouped problems: reason, server, where the phone got it, the error."""

import random

from twisted.internet.task import Clock

from labsim.fleet.fleet import FleetMember
from labsim.observe.problems import group_problems, phone_cause, plain_error, problem_line
from labsim.phones import yealink
from labsim.phones.events import PowerCycle
from labsim.phones.phone import Phone
from labsim.services.dhcp import DhcpServer, DhcpServerConfig
from labsim.transport.driver import PhoneDriver
from labsim.transport.memory import InMemoryNetwork
from labsim.wire import dhcp

COMMON = b"#!version:1.0.0.1\naccount.1.sip_server.1.address = 127.0.0.1\n"


def boot(files, count=3, options=None):
    clock = Clock()
    server = DhcpServer(DhcpServerConfig(server_id="127.0.0.1", options=options or {66: b"http://127.0.0.1:8080/"}))
    network = InMemoryNetwork(clock, dhcp_server=server, files=files)
    members = []
    for index in range(count):
        phone = Phone(f"00:15:65:00:00:{index + 1:02x}", "T46S", yealink, rng=random.Random(index))
        PhoneDriver(phone, clock, network).power_on()
        members.append(FleetMember("desk", "yealink", phone, 0.0))
    while not all(m.phone.settled for m in members) and clock.seconds() < 600:
        clock.advance(0.05)
    return members


def test_failed_phones_are_grouped_with_server_source_and_error():
    members = boot(files={})
    [problem] = group_problems(members)
    assert problem["count"] == 3 and problem["state"] == "failed"
    assert problem["reason"] == "no configuration file could be downloaded"
    assert (problem["server"], problem["server_from"]) == ("http://127.0.0.1:8080/", "DHCP option 66")
    assert problem["error"] == "no such file"  # the in-memory network's 404
    assert problem_line(problem) == ("3 failed: no configuration file could be downloaded — http://127.0.0.1:8080/ "
                                     "(from DHCP option 66): no such file")


def test_a_ready_phone_has_no_cause_and_a_later_success_clears_the_error():
    # The boot files and the MAC file are missing (404) but the Common CFG is served: ready.
    members = boot(files={"y000000000066.cfg": COMMON}, count=1)
    assert members[0].phone.state == "ready"
    assert phone_cause(members[0].phone) is None
    assert group_problems(members) == []


def test_stuck_phones_say_where_they_stopped():
    phone = Phone("00:15:65:00:00:09", "T46S", yealink, rng=random.Random(1))
    members = [FleetMember("desk", "yealink", phone, 0.0)]
    assert problem_line(group_problems(members)[0]) == "1 stuck: not powered on yet"
    phone.state = "dhcp"
    assert problem_line(group_problems(members)[0]) == "1 stuck: no DHCP lease yet"


class NaksOnlyTheRenewalOf:
    """A DHCP server gone quiet, except to one phone's REQUESTs, which a server for
    another subnet answers (a NAK, its address not being in that subnet)."""

    def __init__(self, mac: str):
        self.chaddr = bytes.fromhex(mac.replace(":", ""))
        self.other = DhcpServer(DhcpServerConfig(server_id="127.0.0.1", subnet="10.9.0.0/16", pool_start="10.9.0.10",
                                                 pool_end="10.9.0.20", options={66: b"http://127.0.0.1:8080/"}))

    def handle(self, message, now):
        if message.chaddr != self.chaddr or message.message_type != dhcp.REQUEST:
            return []
        return self.other.handle(message, now)


def test_phones_that_lost_their_lease_say_so_without_their_last_provisioning_server():
    """100 s leases, then the server goes quiet: two phones' leases expire and they are
    stuck looking for one. Their cause is the lease they lost, one group for both (not
    one per address), and not the provisioning server of their last pass. The third
    phone's renewal is NAKed: another group. A power cycle starts over as a boot."""
    clock = Clock()
    server = DhcpServer(DhcpServerConfig(server_id="127.0.0.1", lease_time_s=100, subnet="10.1.0.0/16",
                                         pool_start="10.1.0.10", pool_end="10.1.0.250",
                                         options={66: b"http://127.0.0.1:8080/"}))
    network = InMemoryNetwork(clock, dhcp_server=server, files={"y000000000066.cfg": COMMON})
    macs = [f"00:15:65:00:00:{n:02x}" for n in range(1, 4)]
    members = [FleetMember("desk", "yealink", Phone(mac, "T46S", yealink, rng=random.Random(mac)), 0.0) for mac in macs]
    drivers = [PhoneDriver(m.phone, clock, network) for m in members]
    for driver in drivers:
        driver.power_on()
    clock.pump([0.05] * 400)  # 20 s
    assert [m.phone.state for m in members] == ["ready"] * 3 and all(m.phone.server_source for m in members)
    network.dhcp_server = NaksOnlyTheRenewalOf(macs[2])
    clock.pump([1.0] * 130)  # past the leases' expiry
    assert [m.phone.state for m in members] == ["dhcp"] * 3
    assert [problem_line(problem) for problem in group_problems(members)] == [
        "2 stuck: lease expired, no DHCP lease since",
        "1 stuck: lease refused (NAK) while renewing, no DHCP lease since"]
    assert phone_cause(members[0].phone) == {"reason": "lease expired, no DHCP lease since", "server": None,
                                             "server_from": None, "error": None}
    drivers[0].deliver(PowerCycle())
    clock.pump([1.0] * 5)
    assert members[0].phone.state == "dhcp" and phone_cause(members[0].phone)["reason"] == "no DHCP lease yet"


def test_plain_errors():
    assert plain_error("error", "Connection was refused by other side: 111: Connection refused.") == "connection refused"
    assert plain_error("not_found", "HTTP 404") == "HTTP 404"
    assert plain_error("timeout", "") == "no answer"

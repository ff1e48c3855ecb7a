"""The report's grouped problems: reason, server, where the phone got it, the error."""

import random

from twisted.internet.task import Clock

from labsim.fleet.fleet import FleetMember
from labsim.observe.problems import group_problems, phone_cause, plain_error, problem_line
from labsim.phones import yealink
from labsim.phones.phone import Phone
from labsim.services.dhcp import DhcpServer, DhcpServerConfig
from labsim.transport.driver import PhoneDriver
from labsim.transport.memory import InMemoryNetwork

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


def test_plain_errors():
    assert plain_error("error", "Connection was refused by other side: 111: Connection refused.") == "connection refused"
    assert plain_error("not_found", "HTTP 404") == "HTTP 404"
    assert plain_error("timeout", "") == "no answer"

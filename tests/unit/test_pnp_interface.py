"""The PnP responder's group socket, without root: the scenario keys that ask for it, the
membership request it makes (checked in the kernel's own list of joined groups), the
per-socket Via/Contact address, and the live observer hook. The real group on a real
link is tests/interop/test_pnp_multicast.py (root)."""

from __future__ import annotations

import socket
import struct
import textwrap

import pytest
from twisted.internet import defer, reactor, threads
from twisted.trial import unittest as trial

from labsim.observe.live_log import format_pnp
from labsim.scenario.loader import ScenarioError, parse_scenario_text
from labsim.net.udp import join_group, membership_request
from labsim.services.pnp import PNP_GROUP, PnpResponder, PnpResponderConfig
from labsim.services.pnp_udp import start_pnp_server
from labsim.wire import sip_pnp

SCENARIO = textwrap.dedent("""\
    name: t
    services:
      dhcp: {}
      pnp:
        url: "http://10.99.1.1/"
    fleets:
      - {vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}
    """)


def problems(text: str) -> dict[str, str]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario_text(text)
    return {p.field: p.message for p in caught.value.problems}


# --- the scenario keys -------------------------------------------------------------------


def test_interface_is_optional_and_the_group_port_defaults_to_5060():
    plain = parse_scenario_text(SCENARIO).services.pnp
    assert plain.interface is None and plain.port == 5070 and plain.interface_port == 5060
    text = SCENARIO.replace("    url:", "    interface: veth-lab0\n    interface_port: 15060\n    url:")
    pnp = parse_scenario_text(text).services.pnp
    assert (pnp.interface, pnp.interface_port, pnp.port) == ("veth-lab0", 15060, 5070)


@pytest.mark.parametrize("name", ["a/b", "has space", "x" * 16, '""'])
def test_a_bad_interface_name_is_an_error_that_names_the_field(name):
    text = SCENARIO.replace("    url:", f"    interface: {name}\n    url:")
    found = problems(text)
    assert list(found) == ["services.pnp.interface"], found
    assert "network interface name" in found["services.pnp.interface"]


def test_the_dhcp_interface_is_checked_by_the_same_rule():
    text = SCENARIO.replace("dhcp: {}", "dhcp: {interface: a/b}")
    assert "network interface name" in problems(text)["services.dhcp.interface"]


@pytest.mark.parametrize("port", [0, 65536])
def test_the_group_port_must_be_a_real_port(port):
    text = SCENARIO.replace("    url:", f"    interface: eth1\n    interface_port: {port}\n    url:")
    assert list(problems(text)) == ["services.pnp.interface_port"]


# --- the membership request ----------------------------------------------------------------


def test_the_membership_request_is_an_ip_mreqn_naming_the_group_and_the_interface_index():
    request = membership_request("224.0.1.75", 7)
    assert len(request) == 12  # struct ip_mreqn: the kernel reads its index only at this size
    group, address, index = struct.unpack("=4s4si", request)
    assert socket.inet_ntoa(group) == "224.0.1.75"
    assert address == bytes(4)  # no address: the index alone picks the interface
    assert index == 7


@pytest.mark.parametrize("not_a_group", ["10.99.1.1", "239.256.0.1", "255.255.255.255"])
def test_only_a_multicast_group_can_be_joined(not_a_group):
    with pytest.raises(ValueError):
        membership_request(not_a_group, 1)


def _groups_joined_on(interface: str) -> set[str]:
    """The IPv4 groups the kernel lists as joined on ``interface`` (/proc/net/igmp)."""
    groups, current = set(), None
    with open("/proc/net/igmp") as igmp:
        for line in igmp.read().splitlines()[1:]:
            if not line.startswith("\t"):  # "1\tlo        :     1      V3"
                current = line.split("\t")[1].split(":")[0].strip()
            elif current == interface:  # "\t\t\t\t4B0100E0     1 0:00000000\t\t0": host-order hex
                groups.add(socket.inet_ntoa(struct.pack("=I", int(line.split()[0], 16))))
    return groups


def test_joining_puts_the_group_in_the_kernels_list_for_that_interface_only_while_open():
    # IP_ADD_MEMBERSHIP needs no privilege; lo stands in for a lab's veth.
    assert PNP_GROUP not in _groups_joined_on("lo")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        join_group(sock, PNP_GROUP, "lo")
        assert PNP_GROUP in _groups_joined_on("lo")
        # and only its own groups reach it, not those other sockets joined (IP_MULTICAST_ALL 0)
        assert sock.getsockopt(socket.IPPROTO_IP, getattr(socket, "IP_MULTICAST_ALL", 49)) == 0
    assert PNP_GROUP not in _groups_joined_on("lo")


def test_an_unknown_interface_is_a_value_error_naming_it():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(ValueError, match="nosuch0"):
        join_group(sock, PNP_GROUP, "nosuch0")


def test_a_server_with_an_unknown_interface_fails_before_binding_anything():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ValueError, match="nosuch0"):
        start_pnp_server(reactor, PnpResponderConfig(url="http://127.0.0.1/"), "127.0.0.1", port, interface="nosuch0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))  # still free: nothing was left bound


# --- answering from the address a phone reached -----------------------------------------------


def test_the_notify_names_the_address_the_subscribe_came_in_on():
    responder = PnpResponder(PnpResponderConfig(url="http://10.99.1.1/", local=("127.0.0.1", 5070)))
    phone = ("10.99.1.2", 5060)

    def notify_via(call_id: str, local) -> str:
        subscribe = sip_pnp.build_subscribe(mac="00:15:65:00:00:01", vendor="Yealink", model="T46S", version="1",
                                            local=phone, call_id=call_id, tag="t", branch="z9hG4bK" + call_id)
        replies = responder.handle(subscribe.encode(), phone, local)
        assert [target for _, target in replies] == [phone, phone]
        return sip_pnp.parse(replies[1][0]).header("via")

    assert notify_via("on-link", ("10.99.1.1", 5060)).startswith("SIP/2.0/UDP 10.99.1.1:5060;")
    assert notify_via("unicast", None).startswith("SIP/2.0/UDP 127.0.0.1:5070;")  # the config's default


class Observer(trial.TestCase):
    @defer.inlineCallbacks
    def test_an_observer_sees_each_datagram_with_its_replies_and_can_be_removed(self):
        server = start_pnp_server(reactor, PnpResponderConfig(url="http://127.0.0.1:8080/{mac}"), "127.0.0.1", 0)
        self.addCleanup(server.stop)
        assert server.interface_port is None and server.interface_address is None
        seen = []
        server.set_observer(lambda protocol, data, source, replies: seen.append((protocol.device, source, replies)))
        subscribe = sip_pnp.build_subscribe(mac="00:15:65:00:00:01", vendor="Yealink", model="T46S", version="1",
                                            local=("127.0.0.1", 1), call_id="c", tag="t", branch="z9hG4bKc")

        def exchange():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind(("127.0.0.1", 0))
                sock.settimeout(5)
                sock.sendto(subscribe.encode(), ("127.0.0.1", server.port))
                answers = [sock.recvfrom(65535)[0] for _ in range(2)]
                return sock.getsockname(), answers

        phone, answers = yield threads.deferToThread(exchange)
        assert len(seen) == 1
        device, source, replies = seen[0]
        assert device is None and source == phone
        assert [data for data, _ in replies] == answers
        server.set_observer(None)
        yield threads.deferToThread(exchange)  # a retransmission: answered, not observed
        assert len(seen) == 1 and server.stats["retransmissions"] == 1


def test_the_live_log_line_says_who_asked_where_and_what_they_were_told():
    responder = PnpResponder(PnpResponderConfig(per_model={"T46S": "http://10.99.1.1/{mac}.cfg"}))
    phone = ("10.99.1.2", 5060)

    def subscribe(model: str, call_id: str) -> bytes:
        return sip_pnp.build_subscribe(mac="00:15:65:00:00:01", vendor="Yealink", model=model, version="1",
                                       local=phone, call_id=call_id, tag="t", branch="z9hG4bK" + call_id).encode()

    first = subscribe("T46S", "a")
    replies = responder.handle(first, phone)
    assert format_pnp(first, phone, replies, "veth1") == (
        "pnp SUBSCRIBE from 10.99.1.2:5060 on veth1 (Yealink T46S 001565000001): NOTIFY http://10.99.1.1/001565000001.cfg")
    ack = sip_pnp.build_response(sip_pnp.parse(replies[1][0]), 200, "OK").encode()
    assert format_pnp(ack, phone, responder.handle(ack, phone), "veth1") is None  # not a SUBSCRIBE
    again = responder.handle(first, phone)
    assert format_pnp(first, phone, again, None).endswith("from 10.99.1.2:5060 (Yealink T46S 001565000001): "
                                                          "200 OK again (NOTIFY already acknowledged)")
    other = subscribe("T48S", "b")
    assert format_pnp(other, phone, responder.handle(other, phone), None).endswith("no answer (no URL for it)")
    assert format_pnp(b"garbage", phone, [], None) is None

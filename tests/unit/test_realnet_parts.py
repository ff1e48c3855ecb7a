"""The I/O-free parts of the real-network mode: Ethernet/IPv4/UDP and ARP frames (checked
against scapy's layers), the DHCP pacer, and the fleet's broadcast DHCP (frames in,
frames out, with a fake writer)."""

from __future__ import annotations

from types import SimpleNamespace

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from twisted.internet.task import Clock

from labsim.transport.realnet import BroadcastDhcp, Pacer, release_message
from labsim.wire import dhcp
from labsim.wire.ethernet import arp_reply, parse_arp_request, parse_udp_frame, udp_frame, udp_payload_to

PHONE = bytes.fromhex("001565000001")
SERVER_MAC = bytes.fromhex("02aabbccddee")


def test_udp_frame_matches_scapy_and_parses_back():
    payload = bytes(range(256)) + b"odd"
    frame = udp_frame(PHONE, b"\xff" * 6, "0.0.0.0", "255.255.255.255", 68, 67, payload, ident=7)
    packet = Ether(frame)
    assert packet[Ether].src == "00:15:65:00:00:01" and packet[IP].dst == "255.255.255.255"
    rebuilt = Ether(bytes(packet))
    del rebuilt[IP].chksum, rebuilt[UDP].chksum  # scapy recomputes both
    assert bytes(rebuilt) == frame
    parsed = parse_udp_frame(frame)
    assert (parsed.src_mac, parsed.dst_port, parsed.payload) == (PHONE, 67, payload)
    assert parse_udp_frame(frame[:30]) is None and parse_udp_frame(b"\x00" * 60) is None
    assert udp_payload_to(frame, 67) == payload and udp_payload_to(frame, 68) is None
    assert udp_payload_to(frame[:40], 67) is None and udp_payload_to(b"\x00" * 60, 0) is None


def test_arp_request_and_reply_match_scapy():
    request = bytes(Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff") /
                    ARP(op=1, hwsrc="02:00:00:00:00:01", psrc="198.18.1.1", pdst="198.18.1.100"))
    asked = parse_arp_request(request)
    assert (asked.sender_ip, asked.target_ip) == ("198.18.1.1", "198.18.1.100")
    reply = Ether(arp_reply(asked, PHONE, "198.18.1.100"))
    assert reply[Ether].dst == "02:00:00:00:00:01" and reply[ARP].op == 2
    assert (reply[ARP].hwsrc, reply[ARP].psrc, reply[ARP].pdst) == ("00:15:65:00:00:01", "198.18.1.100", "198.18.1.1")
    assert parse_arp_request(bytes(reply)) is None  # a reply is not a request


def test_pacer_holds_the_rate_and_keeps_order():
    clock = Clock()
    pacer = Pacer(clock, 1000)  # bursts of 5 (5 ms worth)
    sent = []
    for n in range(25):
        pacer.submit(lambda n=n: sent.append((n, clock.seconds())))
    assert len(sent) == 5
    drained = pacer.drained()
    for _ in range(40):
        clock.advance(0.001)
    assert [n for n, _ in sent] == list(range(25)) and drained.called
    assert 0.019 <= sent[-1][1] <= 0.021  # 20 more at 1,000/s
    slow = Pacer(clock, 100)  # bursts of one: 10 ms apart
    times = []
    for _ in range(3):
        slow.submit(lambda: times.append(clock.seconds()))
    for _ in range(30):
        clock.advance(0.001)
    assert [round(t - times[0], 3) for t in times] == [0.0, 0.01, 0.02]


class _Driver:
    def __init__(self, mac: bytes):
        self.phone = SimpleNamespace(mac_bytes=mac, lease=None)
        self.received = []

    def dhcp_received(self, message):
        self.received.append(message)
        if message.message_type == dhcp.ACK:
            self.phone.lease = SimpleNamespace(address=message.yiaddr, server_id=message.option_ip(54))


def _reply(kind: int, mac: bytes, to: str, broadcast: bool = False) -> bytes:
    message = dhcp.DhcpMessage(op=dhcp.BOOTREPLY, xid=1, chaddr=mac, yiaddr="198.18.1.100",
                               options={53: bytes([kind]), 54: dhcp.encode_ip_list(["198.18.1.1"])})
    dst_mac = b"\xff" * 6 if broadcast else mac
    return udp_frame(SERVER_MAC, dst_mac, "198.18.1.1", to, 67, 68, dhcp.encode(message))


def test_broadcast_dhcp_sends_each_phones_own_frames_and_routes_replies_by_chaddr():
    written = []
    fleet = BroadcastDhcp(lambda frame: written.append(frame) or True)
    phone, other = _Driver(PHONE), _Driver(bytes.fromhex("001565000002"))
    fleet.phones = {PHONE: phone, other.phone.mac_bytes: other}
    fleet.send(phone, dhcp.DhcpMessage(op=1, xid=1, chaddr=PHONE, options={53: b"\x01"}))
    frame = Ether(written[-1])
    assert frame.src == "00:15:65:00:00:01" and frame.dst == "ff:ff:ff:ff:ff:ff" and frame[IP].src == "0.0.0.0"
    assert 82 not in dhcp.decode(bytes(frame[UDP].payload)).options

    fleet.frame_received(_reply(dhcp.OFFER, PHONE, "198.18.1.100"))
    fleet.frame_received(_reply(dhcp.ACK, PHONE, "255.255.255.255", broadcast=True))
    fleet.frame_received(_reply(dhcp.ACK, bytes.fromhex("00aa00000009"), "198.18.1.9"))  # another host's
    assert [m.message_type for m in phone.received] == [dhcp.OFFER, dhcp.ACK] and other.received == []
    assert fleet.stats["unknown_client"] == 1

    # A server asks who has the phone's leased address: the phone's MAC answers.
    asked = bytes(Ether(src="02:aa:bb:cc:dd:ee", dst="ff:ff:ff:ff:ff:ff") /
                  ARP(op=1, hwsrc="02:aa:bb:cc:dd:ee", psrc="198.18.1.1", pdst="198.18.1.100"))
    fleet.frame_received(asked)
    assert Ether(written[-1])[ARP].hwsrc == "00:15:65:00:00:01" and fleet.stats["arp_replies"] == 1
    fleet.frame_received(asked.replace(
        bytes([198, 18, 1, 100]), bytes([198, 18, 1, 101])))  # nobody's address: no answer
    assert fleet.stats["arp_replies"] == 1

    # The release goes unicast from the leased address to the server's MAC.
    assert fleet.release(phone.phone)
    frame = Ether(written[-1])
    assert (frame.dst, frame[IP].src, frame[IP].dst) == ("02:aa:bb:cc:dd:ee", "198.18.1.100", "198.18.1.1")
    released = dhcp.decode(bytes(frame[UDP].payload))
    assert released.message_type == dhcp.RELEASE and released.ciaddr == "198.18.1.100"
    assert released.option_ip(54) == "198.18.1.1"


def test_release_message_fields():
    message = release_message(PHONE, "198.18.1.100", "198.18.1.1")
    assert message.options[61] == b"\x01" + PHONE and message.ciaddr == "198.18.1.100"


def test_renewal_goes_unicast_to_the_leasing_server_and_rebinding_is_broadcast():
    written = []
    fleet = BroadcastDhcp(lambda frame: written.append(frame) or True)
    phone = _Driver(PHONE)
    phone.phone.dhcp = SimpleNamespace(state="RENEWING")
    fleet.phones = {PHONE: phone}
    fleet.frame_received(_reply(dhcp.ACK, PHONE, "198.18.1.100"))
    renew = dhcp.DhcpMessage(op=1, xid=2, chaddr=PHONE, ciaddr="198.18.1.100", options={53: b"\x03"})
    fleet.send(phone, renew)
    frame = Ether(written[-1])
    assert (frame.dst, frame[IP].src, frame[IP].dst) == ("02:aa:bb:cc:dd:ee", "198.18.1.100", "198.18.1.1")
    phone.phone.dhcp.state = "REBINDING"
    fleet.send(phone, renew)
    frame = Ether(written[-1])
    assert (frame.dst, frame[IP].src, frame[IP].dst) == ("ff:ff:ff:ff:ff:ff", "198.18.1.100", "255.255.255.255")


def test_checksum_is_rfc1071_for_every_length_and_the_folding_edge_cases():
    import os
    import struct

    from labsim.wire.ethernet import _checksum

    def by_words(data: bytes) -> int:
        data += b"\0" * (len(data) % 2)
        total = sum(struct.unpack(f"!{len(data) // 2}H", data))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        return ~total & 0xFFFF

    samples = [os.urandom(n) for n in range(0, 400, 7)] + [b"", b"\0\0", b"\xff\xff", b"\xff\xff" * 3, b"\x00\x01\xff\xfe"]
    assert [_checksum(data) for data in samples] == [by_words(data) for data in samples]


def test_no_frame_on_the_wire_makes_the_fleet_raise():
    from hypothesis import given, settings, strategies as st

    fleet = BroadcastDhcp(lambda frame: True)
    fleet.phones = {PHONE: _Driver(PHONE)}
    good = _reply(dhcp.OFFER, PHONE, "198.18.1.100")

    @settings(max_examples=150, deadline=None)
    @given(st.one_of(st.binary(max_size=400), st.integers(0, len(good)).map(lambda cut: good[:cut]),
                     st.binary(min_size=1, max_size=40).map(lambda junk: good[:34] + junk + good[34 + len(junk):])))
    def frames(frame):
        fleet.frame_received(frame)  # counted or ignored, never raised

    frames()


def test_the_scenarios_dhcp_faults_act_on_the_dhcp_message_of_broadcast_phones():
    import random

    from labsim.faults import FaultSet, FaultyLink, fault_from_spec
    from labsim.scenario.schema import Fault

    clock = Clock()
    faults = FaultSet(random.Random(1))
    faults.add(fault_from_spec(Fault(service="dhcp", direction="out", drop_dhcp=["OFFER"]), 0))
    faults.add(fault_from_spec(Fault(service="dhcp", direction="in", delay_s=0.5), 1))
    written = []
    fleet = BroadcastDhcp(lambda frame: written.append(frame) or True, link=FaultyLink(faults, "dhcp", clock))
    phone = _Driver(PHONE)
    fleet.phones = {PHONE: phone}
    fleet.send(phone, dhcp.DhcpMessage(op=1, xid=1, chaddr=PHONE, options={53: b"\x01"}))
    assert written == []  # held half a second, then sent whole
    clock.advance(0.5)
    assert len(written) == 1 and Ether(written[0]).src == "00:15:65:00:00:01"
    fleet.frame_received(_reply(dhcp.OFFER, PHONE, "198.18.1.100"))  # dropped on its way to the phone
    fleet.frame_received(_reply(dhcp.ACK, PHONE, "198.18.1.100"))
    assert [m.message_type for m in phone.received] == [dhcp.ACK]
    assert fleet.release(phone.phone) and len(written) == 2  # releases go out whatever the faults say


def test_on_a_real_network_a_phone_asks_the_dns_servers_its_lease_names_inside_allow():
    """RealNetwork._look_up: network.dns_server when the lease names it; else the first
    of the lease's servers inside allow, by a resolver of its own on port 53 (made once);
    none inside allow: nothing is sent and the lookup says why; none at all: no one to ask."""
    from twisted.internet import defer

    from labsim.phones.dns_client import PhoneDns
    from labsim.transport.dns_lookup import LookupFailed, lookup_counters
    from labsim.transport.guard import AllowList
    from labsim.transport.realnet import RealNetwork

    made = []

    class Resolver:
        def __init__(self, reactor, server, stats=None, **_):
            self.server, self.capture, self.asked, self.caches, self.stats = server, None, [], [], stats
            made.append(self)

        def resolve(self, name, answers=None):
            self.asked.append(name)
            self.caches.append(answers)
            return defer.succeed(f"answer from {self.server[0]}:{self.server[1]}")

    import labsim.transport.realnet as realnet

    network = RealNetwork.__new__(RealNetwork)
    network.reactor, network.allow = Clock(), AllowList(["198.18.0.0/24"])
    network.info = SimpleNamespace(address="198.18.0.2")
    network._resolvers, network._dns_capture = {}, "the capture"
    network.stats = {"dns_lookups": lookup_counters()}
    original, realnet.LabResolver = realnet.LabResolver, Resolver
    try:
        network.resolver = Resolver(None, ("198.18.0.53", 5353))
        phones_cache = PhoneDns()
        named = network._look_up("prov.lab", ("10.9.9.9", "198.18.0.53"), phones_cache)
        assert named.result == "answer from 198.18.0.53:5353" and len(made) == 1
        assert made[0].caches[0] is phones_cache  # the phone's own answers, whichever server
        first = network._look_up("prov.lab", ("10.9.9.9", "198.18.0.54", "198.18.0.55"), phones_cache)
        again = network._look_up("other.lab", ("198.18.0.54",))
        assert (first.result, again.result) == ("answer from 198.18.0.54:53",) * 2
        assert len(made) == 2 and made[1].capture == "the capture" and made[1].asked == ["prov.lab", "other.lab"]
        assert made[1].caches == [phones_cache, None]
        assert made[1].stats is network.stats["dns_lookups"]  # every resolver counts into the report's one
        outside = network._look_up("prov.lab", ("10.9.9.9",))
        none = network._look_up("prov.lab", ())
    finally:
        realnet.LabResolver = original
    failures = []
    for deferred in (outside, none):
        deferred.addErrback(lambda failure: failures.append((failure.check(LookupFailed), failure.getErrorMessage())))
    assert failures == [
        (LookupFailed, "prov.lab: the lease's DNS servers (10.9.9.9, DHCP option 6) are outside network.allow "
                       "(198.18.0.0/24): nothing sent"),
        (LookupFailed, "prov.lab: no DNS server to ask: the phone's lease has none (DHCP option 6)")]
    assert len(made) == 2  # nothing made for them

"""Faults on the DNS server (UDP and TCP) and the PnP responder, without sockets: the
protocols on fake transports, the fault link on a ``task.Clock``."""

from __future__ import annotations

import random

from dnslib import DNSRecord
from twisted.internet import task
from twisted.internet.testing import StringTransport

from labsim.faults import ActiveFault, FaultSet, FaultyLink
from labsim.services.dns_net import DnsServerProtocol, DnsTcpFactory
from labsim.services.pnp import PnpResponder, PnpResponderConfig
from labsim.services.pnp_udp import _PnpProtocol
from labsim.wire import sip_pnp
from labsim.wire.dns_records import DnsAnswerer, DnsRecordConfig, DnsTcpDecoder, Zone, frame_tcp

CLIENT = ("127.0.0.2", 40000)
RECORDS = [DnsRecordConfig("prov.lab", "A", "127.0.0.10")]


class Wire:
    """A datagram transport that records what was written, and when."""

    def __init__(self, clock):
        self.clock = clock
        self.sent: list[tuple[float, bytes, tuple]] = []

    def write(self, data, addr):
        self.sent.append((self.clock.seconds(), data, addr))


def query(qid: int = 1, name: str = "prov.lab") -> bytes:
    q = DNSRecord.question(name, "A")
    q.header.id = qid
    return bytes(q.pack())


def faults(*active: ActiveFault, seed: int = 7) -> FaultSet:
    fault_set = FaultSet(random.Random(seed))
    for fault in active:
        fault_set.add(fault)
    return fault_set


# --- DNS over UDP ---------------------------------------------------------------------------


def udp_server(fault_set: FaultSet | None):
    clock = task.Clock()
    protocol = DnsServerProtocol(DnsAnswerer(Zone(RECORDS)))
    protocol.transport = wire = Wire(clock)
    if fault_set is not None:
        protocol.link = FaultyLink(fault_set, "dns", clock)
    return clock, protocol, wire


def test_udp_without_a_link_or_with_an_idle_one_answers_at_once():
    for fault_set in (None, faults(), faults(ActiveFault("t", "tftp", down=True))):
        clock, protocol, wire = udp_server(fault_set)
        protocol.datagramReceived(query(5), CLIENT)
        assert [(t, DNSRecord.parse(d).header.id, a) for t, d, a in wire.sent] == [(0.0, 5, CLIENT)]


def test_udp_down_answers_nothing_and_counts_the_drop():
    fault_set = faults(ActiveFault("outage", "dns", down=True))
    clock, protocol, wire = udp_server(fault_set)
    for qid in range(3):
        protocol.datagramReceived(query(qid), CLIENT)
    clock.advance(10)
    assert wire.sent == [] and protocol.answerer.stats.queries == 0
    assert fault_set.stats["dropped"] == 3
    fault_set.remove("outage")  # the timeline's remove_fault: answered again at once
    protocol.datagramReceived(query(9), CLIENT)
    assert len(wire.sent) == 1


def test_udp_delay_out_holds_the_answer_not_the_query():
    clock, protocol, wire = udp_server(faults(ActiveFault("slow", "dns", direction="out", delay_s=0.5)))
    protocol.datagramReceived(query(1), CLIENT)
    assert protocol.answerer.stats.queries == 1 and wire.sent == []  # answered, not yet sent
    clock.advance(0.49)
    assert wire.sent == []
    clock.advance(0.02)
    assert [t for t, _, _ in wire.sent] == [0.51]


def test_udp_loss_both_ways_loses_about_half_the_exchanges():
    fault_set = faults(ActiveFault("lossy", "dns", loss=0.3))
    clock, protocol, wire = udp_server(fault_set)
    for qid in range(1000):
        protocol.datagramReceived(query(qid), CLIENT)
    # An exchange survives when the query and the answer both do: 0.7 * 0.7 = 49 %.
    assert 430 <= len(wire.sent) <= 550
    arrived = protocol.answerer.stats.queries
    assert 650 <= arrived <= 750  # 70 % of the queries reach the server
    assert fault_set.stats["dropped"] == (1000 - arrived) + (arrived - len(wire.sent))


def test_udp_duplicate_and_corrupt_answers():
    clock, protocol, wire = udp_server(faults(ActiveFault("dup", "dns", direction="out", duplicate=1.0)))
    protocol.datagramReceived(query(3), CLIENT)
    assert len(wire.sent) == 2 and wire.sent[0][1] == wire.sent[1][1]

    clean = udp_server(None)
    clean[1].datagramReceived(query(4), CLIENT)
    clock, protocol, wire = udp_server(faults(ActiveFault("bits", "dns", direction="out", corrupt=1.0)))
    protocol.datagramReceived(query(4), CLIENT)
    good, bad = clean[2].sent[0][1], wire.sent[0][1]
    assert len(good) == len(bad)
    assert sum(bin(a ^ b).count("1") for a, b in zip(good, bad)) == 1  # exactly one bit flipped


def test_udp_answers_delayed_past_the_stop_are_not_sent():
    clock, protocol, wire = udp_server(faults(ActiveFault("slow", "dns", delay_s=1.0)))
    protocol.datagramReceived(query(1), CLIENT)
    protocol.stopProtocol()
    clock.advance(5)  # no write on a closed port, no exception
    assert wire.sent == []


# --- DNS over TCP ---------------------------------------------------------------------------


def tcp_connection(fault_set: FaultSet | None):
    clock = task.Clock()
    factory = DnsTcpFactory(clock, DnsAnswerer(Zone(RECORDS)), idle_timeout_s=10.0)
    if fault_set is not None:
        factory.link = FaultyLink(fault_set, "dns", clock)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return clock, factory, protocol, transport


def answer_ids(stream: bytes) -> list[int]:
    return [DNSRecord.parse(m).header.id for m in DnsTcpDecoder().feed(stream)]


def test_tcp_down_closes_each_new_connection_at_once_and_reads_nothing():
    fault_set = faults(ActiveFault("outage", "dns", down=True))
    clock, factory, protocol, transport = tcp_connection(fault_set)
    assert transport.disconnecting and transport.value() == b""
    protocol.dataReceived(frame_tcp(query(1)))  # bytes already in flight: ignored
    assert transport.value() == b"" and factory.answerer.stats.queries == 0
    assert fault_set.stats["refused"] == 1
    protocol.connectionLost(None)
    assert clock.getDelayedCalls() == [] and factory.connections == set()


def test_tcp_delay_holds_each_answer_in_order():
    clock, _, protocol, transport = tcp_connection(faults(ActiveFault("slow", "dns", delay_s=0.4)))
    protocol.dataReceived(frame_tcp(query(1)))
    clock.advance(0.1)
    protocol.dataReceived(frame_tcp(query(2)))
    assert transport.value() == b""
    clock.advance(0.3)  # t=0.4: the first answer
    assert answer_ids(transport.value()) == [1]
    clock.advance(0.1)  # t=0.5: the second
    assert answer_ids(transport.value()) == [1, 2]
    protocol.connectionLost(None)


def test_tcp_close_after_garbage_waits_for_the_held_answers():
    clock, _, protocol, transport = tcp_connection(faults(ActiveFault("slow", "dns", delay_s=1.0)))
    protocol.dataReceived(frame_tcp(query(3)) + b"\x00\x01\xff")
    assert not transport.disconnecting
    clock.advance(1.0)
    assert answer_ids(transport.value()) == [3] and transport.disconnecting
    protocol.connectionLost(None)
    assert clock.getDelayedCalls() == []


def test_tcp_a_long_delay_is_not_mistaken_for_an_idle_client():
    clock, _, protocol, transport = tcp_connection(faults(ActiveFault("slow", "dns", delay_s=15.0)))
    protocol.dataReceived(frame_tcp(query(4)))
    clock.advance(12)  # past the 10 s idle timeout, answer still held
    assert not transport.disconnecting
    clock.advance(3)
    assert answer_ids(transport.value()) == [4]
    protocol.connectionLost(None)


def test_tcp_connection_lost_drops_held_answers_and_their_timer():
    clock, _, protocol, transport = tcp_connection(faults(ActiveFault("slow", "dns", delay_s=1.0)))
    protocol.dataReceived(frame_tcp(query(5)))
    protocol.connectionLost(None)
    assert clock.getDelayedCalls() == []


def test_tcp_ignores_datagram_faults():
    # loss, duplicate, reorder, corrupt are for datagrams: a stream is answered intact.
    fault_set = faults(ActiveFault("udp-only", "dns", loss=1.0, duplicate=1.0, corrupt=1.0, reorder=1.0))
    clock, _, protocol, transport = tcp_connection(fault_set)
    protocol.dataReceived(frame_tcp(query(6)))
    assert answer_ids(transport.value()) == [6]
    protocol.connectionLost(None)


# --- PnP --------------------------------------------------------------------------------------


def subscribe(call_id="c1"):
    return sip_pnp.build_subscribe(mac="00:15:65:aa:00:01", vendor="Yealink", model="T46S", version="66.85.0.5",
                                   local=CLIENT, call_id=call_id, tag="pt", branch="z9hG4bKp1", cseq=1).encode()


def pnp_protocol(fault_set: FaultSet | None):
    clock = task.Clock()
    responder = PnpResponder(PnpResponderConfig(url="http://127.0.0.1:8080/", local=("127.0.0.1", 5070)))
    responder.stats["send_errors"] = 0
    protocol = _PnpProtocol(responder, local=("127.0.0.1", 5070))
    protocol.transport = wire = Wire(clock)
    if fault_set is not None:
        protocol.link = FaultyLink(fault_set, "pnp", clock)
    return clock, protocol, wire


def kinds(wire: Wire) -> list[str]:
    return [sip_pnp.parse(data).method or str(sip_pnp.parse(data).status) for _, data, _ in wire.sent]


def test_pnp_with_an_idle_link_answers_at_once():
    clock, protocol, wire = pnp_protocol(faults())
    protocol.datagramReceived(subscribe(), CLIENT)
    assert kinds(wire) == ["200", "NOTIFY"] and all(t == 0 for t, _, _ in wire.sent)


def test_pnp_down_is_silent_until_the_fault_is_removed():
    fault_set = faults(ActiveFault("no-pnp", "pnp", down=True))
    clock, protocol, wire = pnp_protocol(fault_set)
    protocol.datagramReceived(subscribe(), CLIENT)
    clock.advance(5)
    assert wire.sent == [] and protocol.responder.stats["received"] == 0
    fault_set.remove("no-pnp")
    protocol.datagramReceived(subscribe(), CLIENT)  # the phone's retransmission
    assert kinds(wire) == ["200", "NOTIFY"]


def test_pnp_delay_holds_both_replies_and_keeps_their_order():
    clock, protocol, wire = pnp_protocol(faults(ActiveFault("slow", "pnp", direction="out", delay_s=0.3)))
    protocol.datagramReceived(subscribe(), CLIENT)
    assert wire.sent == []
    clock.advance(0.3)
    assert kinds(wire) == ["200", "NOTIFY"] and {a for _, _, a in wire.sent} == {CLIENT}


class LoseFirstNotify:
    """A link that loses the first NOTIFY going out and passes everything else."""

    def __init__(self):
        self.lost = 0

    def carry(self, direction, data, forward):
        if direction == "out" and data.startswith(b"NOTIFY") and not self.lost:
            self.lost += 1
            return
        forward(data)


def test_pnp_lost_notify_is_recovered_by_the_phones_retransmission():
    # Each reply goes through the link on its own: losing the NOTIFY keeps the 200 OK,
    # and the responder resends the NOTIFY when the phone asks again (never acknowledged).
    clock, protocol, wire = pnp_protocol(None)
    protocol.link = LoseFirstNotify()
    protocol.datagramReceived(subscribe(), CLIENT)
    assert kinds(wire) == ["200"] and protocol.link.lost == 1
    protocol.datagramReceived(subscribe(), CLIENT)
    assert kinds(wire) == ["200", "200", "NOTIFY"]
    assert protocol.responder.stats["retransmissions"] == 1


def test_pnp_replies_delayed_past_the_stop_are_not_sent():
    clock, protocol, wire = pnp_protocol(faults(ActiveFault("slow", "pnp", delay_s=1.0)))
    protocol.datagramReceived(subscribe(), CLIENT)
    protocol.stopProtocol()
    clock.advance(5)
    assert wire.sent == []

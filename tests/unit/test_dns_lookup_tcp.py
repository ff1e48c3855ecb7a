"""The phones' resolver retries over TCP when a UDP answer comes back truncated.

Unit tests drive ``LabResolver`` with a fake reactor (``MemoryReactorClock``: records
connectTCP, owns the clock) and labsim's own I/O-free ``DnsAnswerer`` as the server;
the last class runs the real DNS server on loopback."""

from __future__ import annotations

import pytest
from dnslib import DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest as trial

from labsim.services.dns import DnsServerConfig
from labsim.services.dns_net import start_dns_server
from labsim.transport.dns_lookup import LabResolver, LookupFailed, TcpExchange, is_truncated
from labsim.transport.guard import NotLoopback
from labsim.wire.dns_records import DnsAnswerer, DnsRecordConfig, DnsTcpDecoder, Zone, frame_tcp
from tests.peers import free_port_udp_and_tcp

MANY = 60  # 60 A records: ~1 KB of answer, twice what fits a plain 512-byte UDP reply
MANY_ADDRESSES = [f"127.0.1.{i}" for i in range(1, MANY + 1)]
RECORDS = [
    *[DnsRecordConfig("many.lab", "A", address) for address in MANY_ADDRESSES],
    DnsRecordConfig("one.lab", "A", "127.0.0.9"),
]
SERVER = ("127.0.0.1", 5353)


class FakeUdp:
    """The resolver's UDP transport: keeps what it was asked to send."""

    def __init__(self):
        self.sent: list[tuple[bytes, tuple]] = []

    def write(self, data, addr):
        self.sent.append((data, addr))


class Lab:
    """A resolver on a fake reactor, and the lab's answerer standing in for the server."""

    def __init__(self, *, attempts: int = 3, timeout_s: float = 1.0):
        self.reactor = MemoryReactorClock()
        self.answerer = DnsAnswerer(Zone(RECORDS))
        self.resolver = LabResolver(self.reactor, SERVER, attempts=attempts, timeout_s=timeout_s)
        self.udp = FakeUdp()
        self.resolver.transport = self.udp  # the fake reactor's adopted port connects nothing

    def answer_udp(self, index: int = -1) -> bytes:
        """The server's UDP answer to a sent query, delivered to the resolver."""
        reply = self.answerer.handle(self.udp.sent[index][0])
        self.resolver.datagramReceived(reply, SERVER)
        return reply

    def connect(self, index: int = -1):
        """Complete the ``index``-th TCP connection the resolver asked for."""
        host, port, factory, _timeout, _bind = self.reactor.tcpClients[index]
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def answer_tcp(self, transport: StringTransport) -> bytes:
        """The framed TCP answer to the one query written on ``transport``."""
        messages = DnsTcpDecoder().feed(transport.value())
        assert len(messages) == 1, messages
        return frame_tcp(self.answerer.handle(messages[0], over_tcp=True))


class Watch:
    """What a Deferred fired with (a Failure included); ``result`` is None until it has."""

    def __init__(self, deferred: defer.Deferred):
        self._box: list = []
        deferred.addBoth(self._box.append)

    @property
    def result(self):
        return self._box[0] if self._box else None


# --- without I/O -----------------------------------------------------------------------


def test_is_truncated_reads_qr_and_tc():
    answerer = DnsAnswerer(Zone(RECORDS))
    query = DNSRecord.question("many.lab", "A")
    cut = answerer.handle(bytes(query.pack()))
    whole = answerer.handle(bytes(DNSRecord.question("one.lab", "A").pack()))
    assert is_truncated(cut) and DNSRecord.parse(cut).header.tc == 1
    assert not is_truncated(whole)
    query.header.tc = 1  # a query with TC set is not a truncated answer
    assert not is_truncated(bytes(query.pack()))
    assert not is_truncated(cut[:11])  # shorter than a header


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=20))
def test_tcp_exchange_returns_the_reply_only_when_whole(cuts):
    reply = bytes(range(256)) * 4 + b"tail"
    exchange = TcpExchange(b"question")
    assert exchange.outgoing == b"\x00\x08question"
    stream = frame_tcp(reply)
    pieces, start = [], 0
    for cut in cuts:
        pieces.append(stream[start : start + cut])
        start += cut
    pieces.append(stream[start:])
    results = [exchange.received(piece) for piece in pieces if piece]
    assert results[-1] == reply
    assert all(result is None for result in results[:-1])


# --- the resolver on a fake reactor ----------------------------------------------------


def test_a_small_answer_stays_on_udp():
    lab = Lab()
    looked_up = Watch(lab.resolver.resolve_all("one.lab"))
    lab.answer_udp()
    assert looked_up.result == ["127.0.0.9"]
    assert lab.reactor.tcpClients == []
    assert lab.resolver.stats["truncated"] == lab.resolver.stats["tcp_queries"] == 0


def test_truncated_udp_answer_is_asked_again_over_tcp_and_all_records_come_back():
    lab = Lab()
    looked_up = Watch(lab.resolver.resolve_all("many.lab"))
    first = Watch(lab.resolver.resolve("many.lab"))  # a second caller (not a phone) asks meanwhile: one question
    cut = lab.answer_udp()
    assert 0 < len(DNSRecord.parse(cut).rr) < MANY  # the server really cut the list
    assert looked_up.result is None  # the cut list is not used
    [(host, port, _factory, _timeout, _bind)] = lab.reactor.tcpClients
    assert (host, port) == SERVER
    protocol, transport = lab.connect()
    sent = DNSRecord.parse(DnsTcpDecoder().feed(transport.value())[0])
    assert (str(sent.q.qname), sent.header.id) == ("many.lab.", DNSRecord.parse(cut).header.id)
    for byte in lab.answer_tcp(transport):  # however TCP cuts the stream
        protocol.dataReceived(bytes([byte]))
    assert looked_up.result == MANY_ADDRESSES
    assert first.result == MANY_ADDRESSES[0]
    assert transport.disconnecting  # one question, one connection: the client closes it
    assert lab.resolver.stats == {"lookups": 2, "queries": 1, "cache_hits": 0, "failures": 0, "truncated": 1,
                                  "tcp_queries": 1, "tcp_failures": 0, "held": 0}
    # Cached: the next caller asks nobody.
    assert Watch(lab.resolver.resolve_all("MANY.lab.")).result == MANY_ADDRESSES
    assert len(lab.udp.sent) == 1 and len(lab.reactor.tcpClients) == 1


def test_late_udp_replies_after_the_switch_are_ignored():
    lab = Lab(timeout_s=1.0)
    looked_up = Watch(lab.resolver.resolve_all("many.lab"))
    lab.reactor.advance(1.0)  # no answer yet: the query is sent again
    assert len(lab.udp.sent) == 2
    lab.answer_udp(0)
    lab.answer_udp(1)  # the retransmission's TC answer arrives too
    assert len(lab.reactor.tcpClients) == 1
    lab.reactor.advance(0.5)  # the UDP timer was stopped by the switch: no third datagram
    assert len(lab.udp.sent) == 2
    protocol, transport = lab.connect()
    protocol.dataReceived(lab.answer_tcp(transport))
    assert looked_up.result == MANY_ADDRESSES


def test_tcp_timeout_retries_then_fails_naming_the_truncation():
    lab = Lab(attempts=2, timeout_s=2.0)
    looked_up = Watch(lab.resolver.resolve_all("many.lab"))
    lab.answer_udp()
    connector = lab.reactor.connectors[0]
    lab.reactor.advance(1.9)
    assert looked_up.result is None and len(lab.reactor.tcpClients) == 1
    lab.reactor.advance(0.1)  # the timeout is the injected clock's, not the wall's
    assert connector.stoppedConnecting
    assert len(lab.reactor.tcpClients) == 2  # the second attempt
    # The second one connects, but the server never answers.
    _protocol, transport = lab.connect()
    lab.reactor.advance(2.0)
    assert transport.disconnecting  # aborted
    failure = looked_up.result
    assert isinstance(failure, Failure) and failure.check(LookupFailed)
    message = failure.getErrorMessage()
    assert "many.lab" in message and "no TCP answer within 2 s" in message and "truncated" in message
    assert lab.resolver.stats["tcp_queries"] == lab.resolver.stats["tcp_failures"] == 2
    assert lab.resolver.stats["failures"] == 1
    assert len(lab.udp.sent) == 1  # TC means "use TCP": UDP is not asked again


def test_refused_then_cut_then_answered():
    lab = Lab(attempts=3)
    looked_up = Watch(lab.resolver.resolve_all("many.lab"))
    lab.answer_udp()
    factory = lab.reactor.tcpClients[0][2]
    factory.clientConnectionFailed(lab.reactor.connectors[0], Failure(ConnectionRefusedError()))
    assert len(lab.reactor.tcpClients) == 2
    protocol, transport = lab.connect(1)
    answer = lab.answer_tcp(transport)
    protocol.dataReceived(answer[:100])  # half an answer, then the server goes away
    protocol.connectionLost(Failure(ConnectionDone()))
    assert looked_up.result is None and len(lab.reactor.tcpClients) == 3
    protocol, transport = lab.connect(2)
    protocol.dataReceived(lab.answer_tcp(transport))
    assert looked_up.result == MANY_ADDRESSES
    assert lab.resolver.stats["tcp_failures"] == 2


def test_a_tcp_answer_to_another_question_fails_the_lookup():
    lab = Lab()
    looked_up = Watch(lab.resolver.resolve_all("many.lab"))
    lab.answer_udp()
    protocol, transport = lab.connect()
    other = DNSRecord.question("one.lab", "A")
    other.header.id = DNSRecord.parse(lab.udp.sent[0][0]).header.id
    protocol.dataReceived(frame_tcp(lab.answerer.handle(bytes(other.pack()), over_tcp=True)))
    failure = looked_up.result
    assert failure.check(LookupFailed) and "different question" in failure.getErrorMessage()


def test_close_during_tcp_aborts_the_connection_and_waits_for_it():
    lab = Lab()
    lab.resolver.resolve_all("many.lab")
    lab.answer_udp()
    protocol, transport = lab.connect()
    fired = []
    lab.resolver.close().addBoth(fired.append)
    assert transport.disconnecting
    assert fired == []  # the socket is not gone yet
    protocol.connectionLost(Failure(ConnectionDone()))
    assert fired == [None]
    assert lab.resolver.stats["tcp_failures"] == 0  # giving up is not a server failure


def test_a_server_outside_loopback_is_refused_before_any_socket():
    fake = MemoryReactorClock()
    with pytest.raises(NotLoopback):
        LabResolver(fake, ("192.0.2.53", 53))
    assert fake.adoptedPorts == [] and fake.tcpClients == []


# --- against labsim's DNS server on loopback -------------------------------------------


class AgainstTheLabServer(trial.TestCase):
    timeout = 10

    @defer.inlineCallbacks
    def test_sixty_a_records_come_back_whole_over_tcp(self):
        port = free_port_udp_and_tcp()
        handle = start_dns_server(reactor, DnsServerConfig(RECORDS), port=port)
        self.addCleanup(handle.stop)
        resolver = LabResolver(reactor, ("127.0.0.1", port), timeout_s=2.0)
        self.addCleanup(resolver.close)  # runs first: the client side goes before the server

        addresses = yield resolver.resolve_all("many.lab")
        self.assertEqual(addresses, MANY_ADDRESSES)
        self.assertEqual((handle.stats.truncated, handle.stats.tcp_connections, handle.stats.tcp_queries), (1, 1, 1))
        self.assertEqual((resolver.stats["truncated"], resolver.stats["tcp_queries"]), (1, 1))

        # A name whose answer fits stays on UDP.
        self.assertEqual((yield resolver.resolve("one.lab")), "127.0.0.9")
        self.assertEqual(handle.stats.tcp_queries, 1)
        self.assertEqual(handle.stats.queries, 3)

    @defer.inlineCallbacks
    def test_a_server_without_tcp_fails_the_lookup_quickly(self):
        # Only UDP on this port: the TC answer comes from the real answerer, the TCP
        # connection is refused; the lookup fails with the reason instead of hanging.
        from labsim.services.dns_net import DnsServerProtocol
        from labsim.net.udp import bind_udp

        port = free_port_udp_and_tcp()
        udp_only = bind_udp(reactor, DnsServerProtocol(DnsAnswerer(Zone(RECORDS))), "127.0.0.1", port)
        self.addCleanup(udp_only.stopListening)
        resolver = LabResolver(reactor, ("127.0.0.1", port), attempts=2, timeout_s=2.0)
        self.addCleanup(resolver.close)
        with self.assertRaises(LookupFailed) as caught:
            yield resolver.resolve_all("many.lab")
        self.assertIn("TCP connection failed", str(caught.exception))
        self.assertEqual(resolver.stats["tcp_failures"], 2)

"""DNS over TCP: the stream framing and session without I/O, the Twisted protocol on a
StringTransport with a fake clock, and the real server on a loopback TCP port."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from dnslib import QTYPE, RCODE, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor, task, threads
from twisted.internet.testing import StringTransport
from twisted.trial import unittest as trial

from labsim.services.dns import DnsServerConfig
from labsim.services.dns_net import DnsTcpFactory, start_dns_server
from labsim.wire.dns_records import (
    DnsAnswerer,
    DnsRecordConfig,
    DnsTcpDecoder,
    DnsTcpSession,
    Zone,
    frame_tcp,
)

RECORDS = [
    DnsRecordConfig("prov.lab", "A", "127.0.0.10"),
    DnsRecordConfig("_http._tcp.lab", "SRV", "10 5 8080 prov.lab"),
    # ~21 KB of TXT: far beyond any UDP limit, well inside TCP's
    *[DnsRecordConfig("big.lab", "TXT", f"{i:03d}" + "x" * 200) for i in range(100)],
]


def query(name: str, qtype: str = "A", qid: int = 1) -> bytes:
    q = DNSRecord.question(name, qtype)
    q.header.id = qid
    return bytes(q.pack())


def unframe(stream: bytes) -> list[DNSRecord]:
    """Parse a whole byte stream of framed replies; fails on any leftover."""
    decoder = DnsTcpDecoder()
    messages = decoder.feed(stream)
    assert decoder.pending == 0
    return [DNSRecord.parse(m) for m in messages]


# --- framing ---------------------------------------------------------------------------


def test_frame_tcp_prefixes_the_length():
    assert frame_tcp(b"abc") == b"\x00\x03abc"
    assert frame_tcp(b"x" * 65535)[:2] == b"\xff\xff"
    with pytest.raises(ValueError):
        frame_tcp(b"x" * 65536)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=600), max_size=6), st.lists(st.integers(1, 700), max_size=20))
def test_decoder_reassembles_any_segmentation(messages, cuts):
    stream = b"".join(frame_tcp(m) for m in messages)
    decoder, got, position = DnsTcpDecoder(), [], 0
    for size in cuts + [len(stream)]:  # whatever sizes TCP hands us, the last takes the rest
        got += decoder.feed(stream[position : position + size])
        position += size
    assert got == messages and decoder.pending == 0


def test_decoder_holds_an_incomplete_message():
    decoder = DnsTcpDecoder()
    assert decoder.feed(b"\x00") == [] and decoder.pending == 1  # half a length prefix
    assert decoder.feed(b"\x05ab") == [] and decoder.pending == 4
    assert decoder.feed(b"cde\x00") == [b"abcde"] and decoder.pending == 1


# --- the session without I/O ---------------------------------------------------------------


@pytest.fixture
def answerer():
    return DnsAnswerer(Zone(RECORDS))


def test_pipelined_queries_answered_in_order(answerer):
    session = DnsTcpSession(answerer)
    stream = b"".join(frame_tcp(query(n, t, qid)) for qid, (n, t) in enumerate(
        [("prov.lab", "A"), ("_http._tcp.lab", "SRV"), ("nothere.lab", "A"), ("prov.lab", "A")], 100))
    # split mid-prefix and mid-message: the replies still come whole and in order
    out1, close1 = session.received(stream[:1])
    out2, close2 = session.received(stream[1:40])
    out3, close3 = session.received(stream[40:])
    assert out1 == b"" and not (close1 or close2 or close3)
    replies = unframe(out1 + out2 + out3)
    assert [r.header.id for r in replies] == [100, 101, 102, 103]
    assert [r.header.rcode for r in replies] == [RCODE.NOERROR, RCODE.NOERROR, RCODE.NXDOMAIN, RCODE.NOERROR]
    assert str(replies[1].rr[0].rdata) == "10 5 8080 prov.lab."
    assert answerer.stats.tcp_connections == 1 and answerer.stats.tcp_queries == 4


def test_large_answer_whole_over_tcp_cut_over_udp(answerer):
    out, _ = DnsTcpSession(answerer).received(frame_tcp(query("big.lab", "TXT")))
    [reply] = unframe(out)
    assert reply.header.tc == 0 and len(reply.rr) == 100 and len(out) > 20_000
    over_udp = DNSRecord.parse(answerer.handle(query("big.lab", "TXT")))
    assert over_udp.header.tc == 1 and len(over_udp.rr) < 100
    assert answerer.stats.truncated == 1


def test_answer_beyond_65535_is_cut_even_over_tcp():
    huge = DnsAnswerer(Zone([DnsRecordConfig("huge.lab", "TXT", f"{i:03d}" + "y" * 250) for i in range(400)]))
    raw = huge.handle(query("huge.lab", "TXT"), over_tcp=True)
    reply = DNSRecord.parse(raw)
    assert reply.header.tc == 1 and len(raw) <= 65535 and 200 < len(reply.rr) < 400


def test_formerr_keeps_the_connection_garbage_closes_it(answerer):
    session = DnsTcpSession(answerer)
    good = query("prov.lab", qid=7)
    # header fine, question cut short: FORMERR, and the next query is still served
    out, close = session.received(frame_tcp(good[:-3]) + frame_tcp(query("prov.lab", qid=8)))
    assert not close
    assert [(r.header.id, r.header.rcode) for r in unframe(out)] == [(7, RCODE.FORMERR), (8, RCODE.NOERROR)]
    # a message too short to answer: what came before it is answered, then close; nothing after
    out, close = session.received(frame_tcp(query("prov.lab", qid=9)) + frame_tcp(b"\x01\x02\x03")
                                  + frame_tcp(query("prov.lab", qid=10)))
    assert close and [r.header.id for r in unframe(out)] == [9]
    assert session.received(frame_tcp(query("prov.lab", qid=11))) == (b"", True)


def test_zero_length_message_closes(answerer):
    assert DnsTcpSession(answerer).received(b"\x00\x00") == (b"", True)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 64))
def test_fuzz_session_never_raises(data, chunk):
    answerer = DnsAnswerer(Zone(RECORDS))
    session = DnsTcpSession(answerer)
    out = b""
    for i in range(0, len(data), chunk):
        more, close = session.received(data[i : i + chunk])
        out += more
        if close:
            break
    for reply in unframe(out):
        assert reply.header.qr == 1


# --- the Twisted protocol on a fake transport and clock -------------------------------------


def connect(idle_timeout_s=10.0):
    clock = task.Clock()
    answerer = DnsAnswerer(Zone(RECORDS))
    factory = DnsTcpFactory(clock, answerer, idle_timeout_s)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return clock, answerer, factory, protocol, transport


def test_protocol_answers_pipelined_queries_in_one_write():
    clock, answerer, factory, protocol, transport = connect()
    protocol.dataReceived(frame_tcp(query("prov.lab", qid=1)) + frame_tcp(query("big.lab", "TXT", qid=2)))
    replies = unframe(transport.value())
    assert [r.header.id for r in replies] == [1, 2] and len(replies[1].rr) == 100
    assert not transport.disconnecting and factory.connections == {protocol}
    protocol.connectionLost(None)
    assert factory.connections == set() and clock.getDelayedCalls() == []


def test_connections_beyond_the_maximum_are_closed_at_once():
    clock = task.Clock()
    answerer = DnsAnswerer(Zone(RECORDS))
    factory = DnsTcpFactory(clock, answerer, 10.0, max_connections=2)
    opened = []
    for _ in range(3):
        protocol, transport = factory.buildProtocol(None), StringTransport()
        protocol.makeConnection(transport)
        opened.append((protocol, transport))
    assert [transport.disconnecting for _, transport in opened] == [False, False, True]
    assert answerer.stats.tcp_over_limit == 1
    late, late_transport = opened[2]
    late.dataReceived(frame_tcp(query("prov.lab", qid=9)))
    assert late_transport.value() == b""  # nothing answered on a refused connection
    late.connectionLost(None)
    opened[0][0].connectionLost(None)  # one closes: there is room again
    protocol, transport = factory.buildProtocol(None), StringTransport()
    protocol.makeConnection(transport)
    assert not transport.disconnecting


def test_idle_timeout_counts_from_the_last_data():
    clock, answerer, _, protocol, transport = connect(idle_timeout_s=10.0)
    clock.advance(9.9)
    assert not transport.disconnecting
    protocol.dataReceived(frame_tcp(query("prov.lab"))[:5])  # activity, even half a query, resets it
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting and answerer.stats.tcp_idle_closed == 1
    # still not gone one more period later (the client does not read what we sent): abort
    assert not transport.disconnected
    clock.advance(10.0)
    assert transport.disconnected
    protocol.connectionLost(None)
    assert clock.getDelayedCalls() == []


def test_no_idle_timeout_when_none():
    clock, _, _, protocol, transport = connect(idle_timeout_s=None)
    clock.advance(3600)
    assert not transport.disconnecting and clock.getDelayedCalls() == []
    protocol.connectionLost(None)


def test_garbage_closes_after_the_replies_before_it():
    clock, _, _, protocol, transport = connect()
    protocol.dataReceived(frame_tcp(query("prov.lab", qid=3)) + b"\x00\x01\xff")
    assert [r.header.id for r in unframe(transport.value())] == [3]
    assert transport.disconnecting
    protocol.connectionLost(None)
    assert clock.getDelayedCalls() == []


def test_reading_pauses_while_the_client_does_not_read():
    _, _, _, protocol, transport = connect()
    assert transport.producer is protocol and transport.streaming
    protocol.pauseProducing()  # what a full write buffer makes the transport call
    assert transport.producerState == "paused"
    protocol.resumeProducing()
    assert transport.producerState == "producing"
    protocol.connectionLost(None)


# --- the real server on loopback ------------------------------------------------------------


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def _recv_message(sock: socket.socket) -> DNSRecord:
    (size,) = struct.unpack("!H", _recv_exact(sock, 2))
    return DNSRecord.parse(_recv_exact(sock, size))


def _tcp_session(port: int) -> dict:
    """A blocking client: pipelined queries, a later one on the same connection, then garbage."""
    result = {}
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(b"".join(frame_tcp(query(n, t, qid)) for qid, (n, t) in
                           enumerate([("prov.lab", "A"), ("_http._tcp.lab", "SRV"), ("big.lab", "TXT")], 1)))
        result["pipelined"] = [_recv_message(s) for _ in range(3)]
        time.sleep(0.2)  # the connection stays open for more
        s.sendall(frame_tcp(query("prov.lab", qid=4)))
        result["later"] = _recv_message(s)
        s.sendall(b"\x00\x02\xff\xff")
        result["after_garbage"] = s.recv(10)  # b"": the server closed
    return result


def _udp_ask(port: int, payload: bytes) -> DNSRecord:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(payload, ("127.0.0.1", port))
        return DNSRecord.parse(s.recv(65535))


def _idle_close_seconds(port: int) -> float:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        start = time.monotonic()
        assert s.recv(10) == b""
        return time.monotonic() - start


def _open_and_wait(port: int, started) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        reactor.callFromThread(started.callback, None)
        try:
            return s.recv(10)
        except ConnectionResetError:  # aborted: what a server going down does
            return b""


class DnsTcpOverLoopback(trial.TestCase):
    timeout = 15

    @defer.inlineCallbacks
    def test_udp_and_tcp_on_one_port(self):
        handle = start_dns_server(reactor, DnsServerConfig(RECORDS), port=0)
        self.addCleanup(handle.stop)
        got = yield threads.deferToThread(_tcp_session, handle.port)
        a, srv, big = got["pipelined"]
        self.assertEqual([r.header.id for r in got["pipelined"]], [1, 2, 3])
        self.assertEqual([str(rr.rdata) for rr in a.rr], ["127.0.0.10"])
        self.assertEqual(srv.rr[0].rtype, QTYPE.SRV)
        self.assertEqual((big.header.tc, len(big.rr)), (0, 100))
        self.assertEqual(got["later"].header.id, 4)
        self.assertEqual(got["after_garbage"], b"")
        udp = yield threads.deferToThread(_udp_ask, handle.port, query("big.lab", "TXT"))
        self.assertEqual(udp.header.tc, 1)
        self.assertEqual((handle.stats.tcp_connections, handle.stats.tcp_queries, handle.stats.malformed), (1, 5, 1))

    @defer.inlineCallbacks
    def test_idle_connection_closed_by_the_server(self):
        handle = start_dns_server(reactor, DnsServerConfig(RECORDS, tcp_idle_timeout_s=0.3), port=0)
        self.addCleanup(handle.stop)
        waited = yield threads.deferToThread(_idle_close_seconds, handle.port)
        self.assertTrue(0.25 < waited < 3, waited)
        self.assertEqual(handle.stats.tcp_idle_closed, 1)

    @defer.inlineCallbacks
    def test_stop_closes_both_ports_and_open_connections(self):
        handle = start_dns_server(reactor, DnsServerConfig(RECORDS), port=0)
        started = defer.Deferred()
        client = threads.deferToThread(_open_and_wait, handle.port, started)
        yield started
        while not handle.stats.tcp_connections:  # accepted by the reactor, not just by the kernel
            yield task.deferLater(reactor, 0.01, lambda: None)
        yield handle.stop()
        self.assertEqual((yield client), b"")  # the open connection was dropped
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", handle.port), timeout=1).close()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # the UDP port is free again
            s.bind(("127.0.0.1", handle.port))

    @defer.inlineCallbacks
    def test_fixed_port_taken_for_tcp_raises_and_frees_udp(self):
        from twisted.internet.error import CannotListenError

        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
            blocker.bind(("127.0.0.1", 0))
            blocker.listen()
            port = blocker.getsockname()[1]
            with self.assertRaises(CannotListenError):
                start_dns_server(reactor, DnsServerConfig(RECORDS), port=port)
        yield task.deferLater(reactor, 0.05, lambda: None)  # the UDP port closes on the next turn
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", port))

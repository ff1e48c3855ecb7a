"""labsim's TFTP client: the session without sockets, then client <-> server over loopback.

The loopback part uses the real reactor (trial TestCase) and, where time matters, a
``task.Clock`` for the retransmission timers so no test waits for a real timeout.
"""

from __future__ import annotations

import os
import random
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tftpy.TftpPacketFactory import TftpPacketFactory
from twisted.internet import defer, reactor, task
from twisted.trial import unittest as trial

from labsim.services.tftp import ReadTransfer, TftpServerConfig
from labsim.services.tftp_udp import start_tftp_server
from labsim.transport.tftp_client import TftpError, TftpNotFound, TftpReadSession, TftpTimeout, tftp_get
from labsim.wire import tftp as wire
from tests.tftp_lossy_link import run_over_lossy_link
from tests.udp_socket import BareUdpSocket, settle

SERVER = ("127.0.0.1", 6969)
TID = ("127.0.0.1", 50123)
STRANGER = ("127.0.0.1", 50124)
CLIENT = ("127.0.0.1", 40000)


def data(block: int, payload: bytes) -> bytes:
    return struct.pack("!HH", 3, block % 65536) + payload


def acked(step) -> int:
    (packet, _), = step.send
    assert packet[:2] == b"\x00\x04", packet
    return struct.unpack("!H", packet[2:4])[0]


def error_code(packet: bytes) -> int:
    assert packet[:2] == b"\x00\x05"
    return struct.unpack("!H", packet[2:4])[0]


# --- the session, without sockets ----------------------------------------------------------


def test_rrq_carries_the_requested_options():
    step = TftpReadSession(SERVER, "cfg/x.cfg", blksize=1468, tsize=True, timeout_s=2).start()
    (packet, addr), = step.send
    parsed = TftpPacketFactory().parse(packet)
    assert addr == SERVER and step.timer == 2
    assert (parsed.filename, parsed.mode, parsed.options) == ("cfg/x.cfg", "octet", {"blksize": "1468", "tsize": "0"})
    assert TftpPacketFactory().parse(TftpReadSession(SERVER, "f").start().send[0][0]).options == {}


def test_plain_transfer_locks_on_the_tid_and_acks_each_block():
    session = TftpReadSession(SERVER, "f")
    session.start()
    step = session.datagram_received(data(1, b"a" * 512), TID)
    assert acked(step) == 1 and step.send[0][1] == TID and step.timer == 1.0 and session.tid == TID
    step = session.datagram_received(data(2, b"b" * 100), TID)
    assert acked(step) == 2 and step.done
    assert session.result == b"a" * 512 + b"b" * 100 and session.error is None


def test_exact_multiple_ends_with_an_empty_block():
    session = TftpReadSession(SERVER, "f")
    session.start()
    assert not session.datagram_received(data(1, b"a" * 512), TID).done
    step = session.datagram_received(data(2, b""), TID)
    assert step.done and session.result == b"a" * 512


def test_oack_sets_blksize_and_is_answered_with_ack_0():
    session = TftpReadSession(SERVER, "f", blksize=1024, tsize=True)
    session.start()
    step = session.datagram_received(wire.encode_oack({"blksize": 800, "tsize": 900}), TID)
    assert acked(step) == 0 and step.send[0][1] == TID
    assert session.datagram_received(wire.encode_oack({"blksize": 800, "tsize": 900}), TID).send == step.send  # lost ACK 0
    assert acked(session.datagram_received(data(1, b"x" * 800), TID)) == 1
    step = session.datagram_received(data(2, b"y" * 100), TID)
    assert step.done and session.result == b"x" * 800 + b"y" * 100 and session.tsize == 900


def test_server_ignoring_options_falls_back_to_512():
    session = TftpReadSession(SERVER, "f", blksize=8192)
    session.start()
    assert not session.datagram_received(data(1, b"a" * 512), TID).done
    assert session.datagram_received(data(2, b"a"), TID).done and len(session.result) == 513


@pytest.mark.parametrize(
    "requested, oack",
    [
        ({"blksize": 1024}, {"blksize": 2048}),  # bigger than asked
        ({"blksize": 1024}, {"blksize": 4}),
        ({"blksize": 1024}, {"blksize": "lots"}),
        ({"blksize": 1024}, {"blksize": 512, "windowsize": 8}),  # never asked for
        ({}, {"tsize": 10}),  # no options asked at all
    ],
)
def test_bad_oack_is_refused_with_error_8(requested, oack):
    session = TftpReadSession(SERVER, "f", **requested)
    session.start()
    step = session.datagram_received(wire.encode_oack(oack), TID)
    assert step.done and error_code(step.send[0][0]) == 8 and step.send[0][1] == TID
    assert isinstance(session.error, TftpError) and session.error.code is None


def test_tsize_mismatch_fails():
    session = TftpReadSession(SERVER, "f", tsize=True)
    session.start()
    session.datagram_received(wire.encode_oack({"tsize": 10}), TID)
    assert session.datagram_received(data(1, b"short"), TID).done
    assert isinstance(session.error, TftpError) and session.result is None


def test_error_packets_become_exceptions():
    session = TftpReadSession(SERVER, "f")
    session.start()
    assert session.datagram_received(wire.encode_error(1, "no such file"), TID) == wire.Step(done=True)
    assert isinstance(session.error, TftpNotFound) and session.error.code == 1 and session.error.message == "no such file"
    session = TftpReadSession(SERVER, "f")
    session.start()
    session.datagram_received(wire.encode_error(2), TID)
    assert type(session.error) is TftpError and session.error.code == 2


def test_strangers_get_error_5_and_do_not_disturb():
    session = TftpReadSession(SERVER, "f")
    session.start()
    step = session.datagram_received(data(1, b"evil"), ("127.0.0.66", 6969))  # wrong host before lock-on
    assert error_code(step.send[0][0]) == 5 and step.send[0][1] == ("127.0.0.66", 6969) and session.tid is None
    session.datagram_received(data(1, b"a" * 512), TID)
    step = session.datagram_received(data(2, b"evil"), STRANGER)
    assert error_code(step.send[0][0]) == 5 and step.send[0][1] == STRANGER and not step.done
    assert session.datagram_received(wire.encode_error(1), STRANGER).send == ()  # never ERROR an ERROR
    assert session.datagram_received(data(2, b"good"), TID).done and session.result == b"a" * 512 + b"good"


def test_duplicate_data_is_acked_again_without_resetting_the_timer():
    session = TftpReadSession(SERVER, "f")
    session.start()
    session.datagram_received(data(1, b"a" * 512), TID)
    step = session.datagram_received(data(1, b"a" * 512), TID)
    assert acked(step) == 1 and step.timer is None and not step.done
    assert session.datagram_received(data(5, b"a"), TID).send == ()  # not the next block: ignored


def test_oversized_block_is_a_protocol_error():
    session = TftpReadSession(SERVER, "f")
    session.start()
    step = session.datagram_received(data(1, b"a" * 513), TID)
    assert step.done and error_code(step.send[0][0]) == 4 and isinstance(session.error, TftpError)


def test_retransmits_rrq_then_times_out_after_the_cap():
    session = TftpReadSession(SERVER, "f", timeout_s=0.25, max_retransmits=2)
    rrq = session.start().send
    assert session.timer_expired() == wire.Step(send=rrq, timer=0.25)
    assert session.timer_expired().send == rrq
    assert session.timer_expired().done and isinstance(session.error, TftpTimeout)
    assert session.retransmits == 2


def test_retransmits_the_last_ack_to_the_tid():
    session = TftpReadSession(SERVER, "f", max_retransmits=1)
    session.start()
    first = session.datagram_received(data(1, b"a" * 512), TID).send
    assert session.timer_expired().send == first and first[0][1] == TID
    assert session.timer_expired().done and isinstance(session.error, TftpTimeout)


def test_block_numbers_roll_over():
    session = TftpReadSession(SERVER, "f", blksize=8)
    session.start()
    session.datagram_received(wire.encode_oack({"blksize": 8}), TID)
    for n in range(1, 65540):
        assert acked(session.datagram_received(data(n, b"12345678"), TID)) == n % 65536
    assert session.datagram_received(data(65540, b""), TID).done and len(session.result) == 8 * 65539


def test_blksize_argument_is_validated():
    for bad in (7, 65465):
        with pytest.raises(ValueError):
            TftpReadSession(SERVER, "f", blksize=bad)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=30), st.sampled_from([TID, STRANGER, ("10.0.0.1", 1)])), max_size=10))
def test_random_datagrams_never_raise(datagrams):
    session = TftpReadSession(SERVER, "f", blksize=16, tsize=True)
    session.start()
    for datagram, addr in datagrams:
        session.datagram_received(datagram, addr)
        session.timer_expired()
    assert session.result is None or isinstance(session.result, bytes)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 3000), st.sampled_from([None, 8, 512, 1024]), st.floats(0, 0.4), st.integers(0, 2**32))
def test_client_and_server_over_a_lossy_link_never_corrupt(size, blksize, loss, seed):
    """Both state machines wired together through a link that drops and duplicates
    datagrams: the client ends with the exact file or an exception, never anything else."""
    rng = random.Random(seed)
    content = bytes(rng.getrandbits(8) for _ in range(size))
    client = TftpReadSession(SERVER, "f", blksize=blksize, tsize=True, max_retransmits=8)

    def start_server(request):
        options = {name: request.options[name] for name in ("blksize",) if name in request.options}
        if "tsize" in request.options:
            options["tsize"] = str(size)
        return ReadTransfer(CLIENT, content, blksize=int(options.get("blksize", 512)), oack=options, max_retransmits=8)

    run_over_lossy_link(client, start_server, wire.RRQ, rng, loss)
    assert client.finished
    assert (client.result == content) if client.error is None else client.result is None
    if loss == 0:
        assert client.result == content


def test_a_first_packet_that_cannot_answer_an_rrq_is_a_stranger():
    # A late DATA block 3 or an ACK is some other transfer's packet to this port: ERROR 5,
    # and the transfer still takes the real answer from another TID.
    session = TftpReadSession(SERVER, "f")
    session.start()
    for packet in (data(3, b"late"), wire.encode_ack(1)):
        step = session.datagram_received(packet, STRANGER)
        assert not step.done and error_code(step.send[0][0]) == 5 and step.send[0][1] == STRANGER
    assert session.tid is None
    step = session.datagram_received(data(1, b"mine"), TID)
    assert step.done and session.result == b"mine"


def test_backoff_doubles_each_retransmission_up_to_the_cap_and_a_new_packet_starts_again():
    session = TftpReadSession(SERVER, "f", timeout_s=1.0, max_retransmits=5, backoff=2.0, max_timeout_s=4.0)
    assert session.start().timer == 1.0
    assert [session.timer_expired().timer for _ in range(4)] == [2.0, 4.0, 4.0, 4.0]
    step = session.datagram_received(data(1, b"a" * 512), TID)
    assert acked(step) == 1 and step.timer == 1.0
    assert session.timer_expired().timer == 2.0
    assert session.retransmits == 5


def test_a_finished_download_acks_its_last_block_again_and_refuses_the_rest():
    session = TftpReadSession(SERVER, "f")
    session.start()
    session.datagram_received(data(1, b"a" * 512), TID)
    session.datagram_received(data(2, b"end"), TID)
    assert session.after_finish(data(2, b"end"), TID) == wire.Step(send=((wire.encode_ack(2), TID),))
    assert error_code(session.after_finish(data(1, b"x"), STRANGER).send[0][0]) == 5
    assert session.after_finish(wire.encode_error(0, "bye"), STRANGER).send == ()


# --- over loopback sockets ------------------------------------------------------------------


_Sink = BareUdpSocket  # records what reaches it and never answers


class LoopbackTransfers(trial.TestCase):
    timeout = 60

    def setUp(self):
        self.root = self.mktemp()
        os.makedirs(self.root)
        self.files = {}
        for size in (0, 1, 511, 512, 513, 1468, 2936, 8192, 8193, 100_000):
            name = f"file{size}.bin"
            self.files[name] = os.urandom(size)
            with open(os.path.join(self.root, name), "wb") as f:
                f.write(self.files[name])
        self.server = start_tftp_server(reactor, TftpServerConfig(self.root, blksize_max=65464), "127.0.0.1", 0)
        self.addCleanup(self.server.stop)

    @defer.inlineCallbacks
    def test_sizes_and_block_sizes_byte_identical(self):
        for blksize in (None, 512, 1468, 8192):
            for name, content in self.files.items():
                got = yield tftp_get(reactor, "127.0.0.1", self.server.port, name, blksize=blksize, tsize=True)
                self.assertEqual(got, content, f"{name} blksize={blksize}")
        yield settle()
        self.assertEqual(self.server.stats["transfers_ok"], 4 * len(self.files))
        self.assertEqual(self.server.stats["active"], 0)

    @defer.inlineCallbacks
    def test_blksize_8192_needs_datagrams_above_twisteds_default_8192(self):
        # A DATA of 8192 bytes is an 8196-byte datagram: with Twisted's default
        # maxPacketSize it would arrive truncated and the download would end early.
        got = yield tftp_get(reactor, "127.0.0.1", self.server.port, "file100000.bin", blksize=8192, tsize=True)
        self.assertEqual(got, self.files["file100000.bin"])
        got = yield tftp_get(reactor, "127.0.0.1", self.server.port, "file100000.bin", blksize=65464)
        self.assertEqual(got, self.files["file100000.bin"])

    @defer.inlineCallbacks
    def test_200_concurrent_transfers(self):
        names = list(self.files) * 20
        results = yield defer.gatherResults(
            [tftp_get(reactor, "127.0.0.1", self.server.port, n, blksize=1468) for n in names], consumeErrors=True
        )
        for name, got in zip(names, results):
            self.assertEqual(got, self.files[name])
        yield settle(0.1)
        self.assertEqual(self.server.stats["transfers_ok"], 200)
        self.assertEqual(self.server.stats["active"], 0)
        self.assertEqual(self.server.stats["retransmits"], 0)

    @defer.inlineCallbacks
    def test_not_found_and_traversal_over_sockets(self):
        with self.assertRaises(TftpNotFound):
            yield tftp_get(reactor, "127.0.0.1", self.server.port, "nope.cfg")
        with self.assertRaises(TftpError) as caught:
            yield tftp_get(reactor, "127.0.0.1", self.server.port, "../../etc/passwd")
        self.assertEqual(caught.exception.code, 2)
        got = yield tftp_get(reactor, "127.0.0.1", self.server.port, "/file1468.bin", blksize=8)  # RFC 2348 minimum
        self.assertEqual(got, self.files["file1468.bin"])

    @defer.inlineCallbacks
    def test_errors_come_from_a_new_tid_and_only_stray_errors_are_dropped(self):
        sink = _Sink()
        self.addCleanup(sink.close)
        sink.sock.sendto(b"\x00\x02up.cfg\x00octet\x00", ("127.0.0.1", self.server.port))
        sink.sock.sendto(b"\x00\x01", ("127.0.0.1", self.server.port))
        sink.sock.sendto(b"\x00\x01no-nul" * 50, ("127.0.0.1", self.server.port))
        sink.sock.sendto(wire.encode_error(0, "stray"), ("127.0.0.1", self.server.port))
        yield settle(0.1)
        replies = sink.drain()
        # The WRQ (uploads off) and both malformed RRQs get ERROR 4 (RFC 1350); the stray ERROR nothing.
        self.assertEqual([r[0][:4] for r in replies], [b"\x00\x05\x00\x04"] * 3)
        self.assertNotEqual(replies[0][1][1], self.server.port)
        self.assertEqual(self.server.stats["wrq"], 1)
        self.assertEqual(self.server.stats["malformed"], 2)
        self.assertEqual(self.server.stats["stray_errors"], 1)
        self.assertEqual(self.server.stats["internal_errors"], 0)

    @defer.inlineCallbacks
    def test_stop_closes_running_transfers(self):
        sink = _Sink()
        self.addCleanup(sink.close)
        sink.sock.sendto(wire.encode_rrq("file100000.bin"), ("127.0.0.1", self.server.port))
        yield settle()
        self.assertEqual(self.server.stats["active"], 1)
        (packet, tid), = sink.drain()
        yield self.server.stop()
        self.assertEqual(self.server.stats["active"], 0)
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(probe.close)
        probe.bind(("127.0.0.1", tid[1]))  # the TID's port is free again


class LoopbackTimers(trial.TestCase):
    """Retransmission over real sockets, with time driven by a task.Clock."""

    timeout = 30

    def setUp(self):
        self.clock = task.Clock()
        self.sink = _Sink()
        self.addCleanup(self.sink.close)

    @defer.inlineCallbacks
    def test_server_retransmits_data_up_to_the_cap_then_closes(self):
        root = self.mktemp()
        os.makedirs(root)
        with open(os.path.join(root, "f"), "wb") as f:
            f.write(b"r" * 700)
        server = start_tftp_server(
            reactor, TftpServerConfig(root, timeout_s=1.0, max_retransmits=3), "127.0.0.1", 0, clock=self.clock
        )
        self.addCleanup(server.stop)
        self.sink.sock.sendto(wire.encode_rrq("f"), ("127.0.0.1", server.port))
        yield settle()
        copies = self.sink.drain()
        for _ in range(5):
            self.clock.advance(1.0)
            yield settle(0.02)
            copies += self.sink.drain()
        self.assertEqual(len(copies), 1 + 3)
        self.assertEqual({c[0] for c in copies}, {wire.encode_data(1, b"r" * 512)})
        self.assertEqual(len({c[1] for c in copies}), 1)
        self.assertEqual((server.stats["timeouts"], server.stats["active"]), (1, 0))

    @defer.inlineCallbacks
    def test_client_retransmits_rrq_up_to_the_cap_then_times_out(self):
        d = tftp_get(reactor, "127.0.0.1", self.sink.port, "f", timeout_s=2.0, max_retransmits=4, clock=self.clock)
        failures = []
        d.addErrback(failures.append)
        for _ in range(6):
            yield settle(0.02)
            self.clock.advance(2.0)
        yield settle(0.02)
        self.assertEqual(len(self.sink.drain()), 1 + 4)
        self.assertEqual(len(failures), 1)
        failures[0].trap(TftpTimeout)

    @defer.inlineCallbacks
    def test_an_answer_waiting_when_a_late_timer_fires_is_read_first(self):
        # Under load a reactor turn runs its overdue timers before it reads the sockets:
        # the answer that arrived in time must win over the timeout.
        d = tftp_get(reactor, "127.0.0.1", self.sink.port, "f", timeout_s=1.0, max_retransmits=0, clock=self.clock)
        yield settle()
        (_, client_addr), = self.sink.drain()
        self.sink.sock.sendto(data(1, b"in time"), client_addr)
        self.clock.advance(5.0)  # before the reactor had a turn to read it
        got = yield d
        self.assertEqual(got, b"in time")

    @defer.inlineCallbacks
    def test_a_lingering_port_stays_held_while_the_server_keeps_sending(self):
        d = tftp_get(reactor, "127.0.0.1", self.sink.port, "f", linger_s=1.0, clock=self.clock)
        yield settle()
        (_, client_addr), = self.sink.drain()
        self.sink.sock.sendto(data(1, b"done"), client_addr)
        self.assertEqual((yield d), b"done")
        self.assertEqual(self.sink.drain(), [(wire.encode_ack(1), client_addr)])
        for _ in range(3):  # the server lost our ACK and resends, late: we ACK again
            self.clock.advance(0.9)
            self.sink.sock.sendto(data(1, b"done"), client_addr)
            yield settle()
            self.assertEqual(self.sink.drain(), [(wire.encode_ack(1), client_addr)])
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(probe.close)
        self.assertRaises(OSError, probe.bind, client_addr)  # still held
        self.clock.advance(1.0)  # quiet for linger_s: let go
        yield settle()
        probe.bind(client_addr)

    @defer.inlineCallbacks
    def test_cancel_closes_the_socket(self):
        d = tftp_get(reactor, "127.0.0.1", self.sink.port, "f", clock=self.clock)
        yield settle()
        (_, client_addr), = self.sink.drain()
        d.cancel()
        self.assertFailure(d, defer.CancelledError)
        yield d
        yield settle()
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(probe.close)
        probe.bind(client_addr)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    @defer.inlineCallbacks
    def test_stranger_to_a_transfer_socket_gets_error_5(self):
        root = self.mktemp()
        os.makedirs(root)
        with open(os.path.join(root, "f"), "wb") as f:
            f.write(b"s" * 700)
        server = start_tftp_server(reactor, TftpServerConfig(root), "127.0.0.1", 0, clock=self.clock)
        self.addCleanup(server.stop)
        stranger = _Sink()
        self.addCleanup(stranger.close)
        self.sink.sock.sendto(wire.encode_rrq("f"), ("127.0.0.1", server.port))
        yield settle()
        (packet, tid), = self.sink.drain()
        self.assertEqual(packet, wire.encode_data(1, b"s" * 512))
        stranger.sock.sendto(wire.encode_ack(1), tid)
        yield settle()
        (reply, source), = stranger.drain()
        self.assertEqual((wire.decode_error(reply)[0], source), (5, tid))
        self.sink.sock.sendto(wire.encode_ack(1), tid)
        yield settle()
        self.assertEqual(self.sink.drain(), [(wire.encode_data(2, b"s" * 188), tid)])
        self.assertEqual(server.stats["unknown_tid"], 1)


class LoopbackIPv6(trial.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_server_and_client_on_ipv6_loopback(self):
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
                probe.bind(("::1", 0))
        except OSError:
            raise trial.SkipTest("no IPv6 loopback here")
        root = self.mktemp()
        os.makedirs(root)
        content = os.urandom(20000)
        with open(os.path.join(root, "v6.bin"), "wb") as f:
            f.write(content)
        server = start_tftp_server(reactor, TftpServerConfig(root, blksize_max=65464), "::1", 0)
        self.addCleanup(server.stop)
        got = yield tftp_get(reactor, "::1", server.port, "v6.bin", blksize=8192, tsize=True)
        self.assertEqual(got, content)

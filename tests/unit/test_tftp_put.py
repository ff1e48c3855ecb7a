"""TFTP uploads (WRQ): ``TftpWriteSession`` without sockets, then ``tftp_put`` over
loopback against labsim's own TFTP server with uploads on.

Where time matters over sockets, a ``task.Clock`` drives the retransmission timers so no
test waits for a real timeout.
"""

from __future__ import annotations

import os
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor, task
from twisted.trial import unittest as trial

from labsim.services.tftp import TftpServerConfig, WriteTransfer
from labsim.services.tftp_udp import start_tftp_server
from labsim.transport.tftp_client import TftpError, TftpTimeout, TftpWriteSession, tftp_put
from labsim.wire import tftp as wire
from tests.tftp_lossy_link import run_over_lossy_link
from tests.udp_socket import BareUdpSocket, settle

SERVER = ("127.0.0.1", 6969)
TID = ("127.0.0.1", 50123)
OTHER_TID = ("127.0.0.1", 50124)
STRANGER = ("127.0.0.1", 50124)
CLIENT = ("127.0.0.1", 40000)


def ack(block: int) -> bytes:
    return wire.encode_ack(block)


def data_sent(step) -> tuple[int, bytes]:
    """(block, payload) of the one DATA packet a step sends, to the server's TID."""
    (packet, addr), = step.send
    assert addr == TID
    return wire.decode_data(packet)


def error_code(packet: bytes) -> int:
    assert packet[:2] == b"\x00\x05"
    return struct.unpack("!H", packet[2:4])[0]


def started(data: bytes, **options) -> TftpWriteSession:
    session = TftpWriteSession(SERVER, "uploads/x.log", data, **options)
    session.start()
    return session


# --- the session, without sockets ----------------------------------------------------------


def test_wrq_carries_octet_mode_and_the_requested_options():
    step = TftpWriteSession(SERVER, "uploads/a.log", b"x" * 3000, blksize=1428, tsize=True, timeout_s=2).start()
    (packet, addr), = step.send
    request = wire.decode_request(packet)
    assert addr == SERVER and step.timer == 2
    assert (request.opcode, request.filename, request.mode) == (wire.WRQ, "uploads/a.log", "octet")
    assert request.options == {"blksize": "1428", "tsize": "3000"}
    assert wire.decode_request(TftpWriteSession(SERVER, "f", b"").start().send[0][0]).options == {}


def test_ack_0_starts_the_blocks_and_the_short_block_ends_the_upload():
    body = bytes(range(256)) * 4 + b"tail"  # 1028 bytes: 512 + 512 + 4
    session = started(body)
    step = session.datagram_received(ack(0), TID)
    assert data_sent(step) == (1, body[:512]) and step.timer == 1.0 and session.tid == TID
    assert data_sent(session.datagram_received(ack(1), TID)) == (2, body[512:1024])
    assert data_sent(session.datagram_received(ack(2), TID)) == (3, b"tail")
    assert not session.finished
    step = session.datagram_received(ack(3), TID)
    assert step.done and step.send == () and session.result == len(body) and session.error is None


@pytest.mark.parametrize("size", [0, 512, 1024])
def test_a_multiple_of_blksize_ends_with_an_empty_block(size):
    session = started(b"m" * size)
    step = session.datagram_received(ack(0), TID)
    for block in range(1, size // 512 + 1):
        assert data_sent(step) == (block, b"m" * 512)
        step = session.datagram_received(ack(block), TID)
    assert data_sent(step) == (size // 512 + 1, b"")
    assert session.datagram_received(ack(size // 512 + 1), TID).done and session.result == size


def test_oack_sets_blksize_and_is_answered_with_data_1():
    session = started(b"a" * 1000 + b"b" * 100, blksize=1024, tsize=True)
    step = session.datagram_received(wire.encode_oack({"blksize": 1000, "tsize": 1100}), TID)
    assert data_sent(step) == (1, b"a" * 1000) and session.blksize == 1000
    assert data_sent(session.datagram_received(ack(1), TID)) == (2, b"b" * 100)
    assert session.datagram_received(ack(2), TID).done and session.result == 1100


def test_server_ignoring_options_means_512_byte_blocks():
    session = started(b"z" * 600, blksize=1428)
    assert data_sent(session.datagram_received(ack(0), TID)) == (1, b"z" * 512)


def test_lost_data_1_after_an_oack_is_resent_when_the_oack_comes_again():
    session = started(b"q" * 10, blksize=1428)
    first = session.datagram_received(wire.encode_oack({"blksize": 1428}), TID)
    again = session.datagram_received(wire.encode_oack({"blksize": 1428}), TID)
    assert again.send == first.send and again.timer is None  # the cap still bounds the session
    assert session.datagram_received(ack(1), TID).done


def test_lost_data_is_resent_by_the_timer_up_to_the_cap():
    session = started(b"d" * 700, max_retransmits=3, timeout_s=1.5)
    first = session.datagram_received(ack(0), TID)
    for _ in range(3):
        resent = session.timer_expired()
        assert resent.send == first.send and resent.timer == 1.5
    step = session.timer_expired()
    assert step.done and isinstance(session.error, TftpTimeout) and session.retransmits == 3


def test_lost_ack_duplicate_ack_is_never_answered():
    """Sorcerer's Apprentice (RFC 1123 4.2.3.1): a repeated ACK must not send the next
    block again; the timer resends the block in flight."""
    session = started(b"e" * 1500)
    session.datagram_received(ack(0), TID)
    second = session.datagram_received(ack(1), TID)
    assert session.datagram_received(ack(1), TID).send == ()  # the server resent ACK 1
    assert session.datagram_received(ack(0), TID).send == ()
    assert session.timer_expired().send == second.send
    assert data_sent(session.datagram_received(ack(2), TID))[0] == 3


def test_wrq_is_resent_then_the_upload_times_out():
    session = TftpWriteSession(SERVER, "f", b"x", max_retransmits=2)
    wrq = session.start()
    assert session.timer_expired().send == wrq.send
    assert session.timer_expired().send == wrq.send
    assert session.timer_expired().done and isinstance(session.error, TftpTimeout)


@pytest.mark.parametrize("code, message", [(2, "Uploads go to uploads/ only"), (3, "File too large"), (4, "Uploads are disabled")])
def test_server_error_fails_with_its_code_and_message(code, message):
    session = started(b"x" * 2000)
    session.datagram_received(ack(0), TID)
    step = session.datagram_received(wire.encode_error(code, message), TID)
    assert step.done and step.send == ()  # never answer an ERROR
    assert isinstance(session.error, TftpError) and (session.error.code, session.error.message) == (code, message)
    assert session.result is None


def test_strangers_get_error_5_and_do_not_disturb():
    session = started(b"s" * 600)
    session.datagram_received(ack(0), TID)
    step = session.datagram_received(ack(1), STRANGER)
    (packet, addr), = step.send
    assert addr == STRANGER and error_code(packet) == 5
    assert session.datagram_received(wire.encode_error(1, "x"), STRANGER).send == ()  # no ERROR for an ERROR
    assert not session.finished
    # Another host cannot even take the TID with the first reply.
    fresh = started(b"s")
    assert error_code(fresh.datagram_received(ack(0), ("127.0.0.9", 7000)).send[0][0]) == 5 and fresh.tid is None
    assert data_sent(session.datagram_received(ack(1), TID)) == (2, b"s" * 88)
    assert session.datagram_received(ack(2), TID).done


@pytest.mark.parametrize(
    "requested, oack",
    [
        ({"blksize": 1024}, {"blksize": 2048}),  # bigger than asked
        ({"blksize": 1024}, {"blksize": "lots"}),
        ({"blksize": 1024}, {"blksize": 512, "windowsize": 8}),  # never asked for
        ({}, {"tsize": 10}),  # no options asked at all
    ],
)
def test_bad_oack_is_refused_with_error_8(requested, oack):
    session = started(b"x", **requested)
    step = session.datagram_received(wire.encode_oack(oack), TID)
    assert step.done and error_code(step.send[0][0]) == 8 and step.send[0][1] == TID
    assert isinstance(session.error, TftpError) and session.error.code is None


def test_data_from_the_servers_tid_is_a_protocol_error():
    session = started(b"x")
    session.datagram_received(wire.encode_ack(0), TID)
    step = session.datagram_received(wire.encode_data(1, b"?"), TID)
    assert step.done and error_code(step.send[0][0]) == 4 and isinstance(session.error, TftpError)


@pytest.mark.parametrize("packet", [wire.encode_data(1, b"?"), wire.encode_ack(1), wire.encode_ack(7)])
def test_a_first_packet_that_cannot_answer_a_wrq_is_a_stranger(packet):
    # Only ACK 0, OACK or ERROR answer a WRQ: anything else is a late packet of another
    # transfer to this port, which gets ERROR 5 and does not become the server's TID.
    session = started(b"x")
    step = session.datagram_received(packet, OTHER_TID)
    assert not step.done and error_code(step.send[0][0]) == 5 and step.send[0][1] == OTHER_TID
    assert session.tid is None
    assert data_sent(session.datagram_received(wire.encode_ack(0), TID))[0] == 1


def test_block_numbers_roll_over():
    body = b"r" * (8 * 65537)  # blksize 8: 65,537 full blocks, then an empty one
    session = started(body, blksize=8)
    step = session.datagram_received(wire.encode_oack({"blksize": 8}), TID)
    for block in range(1, 65539):
        number, payload = data_sent(step)
        assert number == block % 65536 and len(payload) == (8 if block <= 65537 else 0)
        step = session.datagram_received(ack(block % 65536), TID)
    assert step.done and session.result == len(body)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=40), st.sampled_from([TID, STRANGER, SERVER]))))
def test_random_datagrams_never_raise(datagrams):
    session = started(b"y" * 40, blksize=16, tsize=True)
    for datagram, addr in datagrams:
        session.datagram_received(datagram, addr)
        session.timer_expired()
    assert session.result in (None, 40)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 3000), st.sampled_from([None, 8, 512, 1024]), st.floats(0, 0.4), st.integers(0, 2**32))
def test_client_and_labsims_write_transfer_over_a_lossy_link(size, blksize, loss, seed):
    """The client and labsim's I/O-free server side wired through a link that drops,
    duplicates and reorders: what the server stores is the exact body, and the client
    reports success only when it was stored."""
    rng = random.Random(seed)
    body = bytes(rng.getrandbits(8) for _ in range(size))
    client = TftpWriteSession(SERVER, "uploads/f", body, blksize=blksize, tsize=True, max_retransmits=8)
    stored = []

    def start_server(request):
        oack = {name: request.options[name] for name in ("blksize", "tsize") if name in request.options}
        return WriteTransfer(CLIENT, stored.append, blksize=int(oack.get("blksize", 512)), oack=oack,
                             max_retransmits=8)

    run_over_lossy_link(client, start_server, wire.WRQ, rng, loss)
    assert client.finished
    assert all(copy == body for copy in stored)
    if client.error is None:
        assert stored and client.result == size
    if loss == 0:
        assert client.result == size and stored == [body]


def test_blksize_argument_is_validated():
    with pytest.raises(ValueError):
        TftpWriteSession(SERVER, "f", b"", blksize=7)
    failure = []
    tftp_put(reactor, "127.0.0.1", 69, "f", b"", blksize=70000).addErrback(failure.append)
    failure[0].trap(ValueError)
    tftp_put(reactor, "tftp.example", 69, "f", b"").addErrback(failure.append)
    failure[1].trap(ValueError)


# --- over loopback sockets ------------------------------------------------------------------


class UploadsToLabsimsServer(trial.TestCase):
    timeout = 60

    def setUp(self):
        self.root = self.mktemp()
        os.makedirs(self.root)
        self.server = start_tftp_server(
            reactor, TftpServerConfig(self.root, uploads=True, upload_dir="uploads", blksize_max=65464), "127.0.0.1", 0
        )
        self.addCleanup(self.server.stop)

    def stored(self, name: str) -> bytes:
        with open(os.path.join(self.root, "uploads", name), "rb") as handle:
            return handle.read()

    @defer.inlineCallbacks
    def test_sizes_and_block_sizes_stored_byte_exact(self):
        sizes = (0, 1, 511, 512, 513, 1024, 1428, 2856, 8192, 100_000)
        for blksize in (None, 1428, 8192):
            for size in sizes:
                body = os.urandom(size)
                name = f"f{size}-{blksize}.bin"
                sent = yield tftp_put(reactor, "127.0.0.1", self.server.port, f"uploads/{name}", body,
                                      blksize=blksize, tsize=blksize is not None)
                self.assertEqual(sent, size)
                self.assertEqual(self.stored(name), body, name)
        self.assertEqual(self.server.stats["uploads"], 3 * len(sizes))
        self.assertEqual(self.server.stats["bytes_received"], 3 * sum(sizes))

    @defer.inlineCallbacks
    def test_concurrent_uploads(self):
        bodies = {f"p{index}.log": os.urandom(index * 97) for index in range(50)}
        results = yield defer.gatherResults(
            [tftp_put(reactor, "127.0.0.1", self.server.port, f"uploads/{name}", body, blksize=1428)
             for name, body in bodies.items()])
        self.assertEqual(results, [len(body) for body in bodies.values()])
        for name, body in bodies.items():
            self.assertEqual(self.stored(name), body)

    @defer.inlineCallbacks
    def test_refusals_fail_with_the_servers_code(self):
        outside = tftp_put(reactor, "127.0.0.1", self.server.port, "site.cfg", b"overwrite?")
        error = yield self.assertFailure(outside, TftpError)
        self.assertEqual(error.code, wire.ERR_ACCESS_VIOLATION)
        self.assertFalse(os.path.exists(os.path.join(self.root, "site.cfg")))
        small = start_tftp_server(reactor, TftpServerConfig(self.root, uploads=True, upload_max=50), "127.0.0.1", 0)
        self.addCleanup(small.stop)
        too_big = tftp_put(reactor, "127.0.0.1", small.port, "uploads/big", b"b" * 100, tsize=True)
        error = yield self.assertFailure(too_big, TftpError)
        self.assertEqual((error.code, error.message), (wire.ERR_DISK_FULL, "File too large"))

    @defer.inlineCallbacks
    def test_uploads_off_is_error_4(self):
        root = self.mktemp()
        os.makedirs(root)
        server = start_tftp_server(reactor, TftpServerConfig(root), "127.0.0.1", 0)
        self.addCleanup(server.stop)
        error = yield self.assertFailure(tftp_put(reactor, "127.0.0.1", server.port, "uploads/x", b"x"), TftpError)
        self.assertEqual(error.code, wire.ERR_ILLEGAL_OPERATION)


class UploadTimers(trial.TestCase):
    """Retransmission over a real socket, time driven by a task.Clock."""

    timeout = 30

    def setUp(self):
        self.clock = task.Clock()
        self.sink = BareUdpSocket()  # records what reaches it and never answers
        self.addCleanup(self.sink.close)

    @defer.inlineCallbacks
    def test_wrq_is_resent_up_to_the_cap_then_times_out_and_the_socket_closes(self):
        d = tftp_put(reactor, "127.0.0.1", self.sink.port, "uploads/x", b"x", timeout_s=2.0, max_retransmits=3,
                     clock=self.clock)
        failures = []
        d.addErrback(failures.append)
        for _ in range(5):
            yield settle(0.02)
            self.clock.advance(2.0)
        yield settle(0.02)
        copies = self.sink.drain()
        self.assertEqual(len(copies), 1 + 3)
        self.assertEqual(wire.decode_request(copies[0][0]).opcode, wire.WRQ)
        self.assertEqual(len(failures), 1)
        failures[0].trap(TftpTimeout)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    @defer.inlineCallbacks
    def test_lost_ack_over_a_socket_resends_the_block_in_flight(self):
        d = tftp_put(reactor, "127.0.0.1", self.sink.port, "uploads/x", b"k" * 600, clock=self.clock)
        yield settle()
        (wrq, client), = self.sink.drain()
        self.sink.sock.sendto(ack(0), client)
        yield settle()
        (block1, _), = self.sink.drain()
        self.assertEqual(wire.decode_data(block1), (1, b"k" * 512))
        self.clock.advance(1.0)  # our ACK 1 "was lost": the client resends DATA 1
        yield settle()
        (again, _), = self.sink.drain()
        self.assertEqual(again, block1)
        self.sink.sock.sendto(ack(1), client)
        yield settle()
        (block2, _), = self.sink.drain()
        self.assertEqual(wire.decode_data(block2), (2, b"k" * 88))
        self.sink.sock.sendto(ack(2), client)
        sent = yield d
        self.assertEqual(sent, 600)

"""labsim's TFTP server: codec, negotiation, transfers (windowed too), uploads, the file
cache, errors and root confinement without sockets; then the Twisted adapter over
loopback (windowsize, the lazy retransmission timer, uploads, bursts).

More socket tests (with labsim's client) are in tests/unit/test_tftp_client.py; real
third-party peers in tests/interop/test_tftp_interop.py.
"""

from __future__ import annotations

import errno
import os
import random
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tftpy.TftpPacketFactory import TftpPacketFactory
from tftpy.TftpPacketTypes import TftpPacketACK, TftpPacketDAT, TftpPacketERR, TftpPacketOACK, TftpPacketRRQ

from twisted.internet import defer, reactor, task
from twisted.trial import unittest as trial

from labsim.services import tftp as tftp_module
from labsim.services.tftp import (
    ReadTransfer,
    Reject,
    TftpServerConfig,
    WriteTransfer,
    encode_all_blocks,
    from_netascii,
    negotiate,
    new_stats,
    to_netascii,
)
from labsim.services.tftp_udp import DiskTftpRequestHandler as TftpRequestHandler
from labsim.services.tftp_udp import start_tftp_server
from labsim.wire import tftp as wire
from tests.udp_socket import BareUdpSocket
from tests.udp_socket import settle as settle_for

PEER = ("127.0.0.1", 40000)
STRANGER = ("127.0.0.1", 40001)
SECRET = b"TOP-SECRET-OUTSIDE-ROOT"


def rrq(filename: str | bytes, mode: bytes = b"octet", **options) -> bytes:
    """An RRQ built by hand (not by the codec under test)."""
    name = filename if isinstance(filename, bytes) else filename.encode()
    out = b"\x00\x01" + name + b"\x00" + mode + b"\x00"
    for key, value in options.items():
        out += key.encode() + b"\x00" + str(value).encode() + b"\x00"
    return out


def ack(block: int) -> bytes:
    return struct.pack("!HH", 4, block % 65536)


def error_of(packet: bytes) -> int:
    assert packet[:2] == b"\x00\x05", packet
    return struct.unpack("!H", packet[2:4])[0]


@pytest.fixture
def tree(tmp_path):
    """root/ with files, a subfolder and symlinks; outside/ with a secret next to it."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    (tmp_path / "secret").write_bytes(SECRET)
    (root / "sub").mkdir()
    (root / "sub" / "ok.cfg").write_bytes(b"inside\n")
    (root / "phone.cfg").write_bytes(b"x" * 1000)
    (root / "link_out").symlink_to(outside / "secret")
    (root / "linkdir_out").symlink_to(outside)
    (root / "link_in").symlink_to(root / "sub" / "ok.cfg")
    os.mkfifo(root / "fifo")
    return root


@pytest.fixture
def handler(tree):
    return TftpRequestHandler(TftpServerConfig(str(tree), blksize_max=1468, timeout_s=1.0, max_retransmits=3))


def download(transfer: ReadTransfer, peer=PEER) -> tuple[bytes, list[int]]:
    """ACK every packet a transfer sends until it is done; returns the data and DATA sizes."""
    step = transfer.start()
    data, sizes = [], []
    while not step.done:
        assert len(step.send) == 1 and step.timer is not None
        packet, addr = step.send[0]
        assert addr == peer
        if packet[:2] == b"\x00\x06":  # OACK
            step = transfer.datagram_received(ack(0), peer)
            continue
        block, payload = wire.decode_data(packet)
        data.append(payload)
        sizes.append(len(payload))
        step = transfer.datagram_received(ack(block), peer)
    return b"".join(data), sizes


# --- codec: the fast paths agree with tftpy ----------------------------------------------


@given(st.integers(0, 65535), st.binary(max_size=2000))
def test_data_fast_path_matches_tftpy(block, payload):
    ref = TftpPacketDAT()
    ref.blocknumber, ref.data = block, payload
    assert wire.encode_data(block, payload) == ref.encode().buffer
    parsed = TftpPacketFactory().parse(wire.encode_data(block, payload))
    assert (parsed.blocknumber, parsed.data) == wire.decode_data(ref.buffer) == (block, payload)


@given(st.integers(0, 65535))
def test_ack_fast_path_matches_tftpy(block):
    ref = TftpPacketACK()
    ref.blocknumber = block
    assert wire.encode_ack(block) == ref.encode().buffer
    assert wire.decode_ack(ref.buffer) == block


def test_error_and_oack_codec_against_tftpy():
    parsed = TftpPacketFactory().parse(wire.encode_error(1))
    assert isinstance(parsed, TftpPacketERR) and parsed.errorcode == 1
    assert wire.decode_error(wire.encode_error(2, "no way")) == (2, "no way")
    ref = TftpPacketERR()
    ref.errorcode = 8
    assert wire.decode_error(ref.encode().buffer) == (8, "Failed to negotiate options")
    assert wire.decode_error(b"\x00\x05\x00\x04no terminator") == (4, "no terminator")
    oack = wire.encode_oack({"blksize": 1024, "tsize": 7})
    assert TftpPacketFactory().parse(oack).options == {"blksize": "1024", "tsize": "7"}
    ref_oack = TftpPacketOACK()
    ref_oack.options = {"BlkSize": "8"}
    assert wire.decode_oack(ref_oack.encode().buffer) == {"blksize": "8"}


def test_request_codec_lowercases_options():
    request = wire.decode_request(rrq("a/b.cfg", b"OCTET", BLKSIZE=1024, TSize=0))
    assert (request.filename, request.mode, request.options) == ("a/b.cfg", "octet", {"blksize": "1024", "tsize": "0"})
    assert wire.decode_request(wire.encode_rrq("f", {"blksize": 8})).options == {"blksize": "8"}
    for bad in (b"", b"\x00", b"\x00\x01", b"\x00\x01name", b"\x00\x01n\x00octet\x00blksize\x00", b"\x00\x03ab"):
        with pytest.raises(wire.TftpDecodeError):
            wire.decode_request(bad)


def tftpy_request(datagram: bytes):
    """The reference: what tftpy makes of a request (names lowercased, as labsim does)."""
    try:
        packet = TftpPacketFactory().parse(datagram)
    except Exception:
        return None
    return (datagram[1], packet.filename, packet.mode, {str(k).lower(): str(v) for k, v in packet.options.items()})


def reference_request(datagram: bytes):
    """tftpy's reading, but for the one documented difference: labsim accepts a file name
    in UTF-8 (wire.decode_request), where tftpy decodes names as ASCII and refuses it."""
    expected = tftpy_request(datagram)
    name = datagram[2:].split(b"\x00", 1)[0]
    if expected is not None or name.isascii() or b"\x00" not in datagram[2:]:
        return expected
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        return None
    stand_in = tftpy_request(datagram[:2] + b"x" + datagram[2 + len(name):])  # the rest read as tftpy reads it
    return None if stand_in is None else (stand_in[0], text, *stand_in[2:])


def fast_request(datagram: bytes):
    try:
        request = wire.decode_request(datagram)
    except wire.TftpDecodeError:
        return None
    return (request.opcode, request.filename, request.mode, request.options)


PIECES = st.one_of(
    st.sampled_from([b"", b"octet", b"NetAscii", b"blksize", b"TSIZE", b"0", b"1468", b"\xff", b"a/b.cfg"]),
    st.binary(max_size=5),
)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([1, 2]), st.lists(PIECES, max_size=8), st.booleans())
def test_request_fast_path_accepts_and_refuses_what_tftpy_does(opcode, pieces, terminated):
    datagram = bytes([0, opcode]) + b"\x00".join(pieces) + (b"\x00" if terminated else b"")
    assert fast_request(datagram) == reference_request(datagram), datagram


@pytest.mark.parametrize("datagram, expected", [
    (b"\x00\x01\xc2\x80\x00\x00", (1, "\x80", "", {})),  # found by the property above: U+0080 in UTF-8
    (b"\x00\x01t\xc3\xa9l\xc3\xa9phone.cfg\x00octet\x00", (1, "t\u00e9l\u00e9phone.cfg", "octet", {})),
    (b"\x00\x01\xc2\x00octet\x00", None),  # not UTF-8: refused by both
])
def test_a_utf8_file_name_is_read_where_tftpy_refuses_it(datagram, expected):
    assert tftpy_request(datagram) is None
    assert fast_request(datagram) == reference_request(datagram) == expected


def test_request_fast_path_on_the_usual_shapes():
    for datagram in (
        rrq("phone.cfg"),
        rrq("/cfg/y000000000066.cfg", blksize=1468, tsize=0),
        rrq("x", b"netascii", BlkSize=8, timeout=3, windowsize=16),
        b"\x00\x02up.log\x00octet\x00tsize\x00123\x00",
        b"\x00\x01\x00\x00",  # empty name and mode: tftpy takes them (the handler refuses)
    ):
        assert fast_request(datagram) == tftpy_request(datagram) is not None, datagram
    assert wire.encode_request(wire.WRQ, "a.log", "netascii", {"tsize": 5}) == b"\x00\x02a.log\x00netascii\x00tsize\x005\x00"
    assert wire.encode_request(wire.RRQ, "f", options={"blksize": 8}) == wire.encode_rrq("f", {"blksize": 8})


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=10), st.text("0123456789", min_size=1, max_size=6), max_size=5))
def test_oack_fast_path_matches_tftpy(options):
    ref = TftpPacketOACK()
    ref.options = dict(options)
    assert wire.encode_oack(options) == ref.encode().buffer
    if options:  # an OACK acknowledging nothing is refused, by tftpy too
        assert wire.decode_oack(ref.buffer) == options


@given(st.integers(0, 8), st.one_of(st.none(), st.text("abc xyz!", max_size=30)))
def test_error_fast_path_matches_tftpy(code, message):
    ref = TftpPacketERR()
    ref.errorcode = code
    if message is not None:
        ref.errmsgs = {code: message.encode()}
    elif code == 0:
        ref.errmsgs = {0: b"Error"}
    assert wire.encode_error(code, message) == ref.encode().buffer


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=30))
def test_oack_decoder_refuses_what_tftpy_refuses(tail):
    datagram = b"\x00\x06" + tail
    try:
        expected = {str(k).lower(): str(v) for k, v in TftpPacketFactory().parse(datagram).options.items()}
    except Exception:
        expected = None
    try:
        got = wire.decode_oack(datagram)
    except wire.TftpDecodeError:
        got = None
    assert got == expected


# --- option negotiation ------------------------------------------------------------------


def config(**kw):
    return TftpServerConfig(root="/", **kw)


@pytest.mark.parametrize(
    "options, blksize, oack",
    [
        ({}, 512, {}),
        ({"blksize": "1024"}, 1024, {"blksize": "1024"}),
        ({"blksize": "8"}, 8, {"blksize": "8"}),
        ({"blksize": "65464"}, 1468, {"blksize": "1468"}),  # capped at blksize_max
        ({"blksize": "99999"}, 1468, {"blksize": "1468"}),
        ({"tsize": "0"}, 512, {"tsize": "4242"}),
        ({"blksize": "1428", "tsize": "0", "timeout": "3"}, 1428, {"blksize": "1428", "tsize": "4242", "timeout": "3"}),
        ({"timeout": "0"}, 512, {}),  # RFC 2349 range is 1..255: declined by leaving it out
        ({"timeout": "256"}, 512, {}),
        ({"timeout": "soon"}, 512, {}),
        ({"tsize": "big"}, 512, {}),
        ({"multicast": "", "rollover": "0"}, 512, {}),  # unknown options are ignored
        ({"windowsize": "4"}, 512, {"windowsize": "4"}),  # RFC 7440
        ({"windowsize": "65535"}, 512, {"windowsize": "64"}),  # lowered to windowsize_max
        ({"windowsize": "0"}, 512, {}),  # out of 1..65535 or not a number: declined
        ({"windowsize": "65536"}, 512, {}),
        ({"windowsize": "many"}, 512, {}),
    ],
)
def test_negotiation(options, blksize, oack):
    terms = negotiate(options, 4242, config())
    assert terms.blksize == blksize
    assert terms.oack == oack
    assert terms.timeout_s == (float(options["timeout"]) if "timeout" in oack else 1.0)


@pytest.mark.parametrize("bad", ["0", "7", "-1", "abc", "1e3"])
def test_blksize_out_of_range_is_refused_with_error_8(handler, bad):
    reply = handler.handle(rrq("phone.cfg", blksize=bad), PEER)
    assert isinstance(reply, Reject) and error_of(reply.packet) == wire.ERR_OPTION_REFUSED
    assert handler.stats["option_refused"] == 1


def test_blksize_max_validated():
    for bad in (7, 65465):
        with pytest.raises(ValueError):
            TftpServerConfig(root="/", blksize_max=bad)


def test_oack_then_ack0_then_data_at_negotiated_size(handler):
    transfer = handler.handle(rrq("phone.cfg", blksize=300, tsize=0, timeout=2), PEER)
    step = transfer.start()
    packet, addr = step.send[0]
    assert addr == PEER and step.timer == 2.0
    assert wire.decode_oack(packet) == {"blksize": "300", "tsize": "1000", "timeout": "2"}
    step = transfer.datagram_received(ack(0), PEER)
    assert wire.decode_data(step.send[0][0]) == (1, b"x" * 300)
    data, sizes = download(handler.handle(rrq("phone.cfg", blksize=300), PEER))
    assert data == b"x" * 1000 and sizes == [300, 300, 300, 100]


def test_without_options_data_1_comes_first(handler):
    step = handler.handle(rrq("phone.cfg"), PEER).start()
    assert wire.decode_data(step.send[0][0]) == (1, b"x" * 512)


# --- transfers ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 1024, 1468, 2936, 5000])
@pytest.mark.parametrize("blksize", [512, 1468])
def test_sizes_and_the_final_short_block(size, blksize):
    content = os.urandom(size)
    stats = new_stats()
    data, sizes = download(ReadTransfer(PEER, content, blksize=blksize, stats=stats))
    assert data == content
    assert len(sizes) == size // blksize + 1  # an exact multiple ends with an empty DATA
    assert sizes[-1] == size % blksize < blksize
    assert all(s == blksize for s in sizes[:-1])
    assert stats["transfers_ok"] == 1 and stats["bytes_sent"] == size


def test_block_numbers_roll_over_to_zero():
    content = os.urandom(8 * 65537)
    transfer = ReadTransfer(PEER, content, blksize=8)
    step = transfer.start()
    blocks = []
    while not step.done:
        block, _ = wire.decode_data(step.send[0][0])
        blocks.append(block)
        step = transfer.datagram_received(ack(block), PEER)
    assert len(blocks) == 65538 and blocks[65534:] == [65535, 0, 1, 2]
    assert transfer.succeeded


def test_retransmits_the_same_packet_then_gives_up_after_the_cap():
    stats = new_stats()
    transfer = ReadTransfer(PEER, b"abc", timeout_s=0.5, max_retransmits=3, stats=stats)
    first = transfer.start().send
    for _ in range(3):
        step = transfer.timer_expired()
        assert step.send == first and step.timer == 0.5 and not step.done
    step = transfer.timer_expired()
    assert step.done and step.send == ()
    assert transfer.finished and not transfer.succeeded and transfer.reason == "timeout"
    assert (stats["retransmits"], stats["timeouts"], stats["transfers_failed"]) == (3, 1, 1)
    assert transfer.timer_expired().send == () and transfer.datagram_received(ack(1), PEER).send == ()


def test_an_ack_resets_the_retry_budget():
    transfer = ReadTransfer(PEER, b"y" * 600, max_retransmits=2)
    transfer.start()
    transfer.timer_expired()
    transfer.timer_expired()
    transfer.datagram_received(ack(1), PEER)  # DATA 2 goes out; two fresh retries
    assert transfer.timer_expired().send and transfer.timer_expired().send
    assert transfer.timer_expired().done


def test_oack_is_retransmitted_too():
    transfer = ReadTransfer(PEER, b"z", oack={"tsize": "1"}, max_retransmits=1)
    oack = transfer.start().send
    assert oack[0][0][:2] == b"\x00\x06" and transfer.timer_expired().send == oack
    assert transfer.timer_expired().done


def test_duplicate_acks_are_ignored_not_answered():
    stats = new_stats()
    transfer = ReadTransfer(PEER, b"q" * 1500, stats=stats)
    transfer.start()
    assert wire.decode_data(transfer.datagram_received(ack(1), PEER).send[0][0])[0] == 2
    for _ in range(3):
        step = transfer.datagram_received(ack(1), PEER)
        assert step.send == () and step.timer is None and not step.done
    assert transfer.datagram_received(ack(7), PEER).send == ()  # from the future: ignored too
    assert stats["duplicate_acks"] == 4
    assert wire.decode_data(transfer.datagram_received(ack(2), PEER).send[0][0])[0] == 3


def test_unknown_tid_gets_error_5_and_the_transfer_goes_on():
    stats = new_stats()
    transfer = ReadTransfer(PEER, b"w" * 700, stats=stats)
    transfer.start()
    step = transfer.datagram_received(ack(1), STRANGER)
    assert len(step.send) == 1 and step.send[0][1] == STRANGER and error_of(step.send[0][0]) == 5
    assert not step.done and step.timer is None
    other_host = transfer.datagram_received(ack(1), ("127.0.0.9", PEER[1]))
    assert error_of(other_host.send[0][0]) == 5
    assert transfer.datagram_received(wire.encode_error(0, "x"), STRANGER).send == ()  # never ERROR an ERROR
    assert stats["unknown_tid"] == 3
    assert wire.decode_data(transfer.datagram_received(ack(1), PEER).send[0][0]) == (2, b"w" * 188)


def test_client_error_ends_the_transfer_silently():
    stats = new_stats()
    transfer = ReadTransfer(PEER, b"a" * 2000, stats=stats)
    transfer.start()
    step = transfer.datagram_received(wire.encode_error(8, "no thanks"), PEER)
    assert step.done and step.send == ()
    assert stats["client_errors"] == 1 and stats["transfers_failed"] == 1 and "no thanks" in transfer.reason


@pytest.mark.parametrize("packet", [wire.encode_data(1, b"up"), rrq("again"), wire.encode_oack({"a": 1}), b"\x00\x63\x00\x00"])
def test_peer_breaking_protocol_gets_error_4(packet):
    stats = new_stats()
    transfer = ReadTransfer(PEER, b"a" * 2000, stats=stats)
    transfer.start()
    step = transfer.datagram_received(packet, PEER)
    assert step.done and error_of(step.send[0][0]) == 4 and step.send[0][1] == PEER
    assert stats["illegal_op"] == 1 and stats["transfers_failed"] == 1


def test_short_datagrams_to_a_transfer_are_counted_and_dropped():
    stats = new_stats()
    transfer = ReadTransfer(PEER, b"a" * 2000, stats=stats)
    transfer.start()
    for junk in (b"", b"\x00", b"\x00\x04\x00"):
        assert transfer.datagram_received(junk, PEER) == wire.Step()
    assert stats["malformed"] == 3 and not transfer.finished


# --- the request handler: error codes ----------------------------------------------------


def test_request_error_codes(handler):
    cases = [
        (rrq("missing.cfg"), 1, "not_found"),
        (rrq("../secret"), 2, "access_violation"),
        (rrq("sub"), 2, "access_violation"),  # a directory
        (rrq("fifo"), 2, "access_violation"),  # would block the reactor if opened
        (b"\x00\x02upload.cfg\x00octet\x00", 4, "wrq"),
        (rrq("phone.cfg", b"mail"), 4, "illegal_op"),
        (wire.encode_ack(3), 4, "illegal_op"),  # no transfer on the server port
        (wire.encode_data(1, b"x"), 4, "illegal_op"),
        (b"\x00\x09\x00\x00", 4, "illegal_op"),  # no such opcode
        (rrq("phone.cfg", blksize=2), 8, "option_refused"),
    ]
    for packet, code, key in cases:
        before = handler.stats[key]
        reply = handler.handle(packet, PEER)
        assert isinstance(reply, Reject), packet
        assert error_of(reply.packet) == code, packet
        assert handler.stats[key] == before + 1, key


def test_errors_and_garbage_on_the_server_port_get_no_answer(handler):
    assert handler.handle(wire.encode_error(0, "huh"), PEER) is None
    for junk in (b"", b"\x00"):
        assert handler.handle(junk, PEER) is None, junk
    assert handler.stats["stray_errors"] == 1 and handler.stats["malformed"] == 2
    assert handler.stats["rrq"] == 0


@pytest.mark.parametrize("request_bytes", [
    b"\x00\x01", b"\x00\x01no-nul",
    b"\x00\x01f\x00octet\x00odd\x00",  # an embedded NUL: the name's tail reads as an option without a value
    b"\x00\x01phone\x00.cfg\x00octet\x00",
    b"\x00\x01\xff\xfe\x00octet\x00",  # a name that is not UTF-8
])
def test_a_malformed_request_gets_an_error_packet_not_silence(handler, request_bytes):
    reply = handler.handle(request_bytes, PEER)
    assert isinstance(reply, Reject) and error_of(reply.packet) == wire.ERR_ILLEGAL_OPERATION
    assert handler.stats["malformed"] == 1 and handler.stats["rrq"] == 0


def test_a_utf8_file_name_is_looked_up(handler):
    reply = handler.handle(b"\x00\x01caf\xc3\xa9.cfg\x00octet\x00", PEER)
    assert isinstance(reply, Reject) and error_of(reply.packet) == wire.ERR_NOT_FOUND


def test_netascii_converts_line_ends(tree, handler):
    (tree / "unix.txt").write_bytes(b"a\nb\rc\r\n")
    transfer = handler.handle(rrq("unix.txt", b"netascii", tsize=0), PEER)
    assert wire.decode_oack(transfer.start().send[0][0])["tsize"] == "11"
    assert download(handler.handle(rrq("unix.txt", b"NETASCII"), PEER))[0] == b"a\r\nb\r\x00c\r\x00\r\n"
    assert to_netascii(b"") == b""


# --- root confinement --------------------------------------------------------------------

TRAVERSAL_CORPUS = [
    "../secret",
    "../../secret",
    "../outside/secret",
    "sub/../../secret",
    "sub/../../outside/secret",
    "./../secret",
    "/../secret",
    "//../secret",
    "..\\secret",
    "sub\\..\\..\\secret",
    "..\\/secret",
    "/etc/passwd",
    "../../../../../../../../etc/passwd",
    "link_out",
    "linkdir_out/secret",
    "/linkdir_out/secret",
    "sub/../link_out",
    "..",
    "/",
    "",
    ".",
    "%2e%2e/secret",
]


def served(handler, packet):
    reply = handler.handle(packet, PEER)
    if isinstance(reply, ReadTransfer):
        return download(reply)[0]
    return None


@pytest.mark.parametrize("name", TRAVERSAL_CORPUS)
def test_traversal_corpus_never_leaves_the_root(handler, name):
    reply = handler.handle(rrq(name), PEER)
    assert isinstance(reply, Reject), name
    assert error_of(reply.packet) in (wire.ERR_NOT_FOUND, wire.ERR_ACCESS_VIOLATION)


def test_absolute_names_resolve_under_the_root(handler, tree):
    (tree / "etc").mkdir()
    (tree / "etc" / "passwd").write_bytes(b"the lab's own passwd")
    assert served(handler, rrq("/etc/passwd")) == b"the lab's own passwd"


def test_nul_in_the_name_cannot_smuggle_a_path(handler):
    # The NUL ends the file name; what follows becomes the mode (or an option).
    for packet in (
        b"\x00\x01sub/ok.cfg\x00../secret\x00octet\x00",
        b"\x00\x01../secret\x00\x00octet\x00",
        b"\x00\x01link_in\x00/../../secret\x00",
    ):
        reply = handler.handle(packet, PEER)
        assert reply is None or isinstance(reply, Reject)


@pytest.mark.parametrize("name", ["sub/ok.cfg", "/sub/ok.cfg", "sub\\ok.cfg", "./sub//ok.cfg", "link_in", "sub/../sub/ok.cfg"])
def test_names_inside_the_root_are_served(handler, name):
    # "sub/../sub/ok.cfg" is refused: any ".." is, even one that would stay inside.
    expected = None if ".." in name else b"inside\n"
    assert served(handler, rrq(name)) == expected


def test_root_must_exist(tmp_path):
    with pytest.raises(ValueError):
        TftpRequestHandler(TftpServerConfig(str(tmp_path / "nope")))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["..", ".", "", "sub", "link_out", "linkdir_out", "secret", "etc", "\\", "..\\", "/"]), max_size=6))
def test_any_path_made_of_dangerous_parts_stays_inside(tmp_path_factory, parts):
    # Built once per example from a fresh tree (hypothesis and function fixtures do not mix).
    base = tmp_path_factory.getbasetemp() / "hyp-tree"
    if not base.exists():
        base.mkdir()
        (base / "secret").write_bytes(SECRET)
        root = base / "root"
        root.mkdir()
        (root / "link_out").symlink_to(base / "secret")
        (root / "linkdir_out").symlink_to(base)
    handler = TftpRequestHandler(TftpServerConfig(str(base / "root")))
    data = served(handler, rrq("/".join(parts)))
    assert data is None or SECRET not in data


# --- robustness --------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_to_the_server_port_never_raise(tmp_path_factory, datagram):
    root = tmp_path_factory.getbasetemp()
    handler = TftpRequestHandler(TftpServerConfig(str(root)))
    reply = handler.handle(datagram, PEER)
    assert reply is None or isinstance(reply, (Reject, ReadTransfer))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.sampled_from(["octet", "netascii", "OcTeT", "mail", ""]), st.dictionaries(
    st.sampled_from(["blksize", "tsize", "timeout", "BLKSIZE", "x"]), st.text("0123456789-ab", max_size=7), max_size=4))
def test_random_requests_never_raise(tmp_path_factory, name, mode, options):
    root = tmp_path_factory.getbasetemp()
    handler = TftpRequestHandler(TftpServerConfig(str(root)))
    packet = b"\x00\x01" + name.replace(b"\x00", b"") + b"\x00" + mode.encode() + b"\x00"
    for k, v in options.items():
        packet += k.encode() + b"\x00" + v.encode() + b"\x00"
    handler.handle(packet, PEER)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=20), st.booleans()), max_size=8))
def test_random_bytes_to_a_transfer_never_raise(datagrams):
    transfer = ReadTransfer(PEER, b"d" * 3000, oack={"blksize": "512"})
    transfer.start()
    for datagram, from_peer in datagrams:
        transfer.datagram_received(datagram, PEER if from_peer else STRANGER)
        transfer.timer_expired()


# --- RFC 7440 windowsize ------------------------------------------------------------------


def blocks_of(step) -> list[int]:
    return [wire.decode_data(packet)[0] for packet, _ in step.send]


def test_a_window_of_blocks_goes_out_per_ack():
    content = os.urandom(10 * 512 + 100)  # 11 blocks, the last short
    stats = new_stats()
    transfer = ReadTransfer(PEER, content, windowsize=4, oack={"windowsize": "4"}, stats=stats)
    assert wire.decode_oack(transfer.start().send[0][0]) == {"windowsize": "4"}
    step = transfer.datagram_received(ack(0), PEER)
    assert blocks_of(step) == [1, 2, 3, 4] and step.timer == 1.0
    assert all(addr == PEER for _, addr in step.send)
    step = transfer.datagram_received(ack(4), PEER)
    assert blocks_of(step) == [5, 6, 7, 8]
    step = transfer.datagram_received(ack(8), PEER)
    assert blocks_of(step) == [9, 10, 11]  # the window is cut at the last block
    assert transfer.datagram_received(ack(11), PEER).done and transfer.succeeded
    assert stats["packets_sent"] == 1 + 11 and stats["bytes_sent"] == len(content) and stats["duplicate_acks"] == 0


def test_an_ack_inside_the_window_restarts_it_after_the_acked_block():
    # RFC 7440: a receiver that misses a block ACKs the last one it got in order; the
    # sender goes on from the next (go-back-N).
    transfer = ReadTransfer(PEER, os.urandom(20 * 512), windowsize=4)
    assert blocks_of(transfer.start()) == [1, 2, 3, 4]
    assert blocks_of(transfer.datagram_received(ack(2), PEER)) == [3, 4, 5, 6]
    assert transfer.datagram_received(ack(2), PEER).send == ()  # old news: ignored, never answered
    assert transfer.datagram_received(ack(9), PEER).send == ()  # never sent: ignored
    assert blocks_of(transfer.datagram_received(ack(6), PEER)) == [7, 8, 9, 10]
    assert transfer.stats["duplicate_acks"] == 2


def test_a_timeout_resends_the_whole_outstanding_window_up_to_the_cap():
    stats = new_stats()
    transfer = ReadTransfer(PEER, os.urandom(6 * 512), windowsize=3, max_retransmits=2, stats=stats)
    first = transfer.start()
    assert transfer.timer_expired().send == first.send
    step = transfer.datagram_received(ack(1), PEER)  # progress: a fresh retry budget
    assert blocks_of(step) == [2, 3, 4]
    assert blocks_of(transfer.timer_expired()) == [2, 3, 4]
    assert blocks_of(transfer.timer_expired()) == [2, 3, 4]
    assert transfer.timer_expired().done and transfer.reason == "timeout"
    assert (stats["retransmits"], stats["timeouts"], stats["packets_sent"]) == (3, 1, 3 + 3 + 3 + 3 + 3)


def test_windows_across_the_block_number_rollover():
    content = os.urandom(8 * 65540 + 3)
    transfer = ReadTransfer(PEER, content, blksize=8, windowsize=7)
    step = transfer.start()
    got = []
    while not step.done:
        last = None
        for packet, _ in step.send:
            last, payload = wire.decode_data(packet)
            got.append(payload)
        step = transfer.datagram_received(ack(last), PEER)
    assert b"".join(got) == content and transfer.succeeded


def rfc7440_receiver_run(content: bytes, blksize: int, windowsize: int, lost: list[bool], max_events: int = 20000):
    """A server ReadTransfer against a model RFC 7440 receiver over a lossy FIFO link.

    The receiver ACKs every ``windowsize``-th block in order and the last block; a block
    out of order makes it ACK the last in-order block. ``lost`` decides, packet after
    packet (cycled), which datagrams the link drops. Returns (transfer, received bytes
    or None if the receiver did not complete).
    """
    transfer = ReadTransfer(PEER, content, blksize=blksize, windowsize=windowsize, max_retransmits=30)
    expected, since_ack, chunks, complete = 1, 0, [], False
    link: list[tuple[str, bytes]] = []
    drops = iter(lost * (max_events // max(len(lost), 1) + 1)) if lost else iter(())

    def post(step, direction):
        for packet, _ in step.send:
            if not next(drops, False):
                link.append((direction, packet))
        return step

    post(transfer.start(), "down")
    for _ in range(max_events):
        if transfer.finished:
            break
        if not link:
            post(transfer.timer_expired(), "down")
            continue
        direction, packet = link.pop(0)
        if direction == "up":
            post(transfer.datagram_received(packet, PEER), "down")
            continue
        block, payload = wire.decode_data(packet)
        if complete:
            continue
        if block == expected % 65536:
            chunks.append(payload)
            expected += 1
            since_ack += 1
            if len(payload) < blksize:
                complete = True
                post(wire.Step(send=((ack(block), PEER),)), "up")
            elif since_ack == windowsize:
                since_ack = 0
                post(wire.Step(send=((ack(block), PEER),)), "up")
        else:
            since_ack = 0
            post(wire.Step(send=((ack(expected - 1), PEER),)), "up")
    return transfer, (b"".join(chunks) if complete else None)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 3000), st.sampled_from([8, 64, 512]), st.integers(1, 9), st.lists(st.booleans(), max_size=12))
def test_windowed_transfers_deliver_the_file_through_loss(size, blksize, windowsize, lost):
    content = bytes(random.Random(size).getrandbits(8) for _ in range(size))
    transfer, received = rfc7440_receiver_run(content, blksize, windowsize, lost)
    if transfer.succeeded:
        assert received == content
    if not any(lost):
        assert transfer.succeeded and transfer.stats["retransmits"] == 0
        assert transfer.stats["packets_sent"] == size // blksize + 1


def test_preencoded_packets_are_the_packets():
    content = os.urandom(5000)
    for blksize in (8, 512, 1468, 5000, 9000):
        packets = encode_all_blocks(content, blksize)
        plain = ReadTransfer(PEER, content, blksize=blksize, windowsize=3)
        fast = ReadTransfer(PEER, content, blksize=blksize, windowsize=3, packets=packets)
        a, b = plain.start(), fast.start()
        while not a.done:
            assert a == b
            last = wire.decode_data(a.send[-1][0])[0]
            a, b = plain.datagram_received(ack(last), PEER), fast.datagram_received(ack(last), PEER)
        assert b.done and plain.stats == fast.stats


# --- the file cache ---------------------------------------------------------------------


def test_a_changed_file_is_served_fresh(handler, tree):
    assert served(handler, rrq("phone.cfg")) == b"x" * 1000
    assert served(handler, rrq("phone.cfg")) == b"x" * 1000
    assert handler.stats["cache_hits"] == 1
    (tree / "phone.cfg").write_bytes(b"y" * 1000)  # same size
    st_ = os.stat(tree / "phone.cfg")
    os.utime(tree / "phone.cfg", ns=(st_.st_atime_ns, st_.st_mtime_ns + 1_000_000))
    assert served(handler, rrq("phone.cfg")) == b"y" * 1000
    (tree / "phone.cfg").write_bytes(b"z" * 10)
    assert served(handler, rrq("phone.cfg")) == b"z" * 10
    os.unlink(tree / "phone.cfg")
    assert error_of(handler.handle(rrq("phone.cfg"), PEER).packet) == wire.ERR_NOT_FOUND


def test_a_cached_name_swapped_for_a_symlink_out_of_the_root_is_refused(handler, tree):
    (tree / "sub" / "a.cfg").write_bytes(b"inside")
    assert served(handler, rrq("sub/a.cfg")) == b"inside"
    (tree / "sub" / "a.cfg").unlink()
    (tree / "sub" / "a.cfg").symlink_to(tree.parent / "secret")
    reply = handler.handle(rrq("sub/a.cfg"), PEER)
    assert isinstance(reply, Reject) and error_of(reply.packet) == wire.ERR_ACCESS_VIOLATION
    # ... and a whole folder swapped for a link to the outside
    assert served(handler, rrq("sub/ok.cfg")) == b"inside\n"
    os.rename(tree / "sub", tree / "sub-old")
    (tree / "sub").symlink_to(tree.parent / "outside")
    (tree.parent / "outside" / "ok.cfg").write_bytes(SECRET)
    reply = handler.handle(rrq("sub/ok.cfg"), PEER)
    assert isinstance(reply, Reject) and error_of(reply.packet) == wire.ERR_ACCESS_VIOLATION


def test_the_cache_stays_within_its_bound(tree, monkeypatch):
    monkeypatch.setattr(tftp_module, "CACHE_TOTAL_MAX", 5000)
    handler = TftpRequestHandler(TftpServerConfig(str(tree)))
    for i in range(20):
        (tree / f"f{i}.cfg").write_bytes(bytes([i]) * 700)
    for i in range(20):
        for blksize in (512, 100):
            assert served(handler, rrq(f"f{i}.cfg", blksize=blksize)) == bytes([i]) * 700
            assert handler._cached_bytes <= 5000
    assert 0 < len(handler._cache) < 20


def test_large_files_are_not_cached(tree, monkeypatch):
    monkeypatch.setattr(tftp_module, "CACHE_FILE_MAX", 1000)
    handler = TftpRequestHandler(TftpServerConfig(str(tree)))
    (tree / "big.bin").write_bytes(os.urandom(1001))
    assert served(handler, rrq("big.bin")) == (tree / "big.bin").read_bytes()
    assert "big.bin" not in handler._cache and "phone.cfg" not in handler._cache
    served(handler, rrq("phone.cfg"))
    assert "phone.cfg" in handler._cache


def test_netascii_after_octet_from_the_cache(tree, handler):
    (tree / "t.txt").write_bytes(b"a\nb\n" * 300)
    assert served(handler, rrq("t.txt")) == b"a\nb\n" * 300
    assert served(handler, rrq("t.txt", b"netascii")) == b"a\r\nb\r\n" * 300
    assert served(handler, rrq("t.txt", blksize=100)) == b"a\nb\n" * 300


# --- uploads (WRQ) ----------------------------------------------------------------------


def wrq(filename: str, mode: bytes = b"octet", **options) -> bytes:
    return b"\x00\x02" + rrq(filename, mode, **options)[2:]


@pytest.fixture
def uploader(tree):
    return TftpRequestHandler(TftpServerConfig(str(tree), uploads=True, upload_dir="up/logs", max_retransmits=2, upload_max=5000))


def upload(transfer: WriteTransfer, content: bytes, blksize: int = 512) -> list[bytes]:
    """Send ``content`` as DATA blocks, as a client would; returns every packet the server sent."""
    sent = list(p for p, _ in transfer.start().send)
    for i in range(len(content) // blksize + 1):
        step = transfer.datagram_received(wire.encode_data(i + 1, content[i * blksize : (i + 1) * blksize]), PEER)
        sent += [p for p, _ in step.send]
        if step.done:
            break
    return sent


def test_uploads_are_off_by_default(handler, tree):
    reply = handler.handle(wrq("uploads/x.log"), PEER)
    assert isinstance(reply, Reject) and error_of(reply.packet) == wire.ERR_ILLEGAL_OPERATION
    assert not (tree / "uploads").exists()


def test_an_upload_is_acked_block_by_block_and_stored(uploader, tree):
    content = os.urandom(1300)
    transfer = uploader.handle(wrq("up/logs/phone.log"), PEER)
    assert isinstance(transfer, WriteTransfer)
    sent = upload(transfer, content)
    assert sent == [wire.encode_ack(0), wire.encode_ack(1), wire.encode_ack(2), wire.encode_ack(3)]
    assert (tree / "up" / "logs" / "phone.log").read_bytes() == content
    assert transfer.succeeded and transfer.size == 1300
    assert (uploader.stats["uploads"], uploader.stats["bytes_received"], uploader.stats["transfers_ok"]) == (1, 1300, 1)
    assert os.listdir(tree / "up" / "logs") == ["phone.log"]  # no temporary file left


def test_after_the_last_block_the_server_dallies_to_repeat_a_lost_final_ack(uploader):
    transfer = uploader.handle(wrq("up/logs/a.log"), PEER)
    transfer.start()
    step = transfer.datagram_received(wire.encode_data(1, b"short"), PEER)
    assert step.send == ((wire.encode_ack(1), PEER),) and step.timer == 1.0 and not step.done
    assert transfer.datagram_received(wire.encode_data(1, b"short"), PEER).send == ((wire.encode_ack(1), PEER),)
    assert transfer.timer_expired().done
    assert uploader.stats["uploads"] == 1


def test_upload_options_blksize_tsize_and_no_window(uploader, tree):
    transfer = uploader.handle(wrq("/up/logs/b.bin", blksize=100, tsize=250, windowsize=8), PEER)
    assert wire.decode_oack(transfer.start().send[0][0]) == {"blksize": "100", "tsize": "250"}
    content = os.urandom(250)
    for i in range(3):
        step = transfer.datagram_received(wire.encode_data(i + 1, content[i * 100 : (i + 1) * 100]), PEER)
        assert step.send[0][0] == wire.encode_ack(i + 1)
    assert (tree / "up" / "logs" / "b.bin").read_bytes() == content


@pytest.mark.parametrize("name", ["x.log", "up/x.log", "up/logs", "/up/logs/", "up/logs/../x.log", "../up/logs/x.log",
                                  "up\\logs\\..\\..\\x.log", "upx/logs/a", "up/logs/sub"])
def test_uploads_outside_the_upload_folder_get_error_2(uploader, tree, name):
    (tree / "up" / "logs" / "sub").mkdir(exist_ok=True)
    reply = uploader.handle(wrq(name), PEER)
    assert isinstance(reply, Reject) and error_of(reply.packet) == wire.ERR_ACCESS_VIOLATION, name
    assert uploader.stats["access_violation"] == 1


def test_a_symlink_in_the_upload_folder_cannot_lead_a_write_outside(uploader, tree):
    (tree / "up" / "logs" / "out").symlink_to(tree.parent / "outside")
    reply = uploader.handle(wrq("up/logs/out/x.log"), PEER)
    assert isinstance(reply, Reject) and error_of(reply.packet) == wire.ERR_ACCESS_VIOLATION
    assert not (tree.parent / "outside" / "x.log").exists()


def test_subfolders_of_the_upload_folder_are_created(uploader, tree):
    upload(uploader.handle(wrq("up/logs/2026/11/phone.log"), PEER), b"log")
    assert (tree / "up" / "logs" / "2026" / "11" / "phone.log").read_bytes() == b"log"


def test_too_large_uploads_get_error_3(uploader, tree):
    reply = uploader.handle(wrq("up/logs/big", tsize=5001), PEER)
    assert isinstance(reply, Reject) and error_of(reply.packet) == wire.ERR_DISK_FULL
    sent = upload(uploader.handle(wrq("up/logs/big"), PEER), os.urandom(6000))
    assert error_of(sent[-1]) == wire.ERR_DISK_FULL
    assert not (tree / "up" / "logs" / "big").exists() and uploader.stats["disk_full"] == 2


def test_netascii_uploads_are_converted_back(uploader, tree):
    upload(uploader.handle(wrq("up/logs/t.txt", b"netascii"), PEER), to_netascii(b"a\nb\rc\r\n"))
    assert (tree / "up" / "logs" / "t.txt").read_bytes() == b"a\nb\rc\r\n"
    assert from_netascii(to_netascii(bytes(range(256)) * 3)) == bytes(range(256)) * 3


@pytest.mark.parametrize("err, code", [(errno.ENOSPC, wire.ERR_DISK_FULL), (errno.EACCES, wire.ERR_ACCESS_VIOLATION)])
def test_a_failed_store_answers_with_an_error_instead_of_the_final_ack(err, code):
    def store(_data):
        raise OSError(err, os.strerror(err))

    stats = new_stats()
    transfer = WriteTransfer(PEER, store, stats=stats)
    transfer.start()
    step = transfer.datagram_received(wire.encode_data(1, b"x"), PEER)
    assert step.done and error_of(step.send[0][0]) == code
    assert not transfer.succeeded and stats["transfers_failed"] == 1 and stats["uploads"] == 0


def test_upload_retransmits_the_last_ack_then_gives_up_without_storing():
    stored = []
    stats = new_stats()
    transfer = WriteTransfer(PEER, stored.append, max_retransmits=2, stats=stats)
    transfer.start()
    step = transfer.datagram_received(wire.encode_data(1, b"a" * 512), PEER)
    assert transfer.timer_expired().send == step.send
    assert transfer.timer_expired().send == step.send
    assert transfer.timer_expired().done and transfer.reason == "timeout"
    assert stored == [] and (stats["retransmits"], stats["timeouts"]) == (2, 1)


def test_upload_duplicates_strangers_and_protocol_breaks():
    stored = []
    stats = new_stats()
    transfer = WriteTransfer(PEER, stored.append, stats=stats)
    transfer.start()
    assert transfer.datagram_received(wire.encode_data(1, b"a" * 512), PEER).send[0][0] == wire.encode_ack(1)
    dup = transfer.datagram_received(wire.encode_data(1, b"a" * 512), PEER)  # our ACK 1 was lost
    assert dup.send == ((wire.encode_ack(1), PEER),) and dup.timer is None
    assert transfer.datagram_received(wire.encode_data(3, b"c"), PEER) == wire.Step()  # out of order: dropped
    assert error_of(transfer.datagram_received(wire.encode_data(2, b"b"), STRANGER).send[0][0]) == 5
    big = transfer.datagram_received(wire.encode_data(2, b"b" * 513), PEER)  # larger than blksize
    assert big.done and error_of(big.send[0][0]) == wire.ERR_ILLEGAL_OPERATION
    assert stored == [] and stats["duplicate_data"] == 2 and stats["unknown_tid"] == 1
    other = WriteTransfer(PEER, stored.append, stats=stats)
    other.start()
    step = other.datagram_received(ack(0), PEER)  # an ACK to an upload: the peer is confused
    assert step.done and error_of(step.send[0][0]) == wire.ERR_ILLEGAL_OPERATION
    third = WriteTransfer(PEER, stored.append, stats=stats)
    third.start()
    assert third.datagram_received(wire.encode_error(0, "bye"), PEER).done and stats["client_errors"] == 1


def test_upload_block_numbers_roll_over():
    stored = []
    content = os.urandom(8 * 65540 + 5)
    transfer = WriteTransfer(PEER, stored.append, blksize=8, max_size=1 << 20)
    transfer.start()
    for i in range(len(content) // 8 + 1):
        step = transfer.datagram_received(wire.encode_data(i + 1, content[i * 8 : (i + 1) * 8]), PEER)
        assert step.send[0][0] == wire.encode_ack((i + 1) % 65536)
    assert stored == [content]


def test_upload_config_is_validated(tmp_path):
    for bad in ("", "/abs", "..", "a/../../b", "\\up"):
        with pytest.raises(ValueError):
            TftpServerConfig(str(tmp_path), uploads=True, upload_dir=bad)
    for bad in (0, 65536):
        with pytest.raises(ValueError):
            TftpServerConfig(str(tmp_path), windowsize_max=bad)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "up").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError):
        TftpRequestHandler(TftpServerConfig(str(tmp_path / "root"), uploads=True, upload_dir="up"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=20), st.booleans()), max_size=8))
def test_random_bytes_to_an_upload_never_raise(datagrams):
    transfer = WriteTransfer(PEER, lambda data: None, oack={"blksize": "8"}, blksize=8)
    transfer.start()
    for datagram, from_peer in datagrams:
        transfer.datagram_received(datagram, PEER if from_peer else STRANGER)
        transfer.timer_expired()


# --- the Twisted adapter over loopback ------------------------------------------------------


_Client = BareUdpSocket


def settle(seconds: float = 0.03) -> defer.Deferred:
    return settle_for(seconds)



class AdapterOverLoopback(trial.TestCase):
    timeout = 30

    def setUp(self):
        self.root = self.mktemp()
        os.makedirs(self.root)
        self.content = os.urandom(100_000)
        with open(os.path.join(self.root, "fw.bin"), "wb") as f:
            f.write(self.content)
        self.client = _Client()
        self.addCleanup(self.client.close)

    def serve(self, **kw):
        clock = kw.pop("clock", None)
        server = start_tftp_server(reactor, TftpServerConfig(self.root, **kw), "127.0.0.1", 0, clock=clock)
        self.addCleanup(server.stop)
        return server

    @defer.inlineCallbacks
    def receive(self, count: int, seconds: float = 2.0, until=lambda packet: False) -> list:
        """What reaches the client: ``count`` datagrams, or up to one that ``until`` accepts."""
        got = []
        for _ in range(int(seconds / 0.005)):
            got += self.client.drain()
            if len(got) >= count or any(until(packet) for packet, _ in got):
                break
            yield settle(0.005)
        defer.returnValue(got)

    @defer.inlineCallbacks
    def test_windowed_download_over_sockets(self):
        server = self.serve(windowsize_max=16)
        self.client.sock.sendto(rrq("fw.bin", blksize=1024, windowsize=32), ("127.0.0.1", server.port))
        (oack, tid), = yield self.receive(1)
        self.assertEqual(wire.decode_oack(oack), {"blksize": "1024", "windowsize": "16"})
        self.client.sock.sendto(ack(0), tid)
        chunks, expected = [], 1
        while True:
            window = yield self.receive(16, until=lambda packet: len(packet) < 4 + 1024)
            self.assertTrue(window, "no DATA")
            for packet, source in window:
                self.assertEqual(source, tid)
                block, payload = wire.decode_data(packet)
                self.assertEqual(block, expected)
                chunks.append(payload)
                expected += 1
            self.client.sock.sendto(ack(expected - 1), tid)
            if len(chunks[-1]) < 1024:
                break
            self.assertEqual(len(window), 16)  # a whole window per ACK
        self.assertEqual(b"".join(chunks), self.content)
        yield settle()
        self.assertEqual((server.stats["transfers_ok"], server.stats["active"], server.stats["retransmits"]), (1, 0, 0))

    @defer.inlineCallbacks
    def test_the_timeout_runs_from_the_last_send_not_the_first(self):
        clock = task.Clock()
        server = self.serve(clock=clock, timeout_s=1.0, max_retransmits=1)
        self.client.sock.sendto(rrq("fw.bin"), ("127.0.0.1", server.port))
        (data1, tid), = yield self.receive(1)
        clock.advance(0.6)
        self.client.sock.sendto(ack(1), tid)
        (data2, _), = yield self.receive(1)
        self.assertEqual(wire.decode_data(data2)[0], 2)
        clock.advance(0.5)  # 1.1 s after DATA 1, 0.5 s after DATA 2: nothing is due yet
        yield settle()
        self.assertEqual(self.client.drain(), [])
        clock.advance(0.5)  # 1.0 s after DATA 2
        (again, _), = yield self.receive(1)
        self.assertEqual(again, data2)
        clock.advance(1.0)  # the cap (1) is reached: give up and close
        yield settle()
        self.assertEqual((server.stats["timeouts"], server.stats["active"], server.stats["retransmits"]), (1, 0, 1))
        self.assertEqual(clock.getDelayedCalls(), [])

    @defer.inlineCallbacks
    def test_a_burst_of_requests_beyond_one_read_batch_is_answered(self):
        server = self.serve()
        for i in range(200):
            self.client.sock.sendto(rrq(f"missing{i}.cfg"), ("127.0.0.1", server.port))
        replies = yield self.receive(200)
        self.assertEqual(len(replies), 200)
        self.assertTrue(all(error_of(packet) == wire.ERR_NOT_FOUND for packet, _ in replies))
        self.assertEqual(server.stats["not_found"], 200)

    @defer.inlineCallbacks
    def test_upload_over_sockets_then_the_file_can_be_downloaded(self):
        server = self.serve(uploads=True)
        content = os.urandom(3000)
        self.client.sock.sendto(wrq("uploads/phone.log", blksize=1000, tsize=3000), ("127.0.0.1", server.port))
        (oack, tid), = yield self.receive(1)
        self.assertEqual(wire.decode_oack(oack), {"blksize": "1000", "tsize": "3000"})
        for i in range(4):
            self.client.sock.sendto(wire.encode_data(i + 1, content[i * 1000 : (i + 1) * 1000]), tid)
            (reply, _), = yield self.receive(1)
            self.assertEqual(reply, ack(i + 1))
        with open(os.path.join(self.root, "uploads", "phone.log"), "rb") as f:
            self.assertEqual(f.read(), content)
        self.client.sock.sendto(rrq("uploads/phone.log"), ("127.0.0.1", server.port))
        (data1, tid2), = yield self.receive(1)
        self.assertEqual(wire.decode_data(data1), (1, content[:512]))
        self.assertNotEqual(tid2, tid)
        self.assertEqual(server.stats["uploads"], 1)

    @defer.inlineCallbacks
    def test_stop_closes_every_socket_and_leaves_the_reactor_clean(self):
        server = self.serve()
        for _ in range(5):
            self.client.sock.sendto(rrq("fw.bin"), ("127.0.0.1", server.port))
        replies = yield self.receive(5)
        self.assertEqual(server.stats["active"], 5)
        yield server.stop()
        self.assertEqual(server.stats["active"], 0)
        for _, tid in replies + [(None, ("127.0.0.1", server.port))]:
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.addCleanup(probe.close)
            probe.bind(tid)  # every port is free again
        yield server.stop()  # twice is harmless


@settings(max_examples=150, deadline=None)
@given(st.text(st.characters(min_codepoint=1, max_codepoint=127), min_size=1, max_size=40),
       st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=10),
                       st.one_of(st.integers(0, 65535), st.text("0123456789", min_size=1, max_size=6)), max_size=4))
def test_rrq_encoder_matches_tftpy(filename, options):
    ref = TftpPacketRRQ()
    ref.filename, ref.mode, ref.options = filename, "octet", {k: str(v) for k, v in options.items()}
    assert wire.encode_rrq(filename, options) == ref.encode().buffer

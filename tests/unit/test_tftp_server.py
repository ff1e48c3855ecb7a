"""labsim's TFTP server logic without sockets: codec, negotiation, transfers, errors, root confinement.

Sockets and the real reactor are in tests/unit/test_tftp_client.py; real third-party
peers in tests/interop/test_tftp_interop.py.
"""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tftpy.TftpPacketFactory import TftpPacketFactory
from tftpy.TftpPacketTypes import TftpPacketACK, TftpPacketDAT, TftpPacketERR, TftpPacketOACK

from labsim.services.tftp import (
    ReadTransfer,
    Reject,
    TftpRequestHandler,
    TftpServerConfig,
    negotiate,
    new_stats,
    to_netascii,
)
from labsim.wire import tftp as wire

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
        ({"windowsize": "4", "multicast": ""}, 512, {}),  # unknown options are ignored
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
    for junk in (b"", b"\x00", b"\x00\x01", b"\x00\x01no-nul", b"\x00\x01f\x00octet\x00odd\x00", b"\x00\x01\xff\xfe\x00octet\x00"):
        assert handler.handle(junk, PEER) is None, junk
    assert handler.stats["stray_errors"] == 1 and handler.stats["malformed"] == 6
    assert handler.stats["rrq"] == 0


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

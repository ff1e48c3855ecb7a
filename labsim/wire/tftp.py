"""TFTP packets (RFC 1350, options RFC 2347/2348/2349, windowsize RFC 7440).

Every packet labsim sends or parses goes through a small ``struct`` / ``bytes`` codec
here. tftpy's packet classes (``TftpPacketRRQ``, ``TftpPacketOACK``, ``TftpPacketERR``)
remain the reference: tests/unit/test_tftp_server.py checks each fast path against
them, including on random bytes. Why not call tftpy on the hot path:

- DATA and ACK are >90% of all TFTP packets, and tftpy builds an object and makes
  several logging calls per packet;
- decoding an RRQ through tftpy cost ~24 us (a format string built byte by byte);
  the split-on-NUL decoder below ~1.5 us, and it accepts and refuses exactly what
  tftpy does (a hypothesis test compares them);
- tftpy's ``TftpPacketERR.decode`` logs every error packet at ERROR level (a "file
  not found" for each of thousands of phones would flood stderr) and drops the last
  message byte when the NUL terminator is missing.

``decode_request`` lowercases option names (RFC 2347: case-insensitive); tftpy
keeps them as sent. ``encode_rrq`` builds what tftpy's ``TftpPacketRRQ`` builds (a test
compares them), ~20x faster: in virtual time every download starts with one.

Every decoder raises ``TftpDecodeError`` and nothing else on bad input, so callers can
count-and-drop with one ``except``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Mapping, NamedTuple


# Opcodes (RFC 1350 + RFC 2347's OACK).
RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6

# Error codes (RFC 1350 + RFC 2347's code 8).
ERR_UNDEFINED = 0
ERR_NOT_FOUND = 1
ERR_ACCESS_VIOLATION = 2
ERR_DISK_FULL = 3
ERR_ILLEGAL_OPERATION = 4
ERR_UNKNOWN_TID = 5
ERR_FILE_EXISTS = 6
ERR_NO_SUCH_USER = 7
ERR_OPTION_REFUSED = 8

DEFAULT_BLKSIZE = 512  # RFC 1350's fixed block size, used when no blksize is negotiated
MIN_BLKSIZE = 8  # RFC 2348 range (tftpy's own MAX_BLKSIZE, 65536, is not the RFC's)
MAX_BLKSIZE = 65464
MIN_TIMEOUT_S = 1  # RFC 2349 range, whole seconds
MAX_TIMEOUT_S = 255
MIN_WINDOWSIZE = 1  # RFC 7440 range, in blocks
MAX_WINDOWSIZE = 65535
BLOCK_MODULO = 65536  # block numbers are 16 bits and roll over to 0 (tftp-hpa, dnsmasq, curl)

_OPCODE = struct.Struct("!H")
_OPCODE_BLOCK = struct.Struct("!HH")
_ERROR_HEADER = struct.Struct("!HH")
_OACK_OPCODE = b"\x00\x06"
# RFC 1350's texts for each code (tftpy's table), used when no message is given.
ERROR_MESSAGES = {
    1: "File not found",
    2: "Access violation",
    3: "Disk full or allocation exceeded",
    4: "Illegal TFTP operation",
    5: "Unknown transfer ID",
    6: "File already exists",
    7: "No such user",
    8: "Failed to negotiate options",
}


class TftpDecodeError(ValueError):
    """The datagram is not a well-formed TFTP packet of the expected kind."""


class Step(NamedTuple):
    """What a TFTP state machine (client or server side) wants done after an event.

    Shared by labsim/services/tftp_transfer.py and labsim/transport/tftp_client.py so the two
    Twisted adapters apply it the same way.
    """

    send: tuple[tuple[bytes, tuple], ...] = ()  # (datagram, (host, port)) to send now, in order
    timer: float | None = None  # (re)arm the retransmission timer to fire in this many seconds
    done: bool = False  # the exchange is over: cancel the timer, close the socket


@dataclass(frozen=True, slots=True)
class Request:
    """A decoded RRQ or WRQ."""

    opcode: int
    filename: str
    mode: str  # lowercased ("octet", "netascii", ...)
    options: dict[str, str]  # option names lowercased, values as sent


def opcode_of(datagram: bytes) -> int | None:
    """The opcode, or None when the datagram is too short to have one."""
    if len(datagram) < 2:
        return None
    return (datagram[0] << 8) | datagram[1]


# --- DATA / ACK: the struct fast path -------------------------------------------------


def encode_data(block: int, payload: bytes) -> bytes:
    return _OPCODE_BLOCK.pack(DATA, block % BLOCK_MODULO) + payload


def decode_data(datagram: bytes) -> tuple[int, bytes]:
    """(block number, payload) of a DATA packet."""
    if len(datagram) < 4 or datagram[0] != 0 or datagram[1] != DATA:
        raise TftpDecodeError("not a DATA packet")
    return (datagram[2] << 8) | datagram[3], datagram[4:]


def encode_ack(block: int) -> bytes:
    return _OPCODE_BLOCK.pack(ACK, block % BLOCK_MODULO)


def decode_ack(datagram: bytes) -> int:
    """Block number of an ACK. Trailing bytes are tolerated as tftpy does (some stacks
    pad short datagrams)."""
    if len(datagram) < 4 or datagram[0] != 0 or datagram[1] != ACK:
        raise TftpDecodeError("not an ACK packet")
    return (datagram[2] << 8) | datagram[3]


# --- RRQ / WRQ / OACK ----------------------------------------------------------------


def encode_rrq(filename: str, options: Mapping[str, object] | None = None) -> bytes:
    """An octet-mode RRQ (all phones use octet mode)."""
    return encode_request(RRQ, filename, "octet", options)


def encode_request(opcode: int, filename: str, mode: str = "octet", options: Mapping[str, object] | None = None) -> bytes:
    """An RRQ or WRQ in any mode (tftpy's encoder knows octet RRQs only). A file name
    beyond ASCII goes as its UTF-8 bytes, as a phone's client sends the name it was given
    (RFC 1350 says netascii, which no server enforces; labsim's reads UTF-8)."""
    out = [_OPCODE.pack(opcode), filename.encode("utf-8", "surrogateescape"), b"\x00", mode.encode("ascii"), b"\x00"]
    for key, value in (options or {}).items():
        out += [str(key).encode("ascii"), b"\x00", str(value).encode("ascii"), b"\x00"]
    return b"".join(out)


def _split_options(strings: list[bytes]) -> dict[str, str]:
    """Option name/value pairs from the NUL-separated pieces after the mode.

    ``strings`` ends with what follows the last NUL, which must be nothing. Like tftpy:
    no empty name or value, no name without a value, ASCII only; a repeated name keeps
    its last value.
    """
    if strings[-1]:
        raise TftpDecodeError("options not NUL-terminated")
    pairs = strings[:-1]
    if len(pairs) % 2:
        raise TftpDecodeError("option without a value")
    options: dict[str, str] = {}
    for i in range(0, len(pairs), 2):
        name, value = pairs[i], pairs[i + 1]
        if not name or not value:
            raise TftpDecodeError("empty option name or value")
        options[name.decode("ascii").lower()] = value.decode("ascii")
    return options


def decode_request(datagram: bytes) -> Request:
    """Decode an RRQ or WRQ: ``filename NUL mode NUL [name NUL value NUL]...``.

    The file name and mode may be empty (tftpy's rule; the handler refuses them).
    """
    if len(datagram) < 2 or datagram[0] != 0 or datagram[1] not in (RRQ, WRQ):
        raise TftpDecodeError("not a request packet")
    pieces = datagram[2:].split(b"\x00")
    if len(pieces) < 3:
        raise TftpDecodeError("malformed request: file name or mode not NUL-terminated")
    try:
        # RFC 1350 names are netascii; UTF-8 is accepted too (a superset phones may send).
        filename = pieces[0].decode("utf-8")
    except UnicodeDecodeError:
        raise TftpDecodeError("malformed request: file name not UTF-8") from None
    try:
        mode = pieces[1].decode("ascii").lower()
        options = _split_options(pieces[2:]) if len(pieces) > 3 or pieces[2] else {}
    except UnicodeDecodeError:
        raise TftpDecodeError("malformed request: mode or option not ASCII") from None
    return Request(datagram[1], filename, mode, options)


def encode_oack(options: Mapping[str, object]) -> bytes:
    out = [_OACK_OPCODE]
    for key, value in options.items():
        out += [str(key).encode("ascii"), b"\x00", str(value).encode("ascii"), b"\x00"]
    return b"".join(out)


def decode_oack(datagram: bytes) -> dict[str, str]:
    """The options of an OACK, names lowercased."""
    if opcode_of(datagram) != OACK:
        raise TftpDecodeError("not an OACK packet")
    if len(datagram) == 2:
        raise TftpDecodeError("OACK without options")  # acknowledges nothing (tftpy refuses it too)
    try:
        return _split_options(datagram[2:].split(b"\x00"))
    except UnicodeDecodeError:
        raise TftpDecodeError("malformed OACK: not ASCII") from None


# --- ERROR -----------------------------------------------------------------------------


def encode_error(code: int, message: str | None = None) -> bytes:
    """An ERROR packet; ``message`` defaults to RFC 1350's text for the code."""
    if message is None:
        message = ERROR_MESSAGES.get(code, "Error")
    return _ERROR_HEADER.pack(ERROR, code) + message.encode("ascii", "replace") + b"\x00"


def decode_error(datagram: bytes) -> tuple[int, str]:
    """(error code, message) of an ERROR packet. A missing NUL terminator is tolerated."""
    if len(datagram) < 4 or opcode_of(datagram) != ERROR:
        raise TftpDecodeError("not an ERROR packet")
    _, code = _ERROR_HEADER.unpack_from(datagram)
    message = datagram[4:].split(b"\x00", 1)[0].decode("ascii", "replace")
    return code, message

"""TFTP packets (RFC 1350, options RFC 2347/2348/2349): thin helpers over tftpy's codec.

tftpy's packet classes (``TftpPacketRRQ``, ``TftpPacketOACK``, ``TftpPacketERR`` ...)
encode and decode the request-shaped packets. Three deliberate departures, each tested
against tftpy as the reference in tests/unit/test_tftp_server.py:

- DATA and ACK use a tiny ``struct`` fast path. They are >90% of all TFTP packets,
  and tftpy builds an object and makes several logging calls per packet.
- ERROR is decoded here: tftpy's ``TftpPacketERR.decode`` logs every error packet at
  ERROR level (a "file not found" for each of thousands of phones would flood stderr)
  and drops the last message byte when the NUL terminator is missing.
- ``decode_request`` lowercases option names (RFC 2347: case-insensitive); tftpy
  keeps them as sent.

Every decoder raises ``TftpDecodeError`` and nothing else on bad input, so callers can
count-and-drop with one ``except``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Mapping, NamedTuple

from tftpy.TftpPacketFactory import TftpPacketFactory
from tftpy.TftpPacketTypes import TftpPacketERR, TftpPacketOACK, TftpPacketRRQ

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
BLOCK_MODULO = 65536  # block numbers are 16 bits and roll over to 0 (tftp-hpa, dnsmasq, curl)

_OPCODE_BLOCK = struct.Struct("!HH")
_ERROR_HEADER = struct.Struct("!HH")
# One factory is enough: TftpPacketFactory.parse keeps no state between calls.
_FACTORY = TftpPacketFactory()


class TftpDecodeError(ValueError):
    """The datagram is not a well-formed TFTP packet of the expected kind."""


class Step(NamedTuple):
    """What a TFTP state machine (client or server side) wants done after an event.

    Shared by labsim/services/tftp.py and labsim/transport/tftp_client.py so the two
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


# --- RRQ / WRQ / OACK through tftpy ----------------------------------------------------


def encode_rrq(filename: str, options: Mapping[str, object] | None = None) -> bytes:
    """An octet-mode RRQ (tftpy encodes octet mode only, which is all phones use)."""
    packet = TftpPacketRRQ()
    packet.filename = filename
    packet.mode = "octet"
    packet.options = {k: str(v) for k, v in (options or {}).items()}
    return packet.encode().buffer


def decode_request(datagram: bytes) -> Request:
    """Decode an RRQ or WRQ."""
    opcode = opcode_of(datagram)
    if opcode not in (RRQ, WRQ):
        raise TftpDecodeError("not a request packet")
    try:
        packet = _FACTORY.parse(datagram)
    except Exception as exc:  # tftpy raises TftpException, struct.error, UnicodeDecodeError ...
        raise TftpDecodeError(f"malformed request: {exc}") from None
    options = {str(k).lower(): str(v) for k, v in packet.options.items()}
    return Request(opcode, packet.filename, packet.mode, options)


def encode_oack(options: Mapping[str, object]) -> bytes:
    packet = TftpPacketOACK()
    packet.options = {k: str(v) for k, v in options.items()}
    return packet.encode().buffer


def decode_oack(datagram: bytes) -> dict[str, str]:
    """The options of an OACK, names lowercased."""
    if opcode_of(datagram) != OACK:
        raise TftpDecodeError("not an OACK packet")
    try:
        packet = _FACTORY.parse(datagram)
    except Exception as exc:
        raise TftpDecodeError(f"malformed OACK: {exc}") from None
    return {str(k).lower(): str(v) for k, v in packet.options.items()}


# --- ERROR -----------------------------------------------------------------------------


def encode_error(code: int, message: str | None = None) -> bytes:
    """An ERROR packet; ``message`` defaults to tftpy's standard text for the code."""
    packet = TftpPacketERR()
    packet.errorcode = code
    if message is not None:
        # tftpy encodes errmsgs[errorcode]; an instance-level table lets us say why.
        packet.errmsgs = {code: message.encode("ascii", "replace")}
    elif code not in packet.errmsgs:
        packet.errmsgs = {code: b"Error"}
    return packet.encode().buffer


def decode_error(datagram: bytes) -> tuple[int, str]:
    """(error code, message) of an ERROR packet. A missing NUL terminator is tolerated."""
    if len(datagram) < 4 or opcode_of(datagram) != ERROR:
        raise TftpDecodeError("not an ERROR packet")
    _, code = _ERROR_HEADER.unpack_from(datagram)
    message = datagram[4:].split(b"\x00", 1)[0].decode("ascii", "replace")
    return code, message

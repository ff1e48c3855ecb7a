"""labsim's TFTP server logic, without I/O (RFC 1350 read side, options RFC 2347/2348/2349).

Two pieces, both plain objects that take datagrams and timer expiries and return a
``Step`` (what to send, whether to (re)arm the retransmission timer, whether it is over):

- ``TftpRequestHandler`` answers what arrives on the well-known port: it decodes the
  request, confines the file name to the root, reads the file once, negotiates options
  and returns either a ``ReadTransfer`` to run on a fresh socket (a new TID, RFC 1350
  section 4) or an ERROR to send.
- ``ReadTransfer`` is one download: OACK or DATA 1, then one DATA per ACK, retransmitting
  the outstanding packet on timeout up to a cap.

labsim/services/tftp_udp.py owns the sockets and the clock. Uploads (WRQ) are refused.
Every counter lives in one ``stats`` dict shared by the handler and its transfers.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from labsim.wire import tftp as wire
from labsim.wire.tftp import Step

NO_STEP = Step()
Address = tuple  # (host, port)

STAT_KEYS = (
    "rrq",  # read requests that decoded
    "wrq",  # write requests (always refused)
    "transfers_started",
    "transfers_ok",  # last block acknowledged
    "transfers_failed",  # timed out, client sent ERROR, or client broke protocol
    "active",  # transfers running now (the adapter keeps this one)
    "not_found",
    "access_violation",  # outside the root, not a regular file, unreadable
    "illegal_op",  # WRQ, bad opcode, unsupported mode
    "option_refused",
    "unknown_tid",  # datagrams from a stranger to a transfer socket
    "malformed",  # undecodable datagrams, dropped
    "stray_errors",  # ERROR packets that arrived where none was expected, dropped
    "client_errors",  # ERROR packets that ended a transfer
    "duplicate_acks",  # ignored, never answered (Sorcerer's Apprentice, RFC 1123 4.2.3.1)
    "packets_sent",
    "bytes_sent",  # DATA payload bytes put on the wire, retransmissions included
    "retransmits",
    "timeouts",  # transfers given up after max_retransmits
    "send_errors",  # the adapter's socket refused a datagram
    "socket_errors",  # the adapter could not open a transfer socket (fd limit ...)
    "internal_errors",  # a bug: caught by the adapter so no exception leaves a callback
)


def new_stats() -> dict[str, int]:
    return dict.fromkeys(STAT_KEYS, 0)


@dataclass
class TftpServerConfig:
    root: str  # provisioning root folder
    blksize_max: int = 1468  # fits a 1500-byte Ethernet MTU with IPv4+UDP+TFTP headers
    timeout_s: float = 1.0  # retransmission timeout (clients may negotiate with the timeout option)
    max_retransmits: int = 5  # the cap (DESIGN.md: an uncapped loop once corrupted another test)

    def __post_init__(self) -> None:
        if not wire.MIN_BLKSIZE <= self.blksize_max <= wire.MAX_BLKSIZE:
            raise ValueError(f"blksize_max must be {wire.MIN_BLKSIZE}..{wire.MAX_BLKSIZE}")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if self.max_retransmits < 0:
            raise ValueError("max_retransmits must be >= 0")


class TftpRefusal(Exception):
    """A request answered with an ERROR packet."""

    def __init__(self, code: int, message: str, stat_key: str):
        super().__init__(message)
        self.code = code
        self.message = message
        self.stat_key = stat_key


# --- file names ------------------------------------------------------------------------


def resolve_under_root(root_real: str, filename: str) -> str:
    """The real path ``filename`` names under ``root_real`` (itself a realpath).

    Absolute names are taken relative to the root (phones ask for "/cfg/x.cfg"), and
    backslashes count as separators (Windows-style "..\\..\\x" must not slip through on
    POSIX, where a backslash is an ordinary character). Raises TftpRefusal with code 2
    for anything that could leave the root: a ".." component, or a symlink whose
    target is outside.
    """
    parts = [p for p in filename.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts:
        raise TftpRefusal(wire.ERR_NOT_FOUND, "No file name", "not_found")
    if ".." in parts:
        raise TftpRefusal(wire.ERR_ACCESS_VIOLATION, "Access violation", "access_violation")
    try:
        real = os.path.realpath(os.path.join(root_real, *parts))
        inside = os.path.commonpath([real, root_real]) == root_real
    except ValueError:  # an embedded NUL; cannot come out of a decoded RRQ, but be safe
        inside = False
    if not inside:
        raise TftpRefusal(wire.ERR_ACCESS_VIOLATION, "Access violation", "access_violation")
    return real


def read_regular_file(path: str) -> bytes:
    """The whole file; TftpRefusal for missing (1) or non-regular / unreadable (2) files.

    Only regular files: opening a FIFO or a device would block the reactor.
    """
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise TftpRefusal(wire.ERR_NOT_FOUND, "File not found", "not_found") from None
    except OSError:
        raise TftpRefusal(wire.ERR_ACCESS_VIOLATION, "Access violation", "access_violation") from None
    if not stat.S_ISREG(st.st_mode):
        raise TftpRefusal(wire.ERR_ACCESS_VIOLATION, "Not a regular file", "access_violation")
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise TftpRefusal(wire.ERR_NOT_FOUND, "File not found", "not_found") from None
    except OSError:
        raise TftpRefusal(wire.ERR_ACCESS_VIOLATION, "Access violation", "access_violation") from None


def to_netascii(data: bytes) -> bytes:
    """RFC 764 NVT line endings, as tftp-hpa sends them: LF -> CR LF, a bare CR -> CR NUL."""
    return data.replace(b"\r", b"\r\x00").replace(b"\n", b"\r\n")


# --- options ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Negotiated:
    blksize: int
    timeout_s: float
    oack: dict[str, str]  # empty: no OACK, DATA 1 goes out directly


def negotiate(options: dict[str, str], size: int, config: TftpServerConfig) -> Negotiated:
    """Apply RFC 2348 (blksize), 2349 (timeout, tsize) to a request's options.

    blksize outside 8..65464 or not a number is refused with ERROR 8 (RFC 2347 lets a
    server refuse; a silent 512 would hide a client bug). A blksize above our maximum is
    lowered (RFC 2348 allows the server a smaller value). An unusable timeout or tsize
    is left out of the OACK (RFC 2349: that is how a server declines it). Unknown
    options are ignored (RFC 2347).
    """
    blksize = wire.DEFAULT_BLKSIZE
    timeout_s = config.timeout_s
    oack: dict[str, str] = {}
    if "blksize" in options:
        try:
            asked = int(options["blksize"])
        except ValueError:
            asked = -1
        if asked < wire.MIN_BLKSIZE:
            raise TftpRefusal(
                wire.ERR_OPTION_REFUSED, f"blksize {options['blksize'][:16]!r} out of range", "option_refused"
            )
        blksize = min(asked, config.blksize_max, wire.MAX_BLKSIZE)
        oack["blksize"] = str(blksize)
    if "timeout" in options:
        try:
            asked_timeout = int(options["timeout"])
        except ValueError:
            asked_timeout = 0
        if wire.MIN_TIMEOUT_S <= asked_timeout <= wire.MAX_TIMEOUT_S:
            timeout_s = float(asked_timeout)
            oack["timeout"] = str(asked_timeout)
    if "tsize" in options:
        try:
            valid = int(options["tsize"]) >= 0
        except ValueError:
            valid = False
        if valid:
            oack["tsize"] = str(size)
    return Negotiated(blksize, timeout_s, oack)


# --- the well-known port ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reject:
    """Answer the request with this ERROR packet (from a fresh TID) and nothing else."""

    packet: bytes


class TftpRequestHandler:
    """Turns a datagram that arrived on the server port into a transfer, an ERROR, or nothing."""

    def __init__(self, config: TftpServerConfig, stats: dict[str, int] | None = None):
        self.config = config
        self.stats = stats if stats is not None else new_stats()
        self.root_real = os.path.realpath(config.root)
        if not os.path.isdir(self.root_real):
            raise ValueError(f"TFTP root {config.root!r} is not a directory")

    def handle(self, datagram: bytes, addr: Address) -> "ReadTransfer | Reject | None":
        stats = self.stats
        opcode = wire.opcode_of(datagram)
        if opcode == wire.ERROR:
            # Never answer an ERROR with an ERROR: two confused peers would ping-pong.
            stats["stray_errors"] += 1
            return None
        if opcode == wire.WRQ:
            stats["wrq"] += 1
            stats["illegal_op"] += 1
            return Reject(wire.encode_error(wire.ERR_ILLEGAL_OPERATION, "Uploads are disabled"))
        if opcode != wire.RRQ:
            if opcode is None or len(datagram) < 4:
                stats["malformed"] += 1
                return None
            stats["illegal_op"] += 1
            return Reject(wire.encode_error(wire.ERR_ILLEGAL_OPERATION, "Illegal TFTP operation"))
        try:
            request = wire.decode_request(datagram)
        except wire.TftpDecodeError:
            stats["malformed"] += 1
            return None
        stats["rrq"] += 1
        try:
            return self._start(request, addr)
        except TftpRefusal as refusal:
            stats[refusal.stat_key] += 1
            return Reject(wire.encode_error(refusal.code, refusal.message))

    def _start(self, request: wire.Request, addr: Address) -> "ReadTransfer":
        if request.mode not in ("octet", "netascii"):
            raise TftpRefusal(wire.ERR_ILLEGAL_OPERATION, f"Unsupported mode {request.mode[:16]!r}", "illegal_op")
        data = read_regular_file(resolve_under_root(self.root_real, request.filename))
        if request.mode == "netascii":
            data = to_netascii(data)
        terms = negotiate(request.options, len(data), self.config)
        return ReadTransfer(
            addr,
            data,
            blksize=terms.blksize,
            timeout_s=terms.timeout_s,
            max_retransmits=self.config.max_retransmits,
            oack=terms.oack,
            stats=self.stats,
        )


# --- one download ----------------------------------------------------------------------


class ReadTransfer:
    """The sending side of one RRQ, on its own TID.

    The outstanding packet (OACK, then each DATA) is kept as bytes and resent as-is on
    timeout. Duplicate ACKs are ignored rather than answered: answering them is the
    Sorcerer's Apprentice bug that doubles traffic on every delayed ACK.
    """

    __slots__ = (
        "peer",
        "data",
        "blksize",
        "timeout_s",
        "max_retransmits",
        "stats",
        "_oack",
        "_block",
        "_outstanding",
        "_retries",
        "_last_block",
        "finished",
        "succeeded",
        "reason",
    )

    def __init__(
        self,
        peer: Address,
        data: bytes,
        *,
        blksize: int = wire.DEFAULT_BLKSIZE,
        timeout_s: float = 1.0,
        max_retransmits: int = 5,
        oack: dict[str, str] | None = None,
        stats: dict[str, int] | None = None,
    ):
        self.peer = tuple(peer[:2])
        self.data = data
        self.blksize = blksize
        self.timeout_s = timeout_s
        self.max_retransmits = max_retransmits
        self.stats = stats if stats is not None else new_stats()
        self._oack = oack or {}
        self._block = 0  # the block whose ACK we are waiting for (0: the OACK's)
        # A file of exactly n*blksize bytes ends with an empty DATA n+1 (RFC 1350: a
        # short block ends the transfer, and an empty one is the only short one left).
        self._last_block = len(data) // blksize + 1
        self._outstanding = b""
        self._retries = 0
        self.finished = False
        self.succeeded = False
        self.reason = ""

    def start(self) -> Step:
        self.stats["transfers_started"] += 1
        if self._oack:
            return self._send(wire.encode_oack(self._oack))
        return self._send_block(1)

    def datagram_received(self, datagram: bytes, addr: Address) -> Step:
        if self.finished:
            return NO_STEP
        stats = self.stats
        opcode = wire.opcode_of(datagram)
        if addr[0] != self.peer[0] or addr[1] != self.peer[1]:
            # RFC 1350 section 4: answer the stranger, leave the transfer alone.
            stats["unknown_tid"] += 1
            if opcode == wire.ERROR:
                return NO_STEP
            return Step(send=((wire.encode_error(wire.ERR_UNKNOWN_TID, "Unknown transfer ID"), tuple(addr[:2])),))
        if opcode == wire.ACK and len(datagram) >= 4:
            block = (datagram[2] << 8) | datagram[3]
            if block == self._block % wire.BLOCK_MODULO:
                if self._block == self._last_block:
                    return self._finish(True, "ok")
                return self._send_block(self._block + 1)
            stats["duplicate_acks"] += 1
            return NO_STEP
        if opcode == wire.ERROR:
            stats["client_errors"] += 1
            try:
                code, message = wire.decode_error(datagram)
                reason = f"client error {code}: {message}"
            except wire.TftpDecodeError:
                reason = "client error"
            return self._finish(False, reason)
        if opcode is None or len(datagram) < 4:
            stats["malformed"] += 1
            return NO_STEP
        # DATA, RRQ, OACK or an unknown opcode from our own peer: it broke the protocol.
        stats["illegal_op"] += 1
        self._finish(False, f"illegal opcode {opcode}")
        return Step(send=((wire.encode_error(wire.ERR_ILLEGAL_OPERATION, "Illegal TFTP operation"), self.peer),), done=True)

    def timer_expired(self) -> Step:
        if self.finished:
            return NO_STEP
        if self._retries >= self.max_retransmits:
            self.stats["timeouts"] += 1
            return self._finish(False, "timeout")
        self._retries += 1
        self.stats["retransmits"] += 1
        self.stats["packets_sent"] += 1
        if self._block:
            self.stats["bytes_sent"] += len(self._outstanding) - 4
        return Step(send=((self._outstanding, self.peer),), timer=self.timeout_s)

    # -- internals

    def _send_block(self, block: int) -> Step:
        start = (block - 1) * self.blksize
        payload = self.data[start : start + self.blksize]
        self._block = block
        self.stats["bytes_sent"] += len(payload)
        return self._send(wire.encode_data(block, payload))

    def _send(self, packet: bytes) -> Step:
        self._outstanding = packet
        self._retries = 0
        self.stats["packets_sent"] += 1
        return Step(send=((packet, self.peer),), timer=self.timeout_s)

    def _finish(self, ok: bool, reason: str) -> Step:
        self.finished = True
        self.succeeded = ok
        self.reason = reason
        self.stats["transfers_ok" if ok else "transfers_failed"] += 1
        self._outstanding = b""
        return Step(done=True)

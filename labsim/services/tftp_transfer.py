"""One TFTP transfer, without I/O: ``ReadTransfer`` (a download) and ``WriteTransfer`` (an
upload), each a plain object that takes datagrams and timer expiries and returns a
``Step`` (what to send, whether to (re)arm the retransmission timer, whether it is over).
``labsim.services.tftp`` starts them; the adapter runs them on a TID socket.
"""

from __future__ import annotations

import errno
from typing import Callable

from labsim.wire import tftp as wire
from labsim.wire.tftp import Step

NO_STEP = Step()
Address = tuple  # (host, port)
MOD = wire.BLOCK_MODULO
# Step(send, timer, False) without the Python-level __new__ NamedTuple generates (a
# frame per call): used where every ACK passes.
_new_tuple = tuple.__new__


STAT_KEYS = (
    "rrq",  # read requests that decoded
    "wrq",  # write requests (refused unless uploads are on)
    "transfers_started",
    "transfers_ok",  # download: last block acknowledged; upload: file stored
    "transfers_failed",  # timed out, client sent ERROR, or client broke protocol
    "active",  # transfers running now (the adapter keeps this one)
    "not_found",
    "access_violation",  # outside the root (or the upload folder), not a regular file, unreadable
    "illegal_op",  # WRQ while uploads are off, bad opcode, unsupported mode
    "option_refused",
    "disk_full",  # an upload too large or that could not be written (ERROR 3)
    "unknown_tid",  # datagrams from a stranger to a transfer socket (answered ERROR 5)
    "late_packets",  # from a client whose transfer on that socket just ended: dropped
    "malformed",  # undecodable datagrams, dropped
    "stray_errors",  # ERROR packets that arrived where none was expected, dropped
    "client_errors",  # ERROR packets that ended a transfer
    "duplicate_acks",  # ignored, never answered (Sorcerer's Apprentice, RFC 1123 4.2.3.1)
    "duplicate_data",  # upload DATA we already had (re-ACKed) or out of order (dropped)
    "packets_sent",
    "bytes_sent",  # DATA payload bytes put on the wire, retransmissions included
    "bytes_received",  # upload payload bytes accepted
    "uploads",  # files stored by WRQ
    "retransmits",  # timeouts that resent the outstanding packet(s)
    "window_resends",  # RFC 7440 windows restarted at once: the receiver repeated its last ACK
    "timeouts",  # transfers given up after max_retransmits
    "cache_hits",  # requests served from the file cache
    "send_errors",  # the adapter's socket refused a datagram
    "socket_errors",  # the adapter could not open a transfer socket (fd limit ...)
    "internal_errors",  # a bug: caught by the adapter so no exception leaves a callback
)


def new_stats() -> dict[str, int]:
    return dict.fromkeys(STAT_KEYS, 0)


def answer_stranger(datagram: bytes, addr: Address, stats: dict[str, int]) -> Step:
    """RFC 1350 section 4: a datagram for a transfer socket from an address that has no
    transfer there gets ERROR 5, unless it is itself an ERROR (no error answers an error)."""
    stats["unknown_tid"] += 1
    if wire.opcode_of(datagram) == wire.ERROR:
        return NO_STEP
    return Step(send=((wire.encode_error(wire.ERR_UNKNOWN_TID, "Unknown transfer ID"), (addr[0], addr[1])),))


def to_netascii(data: bytes) -> bytes:
    """RFC 764 NVT line endings, as tftp-hpa sends them: LF -> CR LF, a bare CR -> CR NUL."""
    return data.replace(b"\r", b"\r\x00").replace(b"\n", b"\r\n")


def from_netascii(data: bytes) -> bytes:
    """The reverse of ``to_netascii``: CR LF -> LF, CR NUL -> CR."""
    return data.replace(b"\r\n", b"\n").replace(b"\r\x00", b"\r")


# --- one download ----------------------------------------------------------------------


class ReadTransfer:
    """The sending side of one RRQ, on its own TID.

    Blocks go out in windows of ``windowsize`` (RFC 7440; 1 is RFC 1350's lockstep). An
    ACK for any block of the outstanding window acknowledges everything up to it and
    starts the next window right after it; an ACK for an older block, or one never sent,
    is a duplicate and is ignored rather than answered: answering is the Sorcerer's
    Apprentice bug that doubles traffic on every delayed ACK. A block lost inside a
    window is recovered when the receiver ACKs the block before it (go-back-N); one lost
    where the receiver cannot notice (the window's last, or an ACK) costs one timeout,
    after which the whole outstanding window is resent.

    Two refinements, both found with atftp (tests/interop/test_tftp_interop.py):

    - When the FIRST block of a window is lost, an RFC 7440 receiver repeats the ACK we
      already have (RFC 7440 section 4: it ACKs the last block it got in order, and the
      sender should restart the window after it). That repeat restarts the window at
      once (``window_resends``) instead of costing a whole timeout, unless the ACKed
      block (0: the OACK) or a later one already went out twice (``_resent_max``): the
      repeat may then only answer such a copy, and answering it is the Apprentice.
    - A receiver that gets a block twice ACKs again (atftp does, for any block out of
      order). So an ACK at or below a block we resent because an ACK asked for it
      (``_echo_max``) may only answer that copy: it moves the window on but resends
      nothing, only blocks never sent go out. Going back N there made every later window
      go out twice after a single duplicated DATA (measured with atftp: 39 DATA for a
      20-block file).

    ``packets`` (optional) are the file's DATA packets already encoded for ``blksize``;
    they must be ``encode_all_blocks(data, blksize)``.
    """

    __slots__ = (
        "peer",
        "data",
        "blksize",
        "timeout_s",
        "max_retransmits",
        "windowsize",
        "stats",
        "_oack",
        "_oack_packet",
        "_packets",
        "_acked",
        "_sent",
        "_retries",
        "_last_block",
        "_resent_max",
        "_echo_max",
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
        windowsize: int = 1,
        packets: tuple[bytes, ...] | None = None,
    ):
        self.peer = (peer[0], peer[1])
        self.data = data
        self.blksize = blksize
        self.timeout_s = timeout_s
        self.max_retransmits = max_retransmits
        self.windowsize = windowsize
        self.stats = stats if stats is not None else new_stats()
        self._oack = oack or {}
        self._oack_packet = b""  # while not empty: the OACK is out, waiting for ACK 0
        self._packets = packets
        # Blocks 1.._acked are acknowledged; _acked+1.._sent are out, unacknowledged.
        self._acked = 0
        self._sent = 0
        # A file of exactly n*blksize bytes ends with an empty DATA n+1 (RFC 1350: a
        # short block ends the transfer, and an empty one is the only short one left).
        self._last_block = len(data) // blksize + 1
        self._retries = 0
        # Full block counts (0: the OACK; -1: none yet), see the class doc: the highest
        # block that went out more than once for any reason, and the highest resent
        # because an ACK asked for it.
        self._resent_max = -1
        self._echo_max = -1
        self.finished = False
        self.succeeded = False
        self.reason = ""

    def start(self) -> Step:
        self.stats["transfers_started"] += 1
        if self._oack:
            self._oack_packet = wire.encode_oack(self._oack)
            self.stats["packets_sent"] += 1
            return Step(send=((self._oack_packet, self.peer),), timer=self.timeout_s)
        return self._send_window(True)

    def datagram_received(self, datagram: bytes, addr: Address) -> Step:
        if self.finished:
            return NO_STEP
        peer = self.peer
        if addr != peer and (addr[0] != peer[0] or addr[1] != peer[1]):  # (IPv6 addresses have 4 items)
            return answer_stranger(datagram, addr, self.stats)  # the transfer goes on
        if len(datagram) >= 4 and datagram[1] == 4 and datagram[0] == 0:  # an ACK
            block = (datagram[2] << 8) | datagram[3]
            if self._oack_packet:
                if block == 0:
                    self._oack_packet = b""
                    return self._send_window(True)
            else:
                acked = self._acked
                ahead = (block - acked) % MOD  # how far past the last ACK, modulo 2**16
                if 0 < ahead <= self._sent - acked:
                    acked += ahead
                    self._acked = acked
                    if acked == self._last_block:
                        return self._finish(True, "ok")
                    packets = self._packets
                    if self.windowsize == 1 and packets is not None:
                        # The lockstep case, inlined (~every packet of a boot storm).
                        self._retries = 0
                        self._sent = acked + 1
                        packet = packets[acked]
                        stats = self.stats
                        stats["packets_sent"] += 1
                        stats["bytes_sent"] += len(packet) - 4
                        return _new_tuple(Step, (((packet, peer),), self.timeout_s, False))
                    return self._window_after(acked)
                if ahead == 0 and acked > self._resent_max and self.windowsize > 1:
                    return self._restart_window()
            self.stats["duplicate_acks"] += 1
            return NO_STEP
        return self._not_an_ack(datagram)

    def timer_expired(self) -> Step:
        if self.finished:
            return NO_STEP
        stats = self.stats
        if self._retries >= self.max_retransmits:
            stats["timeouts"] += 1
            return self._finish(False, "timeout")
        self._retries += 1
        stats["retransmits"] += 1
        self._resent_max = self._sent  # (0 while the OACK is what goes again)
        if self._oack_packet:
            stats["packets_sent"] += 1
            return Step(send=((self._oack_packet, self.peer),), timer=self.timeout_s)
        # Go back to the first unacknowledged block and resend the window.
        return self._send_window(False)

    # -- internals

    def _window_after(self, acked: int) -> Step:
        """ACK ``acked`` (news: above the last one) moved the window on."""
        if acked <= self._echo_max:
            # Maybe only the receiver's answer to a block we resent: the blocks after it
            # that are out stay out (their copies are on the way), only new ones go.
            return self._send_window(True, self._sent + 1)
        if acked < self._sent:
            # Mid-window: the receiver lacks acked+1 (RFC 7440 section 4), go back to it.
            self._echo_max = self._resent_max = self._sent
        return self._send_window(True)

    def _restart_window(self) -> Step:
        """The receiver repeated the ACK we had: it lacks the window's first block (RFC
        7440 section 4). Resend the window now, without spending a retry."""
        self._echo_max = self._resent_max = self._sent
        self.stats["window_resends"] += 1
        return self._send_window(False)

    def _send_window(self, progress: bool, first: int = 0) -> Step:
        """Send blocks ``first`` (default _acked+1) .. _acked+windowsize; arm the timer.
        ``progress``: the peer acknowledged something, so the retry budget starts afresh."""
        if progress:
            self._retries = 0
        if not first:
            first = self._acked + 1
        last = self._acked + self.windowsize
        if last > self._last_block:
            last = self._last_block
        if first > last:  # all of the window is out already
            return Step((), self.timeout_s)
        self._sent = last
        stats = self.stats
        peer = self.peer
        if first == last:  # one block (windowsize 1, the common case): kept short
            packet = self._packets[first - 1] if self._packets is not None else self._block(first)
            stats["packets_sent"] += 1
            stats["bytes_sent"] += len(packet) - 4
            return _new_tuple(Step, (((packet, peer),), self.timeout_s, False))
        send = []
        for block in range(first, last + 1):
            packet = self._block(block)
            stats["bytes_sent"] += len(packet) - 4
            send.append((packet, peer))
        stats["packets_sent"] += len(send)
        return Step(tuple(send), self.timeout_s)

    def _block(self, block: int) -> bytes:
        if self._packets is not None:
            return self._packets[block - 1]
        start = (block - 1) * self.blksize
        return wire.encode_data(block, self.data[start : start + self.blksize])

    def _not_an_ack(self, datagram: bytes) -> Step:
        stats = self.stats
        opcode = wire.opcode_of(datagram)
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

    def _finish(self, ok: bool, reason: str) -> Step:
        self.finished = True
        self.succeeded = ok
        self.reason = reason
        self.stats["transfers_ok" if ok else "transfers_failed"] += 1
        self._oack_packet = b""
        return Step(done=True)


# --- one upload ------------------------------------------------------------------------


class WriteTransfer:
    """The receiving side of one WRQ, on its own TID.

    ACK 0 (or the OACK) first, then one ACK per DATA in order. A repeat of the block
    just acknowledged is ACKed again (our ACK was lost), without re-arming the timer so
    the retransmission cap still bounds the transfer; anything out of order is dropped.
    The short block completes the upload: ``store(data)`` writes it (OSError: ERROR 3
    or 2 instead of the final ACK). Then the transfer dallies one timeout (RFC 1350
    section 6) to repeat the final ACK if the client resends the last block.
    """

    __slots__ = (
        "peer",
        "store",
        "blksize",
        "timeout_s",
        "max_retransmits",
        "max_size",
        "netascii",
        "stats",
        "_oack",
        "_outstanding",
        "_received",
        "_chunks",
        "_size",
        "_retries",
        "_dallying",
        "finished",
        "succeeded",
        "reason",
        "size",
    )

    def __init__(
        self,
        peer: Address,
        store: Callable[[bytes], None],
        *,
        blksize: int = wire.DEFAULT_BLKSIZE,
        timeout_s: float = 1.0,
        max_retransmits: int = 5,
        oack: dict[str, str] | None = None,
        stats: dict[str, int] | None = None,
        max_size: int = 16 << 20,
        netascii: bool = False,
    ):
        self.peer = (peer[0], peer[1])
        self.store = store
        self.blksize = blksize
        self.timeout_s = timeout_s
        self.max_retransmits = max_retransmits
        self.max_size = max_size
        self.netascii = netascii
        self.stats = stats if stats is not None else new_stats()
        self._oack = oack or {}
        self._outstanding = b""  # what a timeout resends: the OACK or the last ACK
        self._received = 0  # blocks accepted so far (full count; the wire has it modulo 2**16)
        self._chunks: list[bytes] = []
        self._size = 0
        self._retries = 0
        self._dallying = False
        self.finished = False
        self.succeeded = False
        self.reason = ""
        self.size = 0  # bytes stored, once succeeded

    def start(self) -> Step:
        self.stats["transfers_started"] += 1
        return self._send(wire.encode_oack(self._oack) if self._oack else wire.encode_ack(0))

    def datagram_received(self, datagram: bytes, addr: Address) -> Step:
        stats = self.stats
        peer = self.peer
        if addr[0] != peer[0] or addr[1] != peer[1]:
            if self.finished and not self._dallying:
                return NO_STEP
            return answer_stranger(datagram, addr, stats)
        if self.finished:
            if self._dallying and len(datagram) >= 4 and datagram[1] == wire.DATA and datagram[0] == 0:
                if (datagram[2] << 8) | datagram[3] == self._received % MOD:
                    stats["duplicate_data"] += 1
                    stats["packets_sent"] += 1
                    return Step(send=((self._outstanding, peer),))
            return NO_STEP
        if len(datagram) >= 4 and datagram[1] == wire.DATA and datagram[0] == 0:
            return self._on_data((datagram[2] << 8) | datagram[3], datagram[4:])
        opcode = wire.opcode_of(datagram)
        if opcode == wire.ERROR:
            stats["client_errors"] += 1
            try:
                code, message = wire.decode_error(datagram)
                reason = f"client error {code}: {message}"
            except wire.TftpDecodeError:
                reason = "client error"
            return self._fail(reason)
        if opcode is None or len(datagram) < 4:
            stats["malformed"] += 1
            return NO_STEP
        stats["illegal_op"] += 1
        return self._fail(f"illegal opcode {opcode}", wire.ERR_ILLEGAL_OPERATION, "Illegal TFTP operation")

    def timer_expired(self) -> Step:
        if self._dallying:
            self._dallying = False
            return Step(done=True)
        if self.finished:
            return NO_STEP
        if self._retries >= self.max_retransmits:
            self.stats["timeouts"] += 1
            return self._fail("timeout")
        self._retries += 1
        self.stats["retransmits"] += 1
        self.stats["packets_sent"] += 1
        return Step(send=((self._outstanding, self.peer),), timer=self.timeout_s)

    # -- internals

    def _on_data(self, block: int, payload: bytes) -> Step:
        stats = self.stats
        if block != (self._received + 1) % MOD:
            stats["duplicate_data"] += 1
            if self._received and block == self._received % MOD:
                stats["packets_sent"] += 1
                return Step(send=((self._outstanding, self.peer),))
            return NO_STEP
        if len(payload) > self.blksize:
            stats["illegal_op"] += 1
            return self._fail(f"block of {len(payload)} bytes > blksize {self.blksize}",
                              wire.ERR_ILLEGAL_OPERATION, "Block larger than blksize")
        if self._size + len(payload) > self.max_size:
            stats["disk_full"] += 1
            return self._fail("too large", wire.ERR_DISK_FULL, "File too large")
        self._received += 1
        self._size += len(payload)
        stats["bytes_received"] += len(payload)
        if payload:
            self._chunks.append(payload)
        ack = wire.encode_ack(block)
        if len(payload) == self.blksize:
            return self._send(ack)
        return self._complete(ack)

    def _complete(self, final_ack: bytes) -> Step:
        data = b"".join(self._chunks)
        self._chunks = []
        if self.netascii:
            data = from_netascii(data)
        try:
            self.store(data)
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            self.stats["disk_full" if full else "access_violation"] += 1
            code = wire.ERR_DISK_FULL if full else wire.ERR_ACCESS_VIOLATION
            return self._fail(f"store failed: {exc}", code, "Disk full or allocation exceeded" if full else "Access violation")
        self.finished = True
        self.succeeded = True
        self.reason = "ok"
        self.size = len(data)
        self.stats["transfers_ok"] += 1
        self.stats["uploads"] += 1
        self._dallying = True
        self._outstanding = final_ack
        self.stats["packets_sent"] += 1
        return Step(send=((final_ack, self.peer),), timer=self.timeout_s)

    def _send(self, packet: bytes) -> Step:
        self._outstanding = packet
        self._retries = 0
        self.stats["packets_sent"] += 1
        return Step(send=((packet, self.peer),), timer=self.timeout_s)

    def _fail(self, reason: str, code: int | None = None, message: str = "") -> Step:
        self.finished = True
        self.succeeded = False
        self.reason = reason
        self._chunks = []
        self._outstanding = b""
        self.stats["transfers_failed"] += 1
        if code is None:
            return Step(done=True)
        self.stats["packets_sent"] += 1
        return Step(send=((wire.encode_error(code, message), self.peer),), done=True)

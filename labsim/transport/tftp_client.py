"""The TFTP client of virtual phones: downloads (RRQ) and uploads (WRQ), RFC 1350 with
options RFC 2347-2349.

``TftpReadSession`` and ``TftpWriteSession`` are the protocol without I/O: they take
datagrams and timer expiries and return ``Step``s. What the two sides share (locking on
to the server's TID, ERROR 5 to strangers, the capped retransmission of the last packet,
checking an OACK, failing) lives in ``_ClientSession``. ``tftp_get`` and ``tftp_put`` run
one session on its own UDP socket in the reactor and return a Deferred, so thousands of
phones can transfer at once in one process.
"""

from __future__ import annotations

import errno

from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.protocol import DatagramProtocol

from labsim.net.udp import bind_client
from labsim.transport.guard import parse_ip
from labsim.wire import tftp as wire
from labsim.wire.tftp import Step

NO_STEP = Step()
MAX_DATAGRAM = 65535  # Twisted's default maxPacketSize (8192) truncates DATA above blksize 8188


class TftpError(Exception):
    """The server sent an ERROR packet (``code`` set), or broke the protocol (``code`` None)."""

    def __init__(self, code: int | None, message: str):
        super().__init__(f"TFTP error {code}: {message}" if code is not None else f"TFTP protocol error: {message}")
        self.code = code
        self.message = message


class TftpNotFound(TftpError):
    """ERROR code 1, file not found."""


class TftpTimeout(Exception):
    """No answer after the last retransmission."""


def error_from_packet(code: int, message: str) -> TftpError:
    cls = TftpNotFound if code == wire.ERR_NOT_FOUND else TftpError
    return cls(code, message)


class _ClientSession:
    """What the read and the write side of one transfer have in common.

    Locks on to the port of the first reply from the server's host (the server's TID)
    and answers any other sender with ERROR 5 without disturbing the transfer. On
    timeout it resends its last packet up to ``max_retransmits`` times, then fails with
    TftpTimeout. When it is finished, ``result`` holds the outcome or ``error`` the
    exception. Subclasses implement ``start`` and ``_on_packet``.
    """

    def __init__(self, server: tuple[str, int], filename: str, *, blksize: int | None, timeout_s: float,
                 max_retransmits: int, backoff: float = 1.0, max_timeout_s: float | None = None):
        if blksize is not None and not wire.MIN_BLKSIZE <= blksize <= wire.MAX_BLKSIZE:
            raise ValueError(f"blksize must be {wire.MIN_BLKSIZE}..{wire.MAX_BLKSIZE}")
        self.server = (server[0], server[1])
        self._server_ip = parse_ip(server[0])
        if self._server_ip is None:
            raise ValueError(f"{server[0]!r} does not appear to be an IPv4 or IPv6 address")
        self.filename = filename
        self.timeout_s = timeout_s
        self.max_retransmits = max_retransmits
        # RFC 1123 4.2.3.2: each retransmission of one packet waits ``backoff`` times
        # longer than the last (capped at max_timeout_s); a new packet starts again at
        # timeout_s. 1.0: a fixed timeout.
        self.backoff = backoff
        self.max_timeout_s = max_timeout_s if max_timeout_s is not None else timeout_s * backoff ** max_retransmits
        self._timeout = timeout_s
        self.options: dict[str, str] = {}
        if blksize is not None:
            self.options["blksize"] = str(blksize)
        self.blksize = wire.DEFAULT_BLKSIZE  # until an OACK says otherwise
        self.tsize: int | None = None
        self.tid: tuple[str, int] | None = None
        self._last: tuple[bytes, tuple] | None = None  # what a timeout resends
        self._retries = 0
        self.retransmits = 0
        self.finished = False
        self.result = None
        self.error: Exception | None = None

    def datagram_received(self, datagram: bytes, addr) -> Step:
        if self.finished:
            return NO_STEP
        addr = (addr[0], addr[1])
        opcode = wire.opcode_of(datagram)
        if self.tid is None:
            if not self._from_server_host(addr[0]) or not self._answers_request(opcode, datagram):
                return self._stranger(opcode, addr)
            self.tid = addr  # RFC 1350: the first reply's port is the server's TID
        elif addr != self.tid:
            return self._stranger(opcode, addr)
        if opcode == wire.ERROR:
            try:
                code, message = wire.decode_error(datagram)
            except wire.TftpDecodeError:
                return NO_STEP
            return self._fail(error_from_packet(code, message))
        if opcode is None or len(datagram) < 4:
            return NO_STEP  # too short to be anything: drop
        step = self._on_packet(opcode, datagram)
        if step is None:
            return self._abort(wire.ERR_ILLEGAL_OPERATION, f"unexpected opcode {opcode}")
        return step

    def timer_expired(self) -> Step:
        if self.finished or self._last is None:
            return NO_STEP
        if self._retries >= self.max_retransmits:
            return self._fail(TftpTimeout(f"no answer from {self.server[0]}:{self.server[1]} for {self.filename!r}"))
        self._retries += 1
        self.retransmits += 1
        self._timeout = min(self._timeout * self.backoff, self.max_timeout_s)
        return Step(send=(self._last,), timer=self._timeout)

    def after_finish(self, datagram: bytes, addr) -> Step:
        """A datagram for a transfer that is over (its port is still held): the server
        resending the last DATA of a finished download lost our last ACK, which is sent
        again (RFC 1350's dally) so it stops; anyone else still sending gets ERROR 5."""
        opcode = wire.opcode_of(datagram)
        addr = (addr[0], addr[1])
        final = self._final_ack
        if (final is not None and addr == self.tid and opcode == wire.DATA and len(datagram) >= 4
                and datagram[2:4] == final[2:4]):
            return Step(send=((final, addr),))
        return self._stranger(opcode, addr)

    # -- for subclasses

    _final_ack: bytes | None = None  # a finished download's last ACK (for after_finish)

    def _answers_request(self, opcode: int | None, datagram: bytes) -> bool:
        """Whether a first packet can be the answer to this request (else it is a late
        packet of some other transfer, and must not become this one's TID)."""
        raise NotImplementedError

    def _on_packet(self, opcode: int, datagram: bytes) -> Step | None:
        """A packet from the server's TID, not an ERROR; None: not one this side expects."""
        raise NotImplementedError

    def _accept_oack(self, datagram: bytes) -> Step | None:
        """Take the server's OACK terms (RFC 2347: only options we asked for, blksize no
        larger than asked); None when accepted, else the Step that aborts."""
        if not self.options:
            return self._abort(wire.ERR_OPTION_REFUSED, "OACK for a request without options")
        try:
            options = wire.decode_oack(datagram)
        except wire.TftpDecodeError:
            return NO_STEP
        for name, value in options.items():
            if name not in self.options:
                return self._abort(wire.ERR_OPTION_REFUSED, f"unrequested option {name!r}")
            try:
                number = int(value)
            except ValueError:
                return self._abort(wire.ERR_OPTION_REFUSED, f"bad {name} {value!r}")
            if name == "blksize":
                if not wire.MIN_BLKSIZE <= number <= int(self.options["blksize"]):
                    return self._abort(wire.ERR_OPTION_REFUSED, f"blksize {number} not accepted")
                self.blksize = number
            elif name == "tsize":
                if number < 0:
                    return self._abort(wire.ERR_OPTION_REFUSED, f"tsize {number}")
                self.tsize = number
        return None

    def _from_server_host(self, host: str) -> bool:
        if host == self.server[0]:
            return True
        return parse_ip(host) == self._server_ip

    def _stranger(self, opcode: int | None, addr: tuple) -> Step:
        if opcode == wire.ERROR:
            return NO_STEP  # never answer an ERROR with an ERROR
        return Step(send=((wire.encode_error(wire.ERR_UNKNOWN_TID, "Unknown transfer ID"), addr),))

    def _send(self, packet: bytes, addr: tuple) -> Step:
        self._last = (packet, addr)
        self._retries = 0
        self._timeout = self.timeout_s
        return Step(send=(self._last,), timer=self.timeout_s)

    def _abort(self, code: int, message: str) -> Step:
        """Tell the server why we stop, then fail."""
        return self._fail(TftpError(None, message), wire.encode_error(code, message))

    def _fail(self, error: Exception, last_packet: bytes | None = None) -> Step:
        self.finished = True
        self.error = error
        self._last = None
        self._forget()
        if last_packet is not None and self.tid is not None:
            return Step(send=((last_packet, self.tid),), done=True)
        return Step(done=True)

    def _forget(self) -> None:
        """Drop buffered data once the transfer is over."""


class TftpReadSession(_ClientSession):
    """The receiving side of one RRQ (see ``_ClientSession``). It resends the RRQ, ACK 0
    or the last ACK on timeout; ``result`` is the file."""

    def __init__(
        self,
        server: tuple[str, int],
        filename: str,
        *,
        blksize: int | None = None,
        tsize: bool = False,
        timeout_s: float = 1.0,
        max_retransmits: int = 5,
        backoff: float = 1.0,
        max_timeout_s: float | None = None,
    ):
        super().__init__(server, filename, blksize=blksize, timeout_s=timeout_s, max_retransmits=max_retransmits,
                         backoff=backoff, max_timeout_s=max_timeout_s)
        if tsize:
            self.options["tsize"] = "0"
        self._expected = 1  # next DATA block (full count; the wire carries it modulo 2**16)
        self._chunks: list[bytes] = []
        self.result: bytes | None = None

    def start(self) -> Step:
        return self._send(wire.encode_rrq(self.filename, self.options), self.server)

    def _answers_request(self, opcode: int | None, datagram: bytes) -> bool:
        # An RRQ is answered by ERROR, OACK, or DATA block 1 (a server ignoring options).
        if opcode == wire.DATA:
            return len(datagram) >= 4 and datagram[2] == 0 and datagram[3] == 1
        return opcode == wire.ERROR or opcode == wire.OACK

    def _on_packet(self, opcode: int, datagram: bytes) -> Step | None:
        if opcode == wire.DATA:
            return self._on_data((datagram[2] << 8) | datagram[3], datagram[4:])
        if opcode == wire.OACK:
            return self._on_oack(datagram)
        return None

    # -- internals

    def _on_data(self, block: int, payload: bytes) -> Step:
        if block == self._expected % wire.BLOCK_MODULO:
            if len(payload) > self.blksize:
                return self._abort(wire.ERR_ILLEGAL_OPERATION, f"block of {len(payload)} bytes > blksize {self.blksize}")
            self._chunks.append(payload)
            ack = wire.encode_ack(block)
            self._expected += 1
            if len(payload) < self.blksize:
                return self._complete(ack)
            return self._send(ack, self.tid)
        if block == (self._expected - 1) % wire.BLOCK_MODULO and self._expected > 1:
            # Our ACK was lost and the server resent the block: ACK it again. (Do not
            # restart the timer: the retransmission cap must still bound the session.)
            return Step(send=((wire.encode_ack(block), self.tid),))
        return NO_STEP

    def _on_oack(self, datagram: bytes) -> Step:
        if self._expected != 1 or self._chunks:
            return NO_STEP  # late duplicate: DATA already flowing
        if self._last is not None and self._last[0] == wire.encode_ack(0):
            # The server resent its OACK: our ACK 0 was lost.
            return Step(send=(self._last,))
        refused = self._accept_oack(datagram)
        if refused is not None:
            return refused
        return self._send(wire.encode_ack(0), self.tid)

    def _complete(self, final_ack: bytes) -> Step:
        data = b"".join(self._chunks)
        self._chunks = []
        if self.tsize is not None and len(data) != self.tsize:
            return self._fail(TftpError(None, f"got {len(data)} bytes, server announced tsize {self.tsize}"), final_ack)
        self.finished = True
        self.result = data
        self._last = None
        self._final_ack = final_ack  # sent again if the server resends the last DATA (after_finish)
        return Step(send=((final_ack, self.tid),), done=True)

    def _forget(self) -> None:
        self._chunks = []


class TftpWriteSession(_ClientSession):
    """The sending side of one WRQ (see ``_ClientSession``).

    The server answers the WRQ with ACK 0, or with an OACK when it takes options (RFC
    2347: the OACK is acknowledged by DATA 1). Each ACK for the block in flight releases
    the next; the last block is shorter than blksize, and empty when the size is a
    multiple of it (RFC 1350: that is how the server knows the file ended). The ACK of
    the last block completes the upload: ``result`` is the number of bytes sent. On
    timeout it resends the WRQ or the block in flight. A duplicate ACK is never answered
    (RFC 1123 4.2.3.1, Sorcerer's Apprentice): the timer covers a lost block.
    """

    def __init__(
        self,
        server: tuple[str, int],
        filename: str,
        data: bytes,
        *,
        blksize: int | None = None,
        tsize: bool = False,
        timeout_s: float = 1.0,
        max_retransmits: int = 5,
        backoff: float = 1.0,
        max_timeout_s: float | None = None,
    ):
        super().__init__(server, filename, blksize=blksize, timeout_s=timeout_s, max_retransmits=max_retransmits,
                         backoff=backoff, max_timeout_s=max_timeout_s)
        self.data = bytes(data)
        if tsize:
            self.options["tsize"] = str(len(self.data))  # RFC 2349: a WRQ announces its size
        self._sent = 0  # the block in flight (full count; 0: the WRQ, waiting for ACK 0 or OACK)
        self._blocks: int | None = None  # how many DATA blocks in all, once blksize is settled
        self.result: int | None = None

    def start(self) -> Step:
        return self._send(wire.encode_request(wire.WRQ, self.filename, "octet", self.options), self.server)

    def _answers_request(self, opcode: int | None, datagram: bytes) -> bool:
        # A WRQ is answered by ERROR, OACK, or ACK block 0.
        if opcode == wire.ACK:
            return len(datagram) >= 4 and datagram[2] == 0 and datagram[3] == 0
        return opcode == wire.ERROR or opcode == wire.OACK

    def _on_packet(self, opcode: int, datagram: bytes) -> Step | None:
        if opcode == wire.ACK:
            return self._on_ack((datagram[2] << 8) | datagram[3])
        if opcode == wire.OACK:
            return self._on_oack(datagram)
        return None

    # -- internals

    def _on_ack(self, block: int) -> Step:
        if block != self._sent % wire.BLOCK_MODULO:
            return NO_STEP  # a duplicate (the block before) or a stray: the timer covers losses
        if self._sent == 0:
            self._blocks = len(self.data) // self.blksize + 1  # the server ignored our options: 512
        if self._sent == self._blocks:
            return self._complete()
        return self._send_block(self._sent + 1)

    def _on_oack(self, datagram: bytes) -> Step:
        if self._sent == 1 and self._last is not None:
            # The server resent its OACK: our DATA 1 was lost. Resend it, timer untouched
            # (the retransmission cap must still bound the session).
            return Step(send=(self._last,))
        if self._sent != 0:
            return NO_STEP  # a late duplicate: blocks already flowing
        refused = self._accept_oack(datagram)
        if refused is not None:
            return refused
        self._blocks = len(self.data) // self.blksize + 1
        return self._send_block(1)

    def _send_block(self, number: int) -> Step:
        self._sent = number
        size = self.blksize
        payload = self.data[(number - 1) * size : number * size]
        return self._send(wire.encode_data(number, payload), self.tid)

    def _complete(self) -> Step:
        self.finished = True
        self.result = len(self.data)
        self._last = None
        return Step(done=True)

    def _forget(self) -> None:
        self.data = b""


# Binding a port is retried while none is free (every ephemeral port held, many of them
# by finished transfers waiting out their linger): the phone waits, it does not fail.
PORT_WAIT_S = 60.0
_NO_PORT_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EMFILE, errno.ENFILE, errno.ENOBUFS})


class _SessionProtocol(DatagramProtocol):
    """Runs one client session (read or write) on its own UDP socket.

    A finished transfer's port is not closed at once (``linger_s``): it stays bound,
    answering only what a finished transfer answers (``session.after_finish``), until
    nothing has arrived at it for ``linger_s``. A server still retransmitting to it
    keeps it held, so the kernel cannot hand the port to the next download while a late
    packet is on its way there, however late the server's timers run."""

    noisy = False  # no "Starting protocol" log line per transfer

    def __init__(self, session: _ClientSession, clock, result: defer.Deferred, linger_s: float = 0.0):
        self.session = session
        self.clock = clock
        self.result = result
        self.linger_s = linger_s
        self.port = None
        self.timer = None
        self.closed = False
        self._linger_call = None
        self._bind_retry = None

    def datagramReceived(self, datagram: bytes, addr) -> None:
        if self._linger_call is not None:
            self._after_finish(datagram, addr)
            return
        try:
            step = self.session.datagram_received(datagram, addr)
        except Exception as exc:  # a bug in the session must still end the transfer
            self.session.finished = True
            self.session.error = exc
            step = Step(done=True)
        self.apply(step)

    def _timer_fired(self) -> None:
        self.timer = None
        # A reactor turn runs its due timers before it reads sockets: under load a timer
        # fires late with the answer already waiting. Read it first, so the phones' own
        # lateness is never taken for the server's silence.
        try:
            self.port.doRead()
        except Exception:
            pass
        if self.closed or self.timer is not None:  # what was waiting finished or moved the transfer
            return
        try:
            step = self.session.timer_expired()
        except Exception as exc:
            self.session.finished = True
            self.session.error = exc
            step = Step(done=True)
        self.apply(step)

    def apply(self, step: Step) -> None:
        if self.closed:
            return
        self._send(step)
        if step.done:
            if self.linger_s > 0:
                self._linger()
            else:
                self._close().addCallback(self._report)
        elif step.timer is not None:
            if self.timer is not None and self.timer.active():
                self.timer.reset(step.timer)
            else:
                self.timer = self.clock.callLater(step.timer, self._timer_fired)

    def _send(self, step: Step) -> None:
        for packet, addr in step.send:
            try:
                # The socket's own sendto, not port.write: write() re-parses the address
                # on every call, and ours were validated once in _run or came from recvfrom.
                self.port.getHandle().sendto(packet, addr)
            except OSError:
                pass  # a lost datagram: the retransmission timer covers it

    def _report(self, _) -> None:
        if self.result.called:  # cancelled meanwhile
            return
        if self.session.error is not None:
            self.result.errback(self.session.error)
        else:
            self.result.callback(self.session.result)

    def _close(self) -> defer.Deferred:
        if self._bind_retry is not None and self._bind_retry.active():
            self._bind_retry.cancel()
        if self.closed and self._linger_call is None:
            return defer.succeed(None)
        self.closed = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self._linger_call is not None and self._linger_call.active():
            self._linger_call.cancel()
        self._linger_call = None
        if self.port is None:
            return defer.succeed(None)
        # The Deferred fires once the socket is really closed, so a caller that counts
        # file descriptors (or starts the next of thousands of downloads) sees it gone.
        return defer.maybeDeferred(self.port.stopListening)

    def _linger(self) -> None:
        """Report now, but hold the port until it has been quiet for ``linger_s``. A port
        closed at once may be handed straight to the next download, which would then
        meet a late DATA packet of this transfer (a server still retransmitting). Seen at
        10,000 phones: a missing <mac>.boot "arrived" as another file's bytes."""
        self.closed = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self._linger_call = self.clock.callLater(self.linger_s, self._close)
        self._report(None)

    def _after_finish(self, datagram: bytes, addr) -> None:
        self._linger_call.reset(self.linger_s)  # someone still sends here: hold the port longer
        try:
            step = self.session.after_finish(datagram, addr)
        except Exception:
            return
        self._send(step)

    def cancel(self, _deferred) -> None:
        self._close()


def _bind_address(host: str) -> str:
    ip = parse_ip(host)
    if ip is None:
        raise ValueError(f"{host!r} does not appear to be an IPv4 or IPv6 address")
    if ip.version == 6:
        return "::1" if ip.is_loopback else "::"
    return "127.0.0.1" if ip.is_loopback else "0.0.0.0"


def tftp_get(
    reactor,
    host: str,
    port: int,
    filename: str,
    *,
    blksize: int | None = None,
    tsize: bool = False,
    timeout_s: float = 1.0,
    max_retransmits: int = 5,
    backoff: float = 1.0,
    max_timeout_s: float | None = None,
    bind_host: str | None = None,
    clock=None,
    linger_s: float = 0.0,
    port_wait_s: float = PORT_WAIT_S,
) -> defer.Deferred:
    """Download ``filename`` from ``host:port``; the Deferred fires with its bytes.

    Fails with TftpNotFound / TftpError (an ERROR packet, or a protocol violation) or
    TftpTimeout. ``host`` must be an IP address (phones get theirs from DHCP).
    ``bind_host`` defaults to the loopback address of host's family when host is
    loopback, else the wildcard. ``clock`` defaults to ``reactor`` (tests pass a
    ``task.Clock``). Cancelling the Deferred closes the socket. ``linger_s`` > 0 keeps
    the finished transfer's port bound until nothing has arrived at it for that long,
    so it is not reused while a server may still send to it. ``backoff`` > 1 makes each
    retransmission of a packet wait that much longer than the last (RFC 1123 4.2.3.2),
    up to ``max_timeout_s``. While no local port is free, binding is retried for up to
    ``port_wait_s`` before the download fails.
    """
    return _run(reactor, "tftp_get", host, lambda: TftpReadSession(
        (host, port), filename, blksize=blksize, tsize=tsize, timeout_s=timeout_s, max_retransmits=max_retransmits,
        backoff=backoff, max_timeout_s=max_timeout_s,
    ), clock, linger_s, bind_host, port_wait_s)


def tftp_put(
    reactor,
    host: str,
    port: int,
    filename: str,
    data: bytes,
    *,
    blksize: int | None = None,
    tsize: bool = False,
    timeout_s: float = 1.0,
    max_retransmits: int = 5,
    backoff: float = 1.0,
    max_timeout_s: float | None = None,
    bind_host: str | None = None,
    clock=None,
    linger_s: float = 0.0,
    port_wait_s: float = PORT_WAIT_S,
) -> defer.Deferred:
    """Upload ``data`` as ``filename`` to ``host:port`` (a WRQ, octet mode); the Deferred
    fires with the number of bytes sent once the server acknowledged the last block.

    ``tsize`` announces the size (RFC 2349; a server may refuse it with ERROR 3). Fails,
    and the other arguments behave, as for ``tftp_get``.
    """
    return _run(reactor, "tftp_put", host, lambda: TftpWriteSession(
        (host, port), filename, data, blksize=blksize, tsize=tsize, timeout_s=timeout_s,
        max_retransmits=max_retransmits, backoff=backoff, max_timeout_s=max_timeout_s,
    ), clock, linger_s, bind_host, port_wait_s)


def _run(reactor, caller: str, host: str, make_session, clock, linger_s: float,
         bind_host: str | None, port_wait_s: float) -> defer.Deferred:
    """Start the session ``make_session()`` builds on a fresh UDP socket; the Deferred
    fires with its result (a bad argument: fails with ValueError, nothing opened)."""
    if not (isIPAddress(host) or isIPv6Address(host)):
        return defer.fail(ValueError(f"{caller} needs an IP address, got {host!r}"))
    try:
        session = make_session()
    except ValueError as exc:
        return defer.fail(exc)
    protocol = None

    def cancel(d):
        if protocol is not None:
            protocol.cancel(d)

    clock = clock if clock is not None else reactor
    result: defer.Deferred = defer.Deferred(cancel)
    protocol = _SessionProtocol(session, clock, result, linger_s)
    local = bind_host or _bind_address(session.server[0])
    give_up_at = clock.seconds() + port_wait_s

    def bind(wait: float) -> None:
        protocol._bind_retry = None
        if protocol.closed:  # cancelled while waiting for a port
            return
        try:
            if ":" in local:  # bind_client is IPv4-only
                protocol.port = reactor.listenUDP(0, protocol, interface=local, maxPacketSize=MAX_DATAGRAM)
            else:
                # No SO_REUSEADDR: with it, Linux may auto-bind two sockets to one ephemeral
                # port, and two phones' transfers would share a TID.
                protocol.port = bind_client(reactor, protocol, local, max_packet=MAX_DATAGRAM)
        except Exception as exc:  # CannotListenError / OSError: out of file descriptors or ports
            if _errno_of(exc) in _NO_PORT_ERRNOS and clock.seconds() + wait <= give_up_at:
                protocol._bind_retry = clock.callLater(wait, bind, min(wait * 2, 2.0))
                return
            if not result.called:
                result.errback(exc)
            return
        protocol.apply(session.start())

    bind(0.05)
    return result


def _errno_of(exc: Exception) -> int | None:
    code = getattr(exc, "errno", None)
    if code is None:  # CannotListenError wraps the socket error
        code = getattr(getattr(exc, "socketError", None), "errno", None)
    return code

"""A TFTP download client for virtual phones (RFC 1350 receive side, options RFC 2347-2349).

``TftpReadSession`` is the protocol without I/O: it takes datagrams and timer expiries
and returns ``Step``s. ``tftp_get`` runs one on its own UDP socket in the reactor and
returns a Deferred, so thousands of phones can download at once in one process.
"""

from __future__ import annotations

import ipaddress

from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.protocol import DatagramProtocol

from labsim.services.udp import bind_udp
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


class TftpReadSession:
    """The receiving side of one RRQ.

    Locks on to the port of the first reply from the server's host (the server's TID)
    and answers any other sender with ERROR 5 without disturbing the transfer. On
    timeout it resends its last packet (RRQ, ACK 0 or the last ACK) up to
    ``max_retransmits`` times, then fails with TftpTimeout. When it is finished,
    ``result`` holds the file or ``error`` the exception.
    """

    def __init__(
        self,
        server: tuple[str, int],
        filename: str,
        *,
        blksize: int | None = None,
        tsize: bool = False,
        timeout_s: float = 1.0,
        max_retransmits: int = 5,
    ):
        if blksize is not None and not wire.MIN_BLKSIZE <= blksize <= wire.MAX_BLKSIZE:
            raise ValueError(f"blksize must be {wire.MIN_BLKSIZE}..{wire.MAX_BLKSIZE}")
        self.server = (server[0], server[1])
        self._server_ip = ipaddress.ip_address(server[0])
        self.filename = filename
        self.timeout_s = timeout_s
        self.max_retransmits = max_retransmits
        self.options: dict[str, str] = {}
        if blksize is not None:
            self.options["blksize"] = str(blksize)
        if tsize:
            self.options["tsize"] = "0"
        self.blksize = wire.DEFAULT_BLKSIZE  # until an OACK says otherwise
        self.tsize: int | None = None
        self.tid: tuple[str, int] | None = None
        self._expected = 1  # next DATA block (full count; the wire carries it modulo 2**16)
        self._chunks: list[bytes] = []
        self._last: tuple[bytes, tuple] | None = None  # what a timeout resends
        self._retries = 0
        self.retransmits = 0
        self.finished = False
        self.result: bytes | None = None
        self.error: Exception | None = None

    def start(self) -> Step:
        return self._send(wire.encode_rrq(self.filename, self.options), self.server)

    def datagram_received(self, datagram: bytes, addr) -> Step:
        if self.finished:
            return NO_STEP
        addr = (addr[0], addr[1])
        opcode = wire.opcode_of(datagram)
        if self.tid is None:
            if not self._from_server_host(addr[0]):
                return self._stranger(opcode, addr)
            self.tid = addr  # RFC 1350: the first reply's port is the server's TID
        elif addr != self.tid:
            return self._stranger(opcode, addr)

        if opcode == wire.DATA and len(datagram) >= 4:
            return self._on_data((datagram[2] << 8) | datagram[3], datagram[4:])
        if opcode == wire.OACK:
            return self._on_oack(datagram)
        if opcode == wire.ERROR:
            try:
                code, message = wire.decode_error(datagram)
            except wire.TftpDecodeError:
                return NO_STEP
            return self._fail(error_from_packet(code, message))
        if opcode is None or len(datagram) < 4:
            return NO_STEP  # too short to be anything: drop
        return self._abort(wire.ERR_ILLEGAL_OPERATION, f"unexpected opcode {opcode}")

    def timer_expired(self) -> Step:
        if self.finished or self._last is None:
            return NO_STEP
        if self._retries >= self.max_retransmits:
            return self._fail(TftpTimeout(f"no answer from {self.server[0]}:{self.server[1]} for {self.filename!r}"))
        self._retries += 1
        self.retransmits += 1
        return Step(send=(self._last,), timer=self.timeout_s)

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
        if not self.options:
            return self._abort(wire.ERR_OPTION_REFUSED, "OACK for a request without options")
        if self._last is not None and self._last[0] == wire.encode_ack(0):
            # The server resent its OACK: our ACK 0 was lost.
            return Step(send=(self._last,))
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
        return self._send(wire.encode_ack(0), self.tid)

    def _complete(self, final_ack: bytes) -> Step:
        data = b"".join(self._chunks)
        self._chunks = []
        if self.tsize is not None and len(data) != self.tsize:
            return self._fail(TftpError(None, f"got {len(data)} bytes, server announced tsize {self.tsize}"), final_ack)
        self.finished = True
        self.result = data
        self._last = None
        # No dallying for a lost final ACK: on loopback it is not lost, and a socket kept
        # open per finished download costs more than the server's capped retransmissions.
        return Step(send=((final_ack, self.tid),), done=True)

    def _from_server_host(self, host: str) -> bool:
        if host == self.server[0]:
            return True
        try:
            return ipaddress.ip_address(host) == self._server_ip
        except ValueError:
            return False

    def _stranger(self, opcode: int | None, addr: tuple) -> Step:
        if opcode == wire.ERROR:
            return NO_STEP  # never answer an ERROR with an ERROR
        return Step(send=((wire.encode_error(wire.ERR_UNKNOWN_TID, "Unknown transfer ID"), addr),))

    def _send(self, packet: bytes, addr: tuple) -> Step:
        self._last = (packet, addr)
        self._retries = 0
        return Step(send=(self._last,), timer=self.timeout_s)

    def _abort(self, code: int, message: str) -> Step:
        """Tell the server why we stop, then fail."""
        return self._fail(TftpError(None, message), wire.encode_error(code, message))

    def _fail(self, error: Exception, last_packet: bytes | None = None) -> Step:
        self.finished = True
        self.error = error
        self._last = None
        self._chunks = []
        if last_packet is not None and self.tid is not None:
            return Step(send=((last_packet, self.tid),), done=True)
        return Step(done=True)


class _ReadProtocol(DatagramProtocol):
    noisy = False  # no "Starting protocol" log line per download

    def __init__(self, session: TftpReadSession, clock, result: defer.Deferred, linger_s: float = 0.0):
        self.session = session
        self.clock = clock
        self.result = result
        self.linger_s = linger_s
        self.port = None
        self.timer = None
        self.closed = False

    def datagramReceived(self, datagram: bytes, addr) -> None:
        try:
            step = self.session.datagram_received(datagram, addr)
        except Exception as exc:  # a bug in the session must still end the download
            self.session.finished = True
            self.session.error = exc
            step = Step(done=True)
        self.apply(step)

    def _timer_fired(self) -> None:
        self.timer = None
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
        for packet, addr in step.send:
            try:
                # The socket's own sendto, not port.write: write() re-parses the address
                # on every call, and ours were validated once in tftp_get or came from recvfrom.
                self.port.getHandle().sendto(packet, addr)
            except OSError:
                pass  # a lost datagram: the retransmission timer covers it
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

    def _report(self, _) -> None:
        if self.result.called:  # cancelled meanwhile
            return
        if self.session.error is not None:
            self.result.errback(self.session.error)
        else:
            self.result.callback(self.session.result)

    def _close(self) -> defer.Deferred:
        if self.closed:
            return defer.succeed(None)
        self.closed = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        # The Deferred fires once the socket is really closed, so a caller that counts
        # file descriptors (or starts the next of thousands of downloads) sees it gone.
        return defer.maybeDeferred(self.port.stopListening)

    def _linger(self) -> None:
        """Report now, but hold the port a while, deaf, before closing it. A port closed
        at once may be handed straight to the next download, which would then take a
        late DATA packet of this transfer (a server still retransmitting) for its own
        first block: RFC 1350 clients lock onto whatever TID answers first. Seen at
        10,000 phones: a missing <mac>.boot "arrived" as the phone's own .cfg, a DATA
        packet the server was still retransmitting from the cycle before the reboot."""
        self.closed = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.clock.callLater(self.linger_s, self.port.stopListening)
        self._report(None)

    def cancel(self, _deferred) -> None:
        self._close()


def _bind_address(host: str) -> str:
    ip = ipaddress.ip_address(host)
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
    bind_host: str | None = None,
    clock=None,
    linger_s: float = 0.0,
) -> defer.Deferred:
    """Download ``filename`` from ``host:port``; the Deferred fires with its bytes.

    Fails with TftpNotFound / TftpError (an ERROR packet, or a protocol violation) or
    TftpTimeout. ``host`` must be an IP address (phones get theirs from DHCP).
    ``bind_host`` defaults to the loopback address of host's family when host is
    loopback, else the wildcard. ``clock`` defaults to ``reactor`` (tests pass a
    ``task.Clock``). Cancelling the Deferred closes the socket. ``linger_s`` > 0 keeps
    the finished transfer's port bound (and deaf) that long, so it is not reused at once.
    """
    if not (isIPAddress(host) or isIPv6Address(host)):
        return defer.fail(ValueError(f"tftp_get needs an IP address, got {host!r}"))
    try:
        session = TftpReadSession(
            (host, port), filename, blksize=blksize, tsize=tsize, timeout_s=timeout_s, max_retransmits=max_retransmits
        )
    except ValueError as exc:
        return defer.fail(exc)
    protocol = None

    def cancel(d):
        if protocol is not None:
            protocol.cancel(d)

    result: defer.Deferred = defer.Deferred(cancel)
    protocol = _ReadProtocol(session, clock if clock is not None else reactor, result, linger_s)
    local = bind_host or _bind_address(host)
    try:
        if ":" in local:  # bind_udp is IPv4-only
            protocol.port = reactor.listenUDP(0, protocol, interface=local, maxPacketSize=MAX_DATAGRAM)
        else:
            # No SO_REUSEADDR: with it, Linux may auto-bind two sockets to one ephemeral
            # port, and two phones' downloads would share a TID.
            protocol.port = bind_udp(reactor, protocol, local, 0, reuse_addr=False, max_packet=MAX_DATAGRAM)
    except Exception as exc:  # CannotListenError / OSError: out of file descriptors or ports
        return defer.fail(exc)
    protocol.apply(session.start())
    return result

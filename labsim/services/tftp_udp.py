"""The Twisted edge of labsim's TFTP server: sockets and timers around labsim/services/tftp.py.

One listening socket takes requests; every transfer gets its own socket on an
ephemeral port of the same host (its TID, RFC 1350 section 4), closed when the
transfer ends. Time comes from an injected ``IReactorTime`` (``clock``, default the
reactor) so tests can drive retransmissions with ``twisted.internet.task.Clock``.

Sockets come from labsim/services/udp.py's ``bind_udp`` (IPv4) with datagrams up to
65535 bytes: Twisted's default of 8192 silently truncates (DESIGN.md). The server
only receives small packets, but the same limit bites anyone who copies this for a
client. Transfer sockets are bound WITHOUT SO_REUSEADDR: on Linux two sockets that
both set it can be auto-bound to the same ephemeral port, i.e. two transfers would
share a TID. IPv6 hosts (which bind_udp does not do) go through ``listenUDP``.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol

from labsim.services.tftp import ReadTransfer, Reject, TftpRequestHandler, TftpServerConfig, new_stats
from labsim.services.udp import bind_udp
from labsim.wire.tftp import Step

MAX_DATAGRAM = 65535


def open_udp(reactor, protocol: DatagramProtocol, host: str, port: int, *, reuse_addr: bool):
    """A UDP port for ``protocol`` on ``host:port`` that takes datagrams of any size."""
    if ":" in host:
        return reactor.listenUDP(port, protocol, interface=host, maxPacketSize=MAX_DATAGRAM)
    return bind_udp(reactor, protocol, host, port, reuse_addr=reuse_addr, max_packet=MAX_DATAGRAM)


class _Quiet(DatagramProtocol):
    # AbstractDatagramProtocol logs "Starting protocol ..." for every socket when noisy.
    noisy = False


class _ListenProtocol(_Quiet):
    def __init__(self, server: "TftpServerHandle"):
        self.server = server

    def datagramReceived(self, datagram: bytes, addr) -> None:
        link = self.server.link
        if link is not None:  # faults injected by the scenario (labsim.faults)
            link.carry("in", datagram, lambda data: self._handle(data, addr))
        else:
            self._handle(datagram, addr)

    def _handle(self, datagram: bytes, addr) -> None:
        try:
            self.server._request(datagram, addr)
        except Exception:
            self.server.stats["internal_errors"] += 1


class _TransferProtocol(_Quiet):
    """Runs one ReadTransfer: applies its Steps to a socket and a timer."""

    def __init__(self, server: "TftpServerHandle", transfer: ReadTransfer):
        self.server = server
        self.transfer = transfer
        self.port = None
        self.sendto = None  # the socket's own sendto, set once the port is open
        self.timer = None
        self.closed = False

    def datagramReceived(self, datagram: bytes, addr) -> None:
        link = self.server.link
        if link is not None:
            link.carry("in", datagram, lambda data: self._handle(data, addr))
        else:
            self._handle(datagram, addr)

    def _handle(self, datagram: bytes, addr) -> None:
        if self.closed:
            return
        try:
            step = self.transfer.datagram_received(datagram, addr)
        except Exception:
            self.server.stats["internal_errors"] += 1
            step = Step(done=True)
        self.apply(step)

    def _timer_fired(self) -> None:
        self.timer = None
        try:
            step = self.transfer.timer_expired()
        except Exception:
            self.server.stats["internal_errors"] += 1
            step = Step(done=True)
        self.apply(step)

    def apply(self, step: Step) -> None:
        if self.closed:
            return
        link = self.server.link
        for packet, addr in step.send:
            if link is not None:
                link.carry("out", packet, lambda data, addr=addr: self._send(data, addr))
            else:
                self._send(packet, addr)
        if step.done:
            self.close()
        elif step.timer is not None:
            if self.timer is not None and self.timer.active():
                self.timer.reset(step.timer)
            else:
                self.timer = self.server.clock.callLater(step.timer, self._timer_fired)

    def _send(self, packet: bytes, addr) -> None:
        if self.sendto is None:
            return
        try:
            self.sendto(packet, addr)
        except (OSError, ValueError):  # a full socket buffer, an unreachable peer, a closed socket
            self.server.stats["send_errors"] += 1

    def close(self) -> defer.Deferred:
        if self.closed:
            return defer.succeed(None)
        self.closed = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.server._transfer_closed(self)
        return defer.maybeDeferred(self.port.stopListening)


class TftpServerHandle:
    """A running server. ``port`` is the bound port (useful when started on port 0)."""

    def __init__(self, reactor, config: TftpServerConfig, host: str, *, clock=None):
        self.reactor = reactor
        self.clock = clock if clock is not None else reactor
        self.config = config
        self.host = host
        self.stats = new_stats()
        self.handler = TftpRequestHandler(config, self.stats)
        self.port = 0
        self._listening = None
        self._transfers: set[_TransferProtocol] = set()
        # Faults injected by the scenario (a labsim.faults.FaultyLink), or None.
        self.link = None
        # Optional observer (labsim serve's live log): called with (datagram, addr,
        # outcome) for every request on the listening port. None: no work per request.
        self.on_event = None

    def _listen(self, port: int) -> None:
        # SO_REUSEADDR only on a fixed port, so a restarted server can rebind at once; on
        # port 0 it could land on a port another REUSEADDR socket already holds.
        self._listening = open_udp(self.reactor, _ListenProtocol(self), self.host, port, reuse_addr=port != 0)
        self.port = self._listening.getHost().port

    def _request(self, datagram: bytes, addr) -> None:
        outcome = self.handler.handle(datagram, addr)
        if self.on_event is not None:
            self.on_event(datagram, addr, outcome)
        if outcome is None:
            return
        if isinstance(outcome, Reject):
            self._reject(outcome.packet, addr)
            return
        self._run(outcome)

    def _open_tid(self, protocol: DatagramProtocol):
        """A socket on a fresh ephemeral port of our host: a new TID."""
        try:
            return open_udp(self.reactor, protocol, self.host, 0, reuse_addr=False)
        except (CannotListenError, OSError):  # out of descriptors or ephemeral ports
            self.stats["socket_errors"] += 1
            return None

    def _reject(self, packet: bytes, addr) -> None:
        # Errors go out from a new TID too, as tftp-hpa does: a client that locks on to
        # the first reply's port then sees the same behaviour for errors and for data.
        port = self._open_tid(_Quiet())
        if port is None:
            return
        try:
            port.write(packet, tuple(addr[:2]))
        except Exception:
            self.stats["send_errors"] += 1
        port.stopListening()

    def _run(self, transfer: ReadTransfer) -> None:
        protocol = _TransferProtocol(self, transfer)
        port = self._open_tid(protocol)
        if port is None:
            self.stats["transfers_failed"] += 1
            return
        protocol.port = port
        # DATA goes out through the socket's sendto rather than port.write: write()
        # re-validates the address family on every call (3 address parses, ~3 us of the
        # ~20 us a packet costs), and our addresses come from recvfrom or the request.
        protocol.sendto = port.getHandle().sendto
        self._transfers.add(protocol)
        self.stats["active"] = len(self._transfers)
        protocol.apply(transfer.start())

    def _transfer_closed(self, protocol: _TransferProtocol) -> None:
        self._transfers.discard(protocol)
        self.stats["active"] = len(self._transfers)

    def stop(self) -> defer.Deferred:
        """Stop listening and abandon every running transfer; fires when all sockets are closed."""
        closing = [protocol.close() for protocol in list(self._transfers)]
        if self._listening is not None:
            closing.append(defer.maybeDeferred(self._listening.stopListening))
            self._listening = None
        return defer.DeferredList(closing).addCallback(lambda _: None)


def start_tftp_server(
    reactor, config: TftpServerConfig, host: str = "127.0.0.1", port: int = 6969, *, clock=None
) -> TftpServerHandle:
    """Start serving ``config.root`` on ``host:port`` (port 0: any free port; see ``.port``)."""
    server = TftpServerHandle(reactor, config, host, clock=clock)
    server._listen(port)
    return server

"""The Twisted edge of labsim's TFTP server: sockets and timers around labsim/services/tftp.py.

One listening socket takes requests; every transfer gets its own socket on an
ephemeral port of the same host (its TID, RFC 1350 section 4), closed when the
transfer ends. Time comes from an injected ``IReactorTime`` (``clock``, default the
reactor) so tests can drive retransmissions with ``twisted.internet.task.Clock``.

Why plain sockets rather than Twisted UDP ports (measured on this 2-core machine, the
benchmark's load: 4 KB downloads, 100 in flight; see docs/performance.md):

- Opening and closing a transfer socket through ``bind_udp`` (a socket handed to
  ``adoptDatagramPort``, which duplicates it) or ``listenUDP`` cost 45-50 us; a
  non-blocking socket bound and registered with an epoll set, ~11 us.
- Every datagram a Twisted port receives passes through the reactor's logging-context
  wrappers (``callWithLogger`` ...), several us each. Here all of one server's sockets
  sit in ONE ``select.epoll`` set whose descriptor the reactor watches
  (``_SocketSet``, an ``IReadDescriptor``): one reactor callback per wake-up serves
  every socket that has datagrams, and each socket is read until it would block.
- Sends go straight to the socket's ``sendto`` (``port.write`` re-parses the address
  on every call; ours come from ``recvfrom`` or the request).
- One retransmission timer per transfer, never reset per packet: each send only
  records its deadline, and a timer that fires early re-arms itself for the rest.

Datagrams are read with a 65535-byte buffer: Twisted's default of 8192 silently
truncates a large blksize (DESIGN.md). Transfer sockets are bound WITHOUT SO_REUSEADDR:
on Linux two sockets that both set it can be auto-bound to the same ephemeral port,
i.e. two transfers would share a TID. Linux only (epoll), as the rest of labsim.

Hooks, each costing a None check when unused: ``TftpServerHandle.link`` (faults from
labsim.faults: every datagram in and out of the server passes through
``link.carry``) and ``TftpServerHandle.on_event`` (an observer of every request).
"""

from __future__ import annotations

import select
import socket

from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReadDescriptor
from zope.interface import implementer

from labsim.services.tftp import Reject, TftpRequestHandler, TftpServerConfig, new_stats
from labsim.wire.tftp import Step

MAX_DATAGRAM = 65535
# Datagrams read from one socket per wake-up before moving on to the next: bounds how
# long one busy socket can hold the others (and the reactor) up.
READ_BATCH = 64
DONE = Step(done=True)


@implementer(IReadDescriptor)
class _SocketSet:
    """All the sockets of one server behind one epoll descriptor the reactor reads.

    Each registered socket has a reader whose ``read_ready()`` is called when the socket
    has datagrams waiting. The set is level-triggered like the reactor's own epoll: a
    socket left unread (READ_BATCH reached) is reported again on the next pass.
    """

    def __init__(self, reactor, stats: dict[str, int]):
        self.reactor = reactor
        self.stats = stats
        self._epoll = select.epoll()
        self._readers: dict[int, object] = {}
        reactor.addReader(self)

    def add(self, sock: socket.socket, reader) -> None:
        fd = sock.fileno()
        self._epoll.register(fd, select.EPOLLIN)
        self._readers[fd] = reader.read_ready

    def discard(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        if self._readers.pop(fd, None) is not None:
            self._epoll.unregister(fd)

    def close(self) -> None:
        if not self._epoll.closed:
            self.reactor.removeReader(self)
            self._epoll.close()
        self._readers.clear()

    # -- IReadDescriptor

    def fileno(self) -> int:
        return self._epoll.fileno()  # -1 once closed: the reactor then drops us

    def doRead(self) -> None:
        readers = self._readers
        for fd, _events in self._epoll.poll(0):
            read_ready = readers.get(fd)
            if read_ready is None:  # closed earlier in this same pass
                continue
            try:
                read_ready()
            except Exception:  # never let one transfer's bug unregister the whole set
                self.stats["internal_errors"] += 1

    def connectionLost(self, reason) -> None:
        pass

    def logPrefix(self) -> str:
        return "tftp"


def _udp_socket(family: int, host: str, port: int, *, reuse_addr: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        if reuse_addr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class _ListenProtocol:
    """The server port: every request goes to the handler (through the fault link if set)."""

    def __init__(self, server: "TftpServerHandle", sock: socket.socket):
        self.server = server
        self.sock = sock

    def read_ready(self) -> None:
        recvfrom = self.sock.recvfrom
        for _ in range(READ_BATCH):
            try:
                datagram, addr = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error queued on the socket: nothing to read
                return
            self.datagramReceived(datagram, addr)

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


class _TransferProtocol:
    """Runs one ReadTransfer or WriteTransfer: applies its Steps to a socket and a timer."""

    def __init__(self, server: "TftpServerHandle", transfer):
        self.server = server
        self.transfer = transfer
        self.sock: socket.socket | None = None
        self.sendto = None  # the socket's own sendto and recvfrom, set once it is open
        self.recvfrom = None
        self._seconds = server.clock.seconds
        self.timer = None  # the one pending IDelayedCall, or None
        self._timer_at = 0.0  # when it fires
        self._deadline = 0.0  # when the transfer really times out (moved by every send)
        self.closed = False

    def read_ready(self) -> None:
        # ONE datagram per wake-up: a transfer socket rarely holds more than one (lockstep,
        # or a window's single ACK), and reading on until EAGAIN cost a failed recvfrom
        # and a caught exception per ACK. More left waiting are reported on the next pass.
        try:
            datagram, addr = self.recvfrom(MAX_DATAGRAM)
        except OSError:  # EAGAIN (someone else's readiness), or an ICMP error queued
            return
        if self.server.link is not None:
            self.datagramReceived(datagram, addr)
            return
        # _handle, inlined: this is the path every ACK takes.
        try:
            step = self.transfer.datagram_received(datagram, addr)
        except Exception:
            self.server.stats["internal_errors"] += 1
            step = DONE
        self.apply(step)

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
            step = DONE
        self.apply(step)

    def _timer_fired(self) -> None:
        self.timer = None
        clock = self.server.clock
        now = clock.seconds()
        if now < self._deadline:
            # Packets went out since this timer was armed: their timeout runs from then.
            self._timer_at = self._deadline
            self.timer = clock.callLater(self._deadline - now, self._timer_fired)
            return
        try:
            step = self.transfer.timer_expired()
        except Exception:
            self.server.stats["internal_errors"] += 1
            step = DONE
        self.apply(step)

    def apply(self, step: Step) -> None:
        if self.closed:
            return
        send, timer, done = step
        if send:
            link = self.server.link
            if link is not None:
                for packet, addr in send:
                    link.carry("out", packet, lambda data, addr=addr: self._send(data, addr))
            else:
                sendto = self.sendto
                for packet, addr in send:
                    try:
                        sendto(packet, addr)
                    except (OSError, ValueError):  # a full socket buffer, an unreachable peer
                        self.server.stats["send_errors"] += 1
        if done:
            self.close()
        elif timer is not None:
            deadline = self._seconds() + timer
            self._deadline = deadline
            if self.timer is None:
                self._timer_at = deadline
                self.timer = self.server.clock.callLater(timer, self._timer_fired)
            elif deadline < self._timer_at:  # a shorter timeout than the pending one
                self._timer_at = deadline
                self.timer.reset(timer)

    def _send(self, packet: bytes, addr) -> None:
        if self.closed:  # a delayed packet (fault link) of a transfer that has ended
            return
        try:
            self.sendto(packet, addr)
        except (OSError, ValueError):
            self.server.stats["send_errors"] += 1

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.server._transfer_closed(self)


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
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sockets: _SocketSet | None = None
        self._listening: socket.socket | None = None
        self._transfers: set[_TransferProtocol] = set()
        # Faults injected by the scenario (a labsim.faults.FaultyLink), or None.
        self.link = None
        # Optional observer (labsim serve's live log): called with (datagram, addr,
        # outcome) for every request on the listening port. None: no work per request.
        self.on_event = None

    def _listen(self, port: int) -> None:
        # SO_REUSEADDR only on a fixed port, so a restarted server can rebind at once; on
        # port 0 it could land on a port another REUSEADDR socket already holds.
        try:
            sock = _udp_socket(self._family, self.host, port, reuse_addr=port != 0)
        except OSError as exc:
            raise CannotListenError(self.host, port, exc) from exc
        self._sockets = _SocketSet(self.reactor, self.stats)
        self._listening = sock
        self._sockets.add(sock, _ListenProtocol(self, sock))
        self.port = sock.getsockname()[1]

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

    def _open_tid(self) -> socket.socket | None:
        """A socket on a fresh ephemeral port of our host: a new TID."""
        try:
            return _udp_socket(self._family, self.host, 0, reuse_addr=False)
        except OSError:  # out of descriptors or ephemeral ports
            self.stats["socket_errors"] += 1
            return None

    def _reject(self, packet: bytes, addr) -> None:
        # Errors go out from a new TID too, as tftp-hpa does: a client that locks on to
        # the first reply's port then sees the same behaviour for errors and for data.
        sock = self._open_tid()
        if sock is None:
            return
        try:
            sock.sendto(packet, (addr[0], addr[1]))
        except (OSError, ValueError):
            self.stats["send_errors"] += 1
        finally:
            sock.close()

    def _run(self, transfer) -> None:
        if self._sockets is None:  # stopped meanwhile (a request delayed by the fault link)
            return
        sock = self._open_tid()
        if sock is None:
            self.stats["transfers_failed"] += 1
            return
        protocol = _TransferProtocol(self, transfer)
        protocol.sock = sock
        protocol.sendto = sock.sendto
        protocol.recvfrom = sock.recvfrom
        self._sockets.add(sock, protocol)
        self._transfers.add(protocol)
        self.stats["active"] = len(self._transfers)
        protocol.apply(transfer.start())

    def _transfer_closed(self, protocol: _TransferProtocol) -> None:
        self._transfers.discard(protocol)
        self.stats["active"] = len(self._transfers)
        sock = protocol.sock
        if sock is not None:
            if self._sockets is not None:
                self._sockets.discard(sock)
            sock.close()

    def stop(self):
        """Stop listening and abandon every running transfer; fires when all sockets are closed."""
        from twisted.internet import defer

        for protocol in list(self._transfers):
            protocol.close()
        if self._sockets is not None:
            self._sockets.discard(self._listening)
            self._listening.close()
            self._sockets.close()
            self._sockets = None
            self._listening = None
        return defer.succeed(None)


def start_tftp_server(
    reactor, config: TftpServerConfig, host: str = "127.0.0.1", port: int = 6969, *, clock=None
) -> TftpServerHandle:
    """Start serving ``config.root`` on ``host:port`` (port 0: any free port; see ``.port``)."""
    server = TftpServerHandle(reactor, config, host, clock=clock)
    server._listen(port)
    return server

"""The Twisted edge of labsim's TFTP server: sockets and timers around labsim/services/tftp.py.

One listening socket takes requests. Transfers are answered from a small pool of
**TID sockets** (RFC 1350 section 4: the server's end of a transfer is a port other
than the listening one), each carrying many transfers told apart by the client's
address and port, the other half of the connection's TID pair. Time comes from an
injected ``IReactorTime`` (``clock``, default the reactor) so tests can drive
retransmissions with ``twisted.internet.task.Clock``.

Why a shared pool rather than a socket per transfer:

- Descriptors. A boot storm of thousands of phones runs in the same process as the
  phones' own client sockets; 3,000 transfers in flight took 3,000 descriptors under a
  hard limit of 20,000. The pool takes TID_SOCKETS.
- Cost. socket + bind + two epoll_ctl + close per transfer were ~11 us of system time
  plus the Python around them (docs/performance.md).
- TIDs still behave as RFC 1350 asks: consecutive transfers get different ports (the
  pool is taken round-robin), and a client address never gets a pool socket that it is
  using or used within QUIET_S(config) (its transfer's whole retransmission window):
  a late packet of an ended transfer can never reach a new transfer of the same client
  port. Such late packets are dropped quietly (``late_packets``), as the closed socket
  of a per-transfer design would have; any other stranger gets ERROR 5.

How the sockets are read (measured on this 2-core machine, the benchmark's load: 4 KB
downloads, 100 in flight; see docs/performance.md):

- Every datagram a Twisted port receives passes through the reactor's logging-context
  wrappers (``callWithLogger`` ...), several us each. Here all of one server's sockets
  sit in ONE ``select.epoll`` set whose descriptor the reactor watches
  (``_SocketSet``, an ``IReadDescriptor``): one reactor callback per wake-up serves
  every socket that has datagrams, and each socket is read until it would block (or
  READ_BATCH).
- Sends go straight to the socket's ``sendto`` (``port.write`` re-parses the address
  on every call; ours come from ``recvfrom`` or the request).
- One retransmission timer per transfer, never reset per packet: each send only
  records its deadline, and a timer that fires early re-arms itself for the rest.

Datagrams are read with a 65535-byte buffer: Twisted's default of 8192 silently
truncates a large blksize (DESIGN.md). TID sockets are bound WITHOUT SO_REUSEADDR: on
Linux two sockets that both set it can be auto-bound to the same ephemeral port. Linux
only (epoll), as the rest of labsim.

Hooks, each costing a None check when unused: ``TftpServerHandle.link`` (faults from
labsim.faults: every datagram in and out of the server passes through
``link.carry``) and ``TftpServerHandle.on_event`` (an observer of every request).
"""

from __future__ import annotations

import os
import select
import socket

from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReadDescriptor
from zope.interface import implementer

from labsim.net.reuseport import shared_socket
from labsim.net.udp import refuse_a_shared_port, set_receive_buffer
from labsim.services.disk_store import DiskFolder
from labsim.services.tftp import (
    Reject,
    TftpRequestHandler,
    TftpServerConfig,
    answer_stranger,
    name_parts,
    new_stats,
)
from labsim.wire.tftp import Step

MAX_DATAGRAM = 65535
# Datagrams read from one socket per wake-up before moving on to the next: bounds how
# long one busy socket can hold the others (and the reactor) up.
READ_BATCH = 64
# Requests read from the listening socket per wake-up. Far more: in a boot storm one
# reactor turn of the whole process (phones, HTTP, DHCP) lasts up to a second or two, so
# 64 per turn let no more than ~64 downloads a second start while the request queue
# filled to its 4 MiB and overflowed (docs/performance.md, "No false failures").
# Twisted's own UDP ports read up to 256 KB per turn, about as many small datagrams.
LISTEN_READ_BATCH = 1024
DONE = Step(done=True)
# Transfer sockets per server. Several, so consecutive transfers get different ports
# (RFC 1350 wants TIDs that do not repeat in immediate succession) and one client's
# repeated requests always find a socket it has not used lately.
TID_SOCKETS = 8
# A UDP socket's default receive queue (~200 KB) holds a few hundred datagrams: a boot
# storm's burst of requests overflows it, and a TID socket carries hundreds of transfers
# (and uploads' large DATA). Both kinds ask for more.
RECEIVE_BUFFER = 4 << 20


class DiskTftpRequestHandler(TftpRequestHandler):
    """The request handler serving ``config.root`` from disk, with uploads (when on) in
    ``root/upload_dir``, or in ``config.upload_root`` when that is set."""

    def __init__(self, config: TftpServerConfig, stats: dict[str, int] | None = None):
        try:
            files = DiskFolder(config.root)
        except ValueError:
            raise ValueError(f"TFTP root {config.root!r} is not a directory") from None
        uploads = None
        if config.uploads:
            in_root = os.path.realpath(os.path.join(files.root_real, *name_parts(config.upload_dir)))
            if not in_root.startswith(files.root_real + os.sep):
                raise ValueError(f"upload_dir {config.upload_dir!r} must be a folder inside the TFTP root")
            os.makedirs(in_root, exist_ok=True)
            uploads = DiskFolder(config.upload_root or in_root, create=True)
        super().__init__(config, stats, files=files, uploads=uploads)


def quiet_s(config: TftpServerConfig) -> float:
    """How long a client address keeps away from the pool socket its transfer ended on:
    the whole retransmission window, after which its late packets are strangers."""
    return config.timeout_s * (config.max_retransmits + 1)


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
        for _ in range(LISTEN_READ_BATCH):
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


class _TidSocket:
    """One socket of the pool: the server's end of many transfers at once, each found by
    the client's address (the other half of its TID pair)."""

    def __init__(self, server: "TftpServerHandle", sock: socket.socket):
        self.server = server
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.transfers: dict[tuple, _TransferProtocol] = {}  # client address -> its transfer here
        # client address -> when it may be given this socket again; in end order, so
        # the expired ones are always at the front.
        self.quiet_until: dict[tuple, float] = {}

    def free_for(self, peer, now: float) -> bool:
        if peer in self.transfers:
            return False
        until = self.quiet_until.get(peer)
        return until is None or until <= now

    def transfer_ended(self, peer, now: float, quiet: float) -> None:
        self.transfers.pop(peer, None)
        quiet_until = self.quiet_until
        quiet_until.pop(peer, None)  # re-inserted at the back: the dict stays in end order
        quiet_until[peer] = now + quiet
        # Forget the oldest entry if it has expired: one out for each one in keeps the
        # dict at about the transfers that ended within one quiet period, with no sweep.
        oldest = next(iter(quiet_until))
        if quiet_until[oldest] <= now:
            del quiet_until[oldest]

    def read_ready(self) -> None:
        recvfrom = self.sock.recvfrom
        transfers = self.transfers
        server = self.server
        for _ in range(READ_BATCH):
            try:
                datagram, addr = recvfrom(MAX_DATAGRAM)
            except OSError:  # EAGAIN: all read; or an ICMP error queued on the socket
                return
            protocol = transfers.get(addr)
            if protocol is None:
                self._stranger(datagram, addr)
            elif server.link is not None:
                protocol.datagramReceived(datagram, addr)
            else:
                # _TransferProtocol._handle, inlined: this is the path every ACK takes.
                try:
                    step = protocol.transfer.datagram_received(datagram, addr)
                except Exception:
                    server.stats["internal_errors"] += 1
                    step = DONE
                protocol.apply(step)

    def _stranger(self, datagram: bytes, addr) -> None:
        stats = self.server.stats
        until = self.quiet_until.get(addr)
        if until is not None and until > self.server.clock.seconds():
            stats["late_packets"] += 1  # of a transfer that ended here: dropped
            return
        for packet, to in answer_stranger(datagram, addr, stats).send:
            try:
                self.sock.sendto(packet, to)
            except (OSError, ValueError):
                stats["send_errors"] += 1


class _TransferProtocol:
    """Runs one ReadTransfer or WriteTransfer: applies its Steps to a pool socket and a timer."""

    def __init__(self, server: "TftpServerHandle", transfer, tid: _TidSocket, peer):
        self.server = server
        self.transfer = transfer
        self.tid = tid
        self.peer = peer  # as recvfrom reports it: the key the transfer's datagrams are found by
        self.sendto = tid.sock.sendto
        self._seconds = server.clock.seconds
        self.timer = None  # the one pending IDelayedCall, or None
        self._timer_at = 0.0  # when it fires
        self._deadline = 0.0  # when the transfer really times out (moved by every send)
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
        # A reactor turn runs its due timers before it reads sockets: in a loaded process
        # this timer may fire late with the client's ACK already waiting on the socket.
        # Read it first, so the server's own lateness is not taken for a silent client.
        self.tid.read_ready()
        if self.closed or self.timer is not None or self._seconds() < self._deadline:
            return  # what was waiting moved the transfer on (or ended it)
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

    def __init__(self, reactor, config: TftpServerConfig, host: str, *, clock=None, share: str | None = None):
        self.reactor = reactor
        self.share = share  # the port shared with other processes (labsim.net.reuseport), or None
        self.clock = clock if clock is not None else reactor
        self.config = config
        self.host = host
        self.stats = new_stats()
        self.handler = DiskTftpRequestHandler(config, self.stats)
        self.port = 0
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sockets: _SocketSet | None = None
        self._listening: socket.socket | None = None
        self._pool: list[_TidSocket] = []
        self._next_tid = 0
        self._active = 0
        self._quiet_s = quiet_s(config)
        # Faults injected by the scenario (a labsim.faults.FaultyLink), or None.
        self.link = None
        # Optional observer (labsim serve's live log): called with (datagram, addr,
        # outcome) for every request on the listening port. None: no work per request.
        self.on_event = None

    def _listen(self, port: int) -> None:
        # SO_REUSEADDR only on a fixed port, so a restarted server can rebind at once; on
        # port 0 it could land on a port another REUSEADDR socket already holds.
        try:
            if self.share:
                sock = shared_socket(socket.SOCK_DGRAM, self.host, port, self.share)
            else:
                refuse_a_shared_port(self.host, port)
                sock = _udp_socket(self._family, self.host, port, reuse_addr=port != 0)
        except OSError as exc:
            raise CannotListenError(self.host, port, exc) from exc
        set_receive_buffer(sock, RECEIVE_BUFFER)
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
        self._run(outcome, addr)

    def _tid_for(self, peer) -> _TidSocket | None:
        """The pool socket for a new transfer (or error) to ``peer``: the next one round
        the pool that ``peer`` is not using and has not used lately; a new socket while
        the pool is short of TID_SOCKETS (or when none is free for this peer)."""
        pool = self._pool
        now = self.clock.seconds()
        if len(pool) >= TID_SOCKETS:
            for _ in range(len(pool)):
                tid = pool[self._next_tid % len(pool)]
                self._next_tid += 1
                if tid.free_for(peer, now):
                    return tid
            # Every socket busy with or resting from this very peer: a client sending
            # request after request from one port. Grow the pool rather than share.
        try:
            sock = _udp_socket(self._family, self.host, 0, reuse_addr=False)
        except OSError:  # out of descriptors or ephemeral ports
            self.stats["socket_errors"] += 1
            return None
        set_receive_buffer(sock, RECEIVE_BUFFER)
        tid = _TidSocket(self, sock)
        pool.append(tid)
        self._sockets.add(sock, tid)
        return tid

    def _reject(self, packet: bytes, addr) -> None:
        # Errors go out from a TID socket too, as tftp-hpa does: a client that locks on
        # to the first reply's port then sees the same behaviour for errors and for data.
        tid = self._tid_for(addr) if self._sockets is not None else None
        if tid is None:
            return
        try:
            tid.sock.sendto(packet, (addr[0], addr[1]))
        except (OSError, ValueError):
            self.stats["send_errors"] += 1

    def _run(self, transfer, addr) -> None:
        if self._sockets is None:  # stopped meanwhile (a request delayed by the fault link)
            return
        tid = self._tid_for(addr)
        if tid is None:
            self.stats["transfers_failed"] += 1
            return
        protocol = _TransferProtocol(self, transfer, tid, addr)
        tid.transfers[addr] = protocol
        self._active += 1
        self.stats["active"] = self._active
        protocol.apply(transfer.start())

    def _transfer_closed(self, protocol: _TransferProtocol) -> None:
        tid = protocol.tid
        if tid.transfers.get(protocol.peer) is protocol:
            tid.transfer_ended(protocol.peer, self.clock.seconds(), self._quiet_s)
            self._active -= 1
            self.stats["active"] = self._active

    def stop(self):
        """Stop listening and abandon every running transfer; fires when all sockets are closed."""
        from twisted.internet import defer

        for tid in self._pool:
            for protocol in list(tid.transfers.values()):
                protocol.close()
        if self._sockets is not None:
            for tid in self._pool:
                self._sockets.discard(tid.sock)
                tid.sock.close()
            self._sockets.discard(self._listening)
            self._listening.close()
            self._sockets.close()
            self._sockets = None
            self._listening = None
        self._pool = []
        return defer.succeed(None)


def start_tftp_server(
    reactor, config: TftpServerConfig, host: str = "127.0.0.1", port: int = 6969, *, clock=None,
    share: str | None = None,
) -> TftpServerHandle:
    """Start serving ``config.root`` on ``host:port`` (port 0: any free port; see ``.port``).
    ``share``: the port is served by several processes (labsim.net.reuseport)."""
    server = TftpServerHandle(reactor, config, host, clock=clock, share=share)
    server._listen(port)
    return server

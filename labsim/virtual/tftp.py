"""TFTP in the in-memory lab: the phones' own TFTP client against the TFTP server's own
core, each datagram its own event on the simulated clock.

The two ends are the same I/O-free state machines the socket adapters drive: the
phones' ``TftpReadSession``/``TftpWriteSession`` (``transport.tftp_client``, with the
options and timing ``transport.loopback`` gives them: ``blksize`` 1428, ``tsize``, 1 s
doubling to 8 s, five retransmissions) and the server's ``DiskTftpRequestHandler`` with
its ``ReadTransfer``/``WriteTransfer`` (``services.tftp``: the path checks, the file
cache, option negotiation, retransmissions, uploads only into ``upload_dir``, every
counter). Only the adapters differ, and they keep the socket adapters' rules:

- Each datagram is a call on the clock, due one hop (``latency_s``) after it was sent.
  The scenario's ``tftp`` faults act where the socket server's link does, inside the
  server (``TftpWire``): ``in`` once a datagram has reached the server, ``out`` before a
  transfer's packet leaves; the ERROR answering a request, and ERROR 5 to a stranger, go
  out directly, as the socket server sends them. So a transfer interleaves with
  everything else in the run: a timeline action, a fault window opening or closing,
  other phones' transfers.
- The server is looked up when a datagram arrives, as a socket is: a stopped server
  reads nothing (the phones' clients retry, then time out), and a restarted one has
  forgotten the transfers it was running (its new transfer ports never match the old
  ones). A request reads the root as it is when the request arrives.
- Each side has one retransmission timer, a real call on the clock, moved by every step
  that sets one (``ScheduledCall.reset``). A timer that comes due lets the datagrams due
  at that same moment go first (both socket adapters read their socket before acting
  on a late timer): it acts one ``callLater(0)`` later, behind them.
- The server's end of a transfer is its own port (TID), numbered from 65536 on over the
  run: never a service's port, never used twice, so a datagram for a transfer of a
  server since stopped finds nothing and is dropped, as at its closed socket. A
  request retransmitted before the server's answer got through starts a second
  transfer from another TID, as on sockets (the client answers it with ERROR 5).
- A finished client answers a repeated last DATA with its last ACK for as long as its
  port lingers (10 s after the last datagram it heard: a time kept, not a timer); a
  finished server transfer drops what still arrives for it (``late_packets``) for its
  quiet period, then answers ERROR 5, as its pool socket does.
- At most ``TRANSFERS_PER_SERVER`` (512) of the fleet's sessions to one server run at
  once; the rest wait their turn, their clocks not started, as the socket network's
  ``TransferGate`` has them (a storm under loss keeps thousands of transfers open).
- The phone gets its result the moment its session ends (as from the socket client's
  Deferred); the server's last steps (the final ACK's hop, a dally, retransmissions of a
  last DATA whose ACK was lost) go on after it on the clock.

Cost, against playing a whole transfer at once on a private queue: every datagram is an
entry on the run's heap (``HeapClock.schedule``: no ``ScheduledCall``, nothing cancels a
datagram), every transfer two timers; no closure or bound method per datagram (the
handlers are functions called with their object as the first argument).
"""

from __future__ import annotations

from collections import deque
from itertools import count

from labsim.services.tftp import Reject, TftpServerConfig
from labsim.services.tftp_transfer import answer_stranger
from labsim.services.tftp_udp import DiskTftpRequestHandler, quiet_s
from labsim.transport.loopback import TFTP_LINGER_S, TFTP_TIMING, tftp_outcome
from labsim.transport.tftp_client import TftpReadSession, TftpWriteSession
from labsim.transport.transfer_gate import TRANSFERS_PER_SERVER
from labsim.virtual import FILES_CACHED
from labsim.wire.tftp import Step

CLIENT_BLKSIZE = 1428  # what the phones' client asks for (transport.loopback)
CLIENT_HOST = "127.0.0.1"  # the phones' end of every transfer (each has its own port)
FIRST_PORT = 65536  # ports of transfers (both ends), counted up over a run: above any real one
DONE = Step(done=True)


def server_handler(spec, root: str, upload_root: str | None) -> DiskTftpRequestHandler:
    """The request handler a socket server of ``spec`` would have (``services.lab``)."""
    config = TftpServerConfig(root=root, blksize_max=spec.blksize_max, timeout_s=spec.timeout_s,
                              max_retransmits=spec.max_retransmits, uploads=spec.uploads,
                              upload_dir=spec.upload_dir, upload_root=upload_root)
    handler = DiskTftpRequestHandler(config)
    handler.names_max = FILES_CACHED  # every pass reads every phone's file again (labsim/virtual/__init__.py)
    return handler


def get_session(server: tuple[str, int], name: str) -> TftpReadSession:
    return TftpReadSession(server, name, blksize=CLIENT_BLKSIZE, tsize=True, **TFTP_TIMING)


def put_session(server: tuple[str, int], name: str, body: bytes) -> TftpWriteSession:
    return TftpWriteSession(server, name, body, blksize=CLIENT_BLKSIZE, tsize=True, **TFTP_TIMING)


class VirtualTftpServer:
    """One start of the TFTP service in memory: its request handler on the well-known
    port, the transfers it runs by their TID, and the TIDs whose transfers ended lately."""

    def __init__(self, handler: DiskTftpRequestHandler, host: str, port: int):
        self.handler = handler
        self.stats = handler.stats
        self.host = host
        self.port = port
        self.quiet_s = quiet_s(handler.config)
        self.transfers: dict[int, ServerEnd] = {}
        # TID -> until when its late datagrams are dropped; in end order, so the expired
        # ones are at the front (one forgotten per one added, as the socket pool does).
        self.quiet_until: dict[int, float] = {}
        self.first_tid: int | None = None  # TIDs below it are an earlier start's
        self.stopped = False

    def stop(self) -> None:
        """Abandon every running transfer, as the socket server's ``stop`` does."""
        self.stopped = True
        for end in self.transfers.values():
            end.close()
        self.transfers.clear()
        self.stats["active"] = 0

    def ended(self, end: "ServerEnd", now: float) -> None:
        if self.transfers.pop(end.port, None) is None:
            return
        self.stats["active"] -= 1
        quiet_until = self.quiet_until
        quiet_until[end.port] = now + self.quiet_s
        oldest = next(iter(quiet_until))
        if quiet_until[oldest] <= now:
            del quiet_until[oldest]


class TftpWire:
    """The in-memory UDP between the phones' TFTP clients and the lab's TFTP server.

    The ``tftp`` faults sit where the socket server's link does, inside the server: a
    datagram reaches the server's port one hop after it was sent, is found there as the
    socket adapter finds it (the listening port, or a transfer by its client), and is
    then held as the ``in`` faults say; a transfer's packet is held as the ``out`` faults
    say, then takes its hop. What a fault still holds when its transfer ends (or the
    server stops) is dropped, as the socket server's closed transfer drops it."""

    def __init__(self, clock, faults, latency_s: float, running_server, limit: int = TRANSFERS_PER_SERVER):
        self.clock = clock
        self.faults = faults  # a FaultSet, or None
        self.latency_s = latency_s
        self.running_server = running_server  # () -> the VirtualTftpServer running now, or None
        self._ports = count(FIRST_PORT)
        self.limit = limit  # the fleet's transfers in flight to one server (the rest wait)
        self._gates: dict[int, _Gate] = {}  # by the server's port
        self._on_request = self._request  # bound once: the in faults may hold a request
        # A datagram on its way is never cancelled or moved: HeapClock.schedule, no
        # ScheduledCall made (the timers are callLater's: they are moved and cancelled).
        self._schedule = clock.schedule

    def get(self, server: tuple[str, int], name: str, request, deliver) -> "ClientEnd":
        """Download ``name`` from ``server``; ``deliver(request, FetchResult)`` when the phone's session ends."""
        return self._admit(ClientEnd(self, get_session(server, name), request, deliver))

    def put(self, server: tuple[str, int], name: str, body: bytes, request, deliver) -> "ClientEnd":
        """Upload ``body`` as ``name`` (a WRQ); ``deliver`` as for ``get``."""
        return self._admit(ClientEnd(self, put_session(server, name, body), request, deliver))

    def _admit(self, client: "ClientEnd") -> "ClientEnd":
        """Start ``client``'s session now, or when the fleet has fewer than ``limit``
        transfers to that server in flight: the socket network's ``TransferGate``, whose
        queue a session's clock does not run in."""
        port = client.session.server[1]
        gate = self._gates.get(port)
        if gate is None:
            gate = self._gates[port] = _Gate()
        client.gate = gate
        if gate.running < self.limit:
            gate.running += 1
            client.start()
        else:
            gate.waiting.append(client)
        return client

    def session_ended(self, gate: "_Gate") -> None:
        """A session through ``gate`` ended: the next one waiting starts (before its
        phone hears the result, as the gate's callback comes first on sockets)."""
        if gate.waiting:
            gate.waiting.popleft().start()
        else:
            gate.running -= 1

    def new_port(self) -> int:
        return next(self._ports)

    def to_server(self, packet: bytes, port: int, client: "ClientEnd") -> None:
        """``packet`` from ``client`` to the server's ``port`` (its well-known port or a TID)."""
        self._schedule(self.latency_s, TftpWire._at_server, self, packet, port, client)

    def to_client(self, packet: bytes, source: tuple, client: "ClientEnd") -> None:
        """``packet`` from the server's ``source`` (host, TID) to ``client``, past the faults."""
        self._schedule(self.latency_s, ClientEnd.receive, client, packet, source)

    def from_transfer(self, packet: bytes, end: "ServerEnd") -> None:
        """A transfer's ``packet`` to its client, through the ``out`` faults."""
        faults = self.faults
        if faults is None or not faults._by_service.get("tftp"):
            self._schedule(self.latency_s, ClientEnd.receive, end.client, packet, end.source)
            return
        for delay, data in faults.plan("tftp", "out", packet, self.clock.rightNow):
            if delay <= 0:
                self._schedule(self.latency_s, ClientEnd.receive, end.client, data, end.source)
            else:
                self._schedule(delay, ServerEnd.send_held, end, data)

    def _at_server(self, datagram: bytes, port: int, client: "ClientEnd") -> None:
        server = self.running_server()
        if server is None:
            return  # stopped: nobody reads the port; the client's timers run
        if port == server.port:
            self._link_in(datagram, self._on_request, server, client)
            return
        end = server.transfers.get(port)
        if end is not None and client is end.client:
            self._link_in(datagram, ServerEnd.receive, end, client)
        elif server.first_tid is None or port < server.first_tid:
            return  # an earlier start's transfer: its socket is closed
        elif end is None and server.quiet_until.get(port, 0.0) > self.clock.rightNow:
            server.stats["late_packets"] += 1  # of a transfer that just ended there: dropped
        else:  # a stranger to its pool socket (a transfer is found by its client's address)
            self.stranger(server, datagram, port, client)

    def _link_in(self, datagram: bytes, handle, target, client: "ClientEnd") -> None:
        """``handle(target, data, client)`` for each copy the ``in`` faults let through,
        at once or when they let it go (FaultyLink.carry's rule)."""
        faults = self.faults
        if faults is None or not faults._by_service.get("tftp"):
            handle(target, datagram, client)
            return
        for delay, data in faults.plan("tftp", "in", datagram, self.clock.rightNow):
            if delay <= 0:
                handle(target, data, client)
            else:
                self._schedule(delay, handle, target, data, client)

    def _request(self, server: VirtualTftpServer, datagram: bytes, client: "ClientEnd") -> None:
        try:
            outcome = server.handler.handle(datagram, client.address)
        except Exception:  # as the socket adapter: a bug costs this request, never the run
            server.stats["internal_errors"] += 1
            return
        if outcome is None or server.stopped:  # stopped while a fault held it: counted, never answered
            return
        port = self.new_port()
        if server.first_tid is None:
            server.first_tid = port
        if isinstance(outcome, Reject):  # sent directly, as the socket server sends it
            self.to_client(outcome.packet, (server.host, port), client)
            return
        end = server.transfers[port] = ServerEnd(self, server, outcome, port, client)
        server.stats["active"] += 1
        end.act(outcome.start)

    def stranger(self, server: VirtualTftpServer, datagram: bytes, port: int, client: "ClientEnd") -> None:
        """RFC 1350's ERROR 5 from a transfer port to a client with no transfer there
        (sent directly, as the socket server sends it)."""
        for packet, _ in answer_stranger(datagram, client.address, server.stats).send:
            self.to_client(packet, (server.host, port), client)


class _Gate:
    """A server's sessions in flight and those waiting their turn."""

    __slots__ = ("running", "waiting")

    def __init__(self):
        self.running = 0
        self.waiting: deque[ClientEnd] = deque()


class ClientEnd:
    """One phone's TFTP session on its own port, run as the client's socket adapter
    (``transport.tftp_client._SessionProtocol``) runs it, on the simulated clock."""

    __slots__ = ("wire", "session", "request", "deliver", "address", "timer", "ended", "last_heard", "gate")

    def __init__(self, wire: TftpWire, session, request, deliver):
        self.wire = wire
        self.session = session
        self.request = request
        self.deliver = deliver  # deliver(request, FetchResult), once
        self.address = (CLIENT_HOST, wire.new_port())
        self.timer = None  # the retransmission timer's ScheduledCall
        self.ended: float | None = None  # when the session ended
        self.last_heard = 0.0  # when the ended session's port last heard anything (its linger)
        self.gate: _Gate | None = None  # its place among the fleet's transfers to its server

    def start(self) -> None:
        self._apply(self.session.start())

    def receive(self, datagram: bytes, source: tuple) -> None:
        if self.ended is None:
            try:
                step = self.session.datagram_received(datagram, source)
            except Exception as exc:  # a bug in the session must still end the transfer
                step = self._broken(exc)
            self._apply(step)
            return
        now = self.wire.clock.rightNow
        if now <= self.last_heard + TFTP_LINGER_S:  # the port still held: only the finished answers
            self.last_heard = now
            try:
                step = self.session.after_finish(datagram, source)
            except Exception:
                return
            for packet, address in step.send:
                self.wire.to_server(packet, address[1], self)

    def _timer_due(self) -> None:
        self.timer = self.wire.clock.callLater(0, ClientEnd._timer_fired, self)  # datagrams due now first

    def _timer_fired(self) -> None:
        self.timer = None
        try:
            step = self.session.timer_expired()
        except Exception as exc:
            step = self._broken(exc)
        self._apply(step)

    def _broken(self, exc: Exception) -> Step:
        self.session.finished = True
        self.session.error = exc
        return DONE

    def _apply(self, step: Step) -> None:
        send, timer, done = step
        wire = self.wire
        for packet, address in send:
            wire.to_server(packet, address[1], self)
        if done:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.ended = self.last_heard = wire.clock.rightNow
            wire.session_ended(self.gate)
            session = self.session
            self.deliver(self.request, tftp_outcome(session.result, session.error))
        elif timer is not None:
            if self.timer is None:
                self.timer = wire.clock.callLater(timer, ClientEnd._timer_due, self)
            else:
                self.timer.reset(timer)


class ServerEnd:
    """One transfer of the server on its TID, run as the socket server's
    ``_TransferProtocol`` runs it, on the simulated clock."""

    __slots__ = ("wire", "server", "transfer", "port", "source", "client", "timer", "closed")

    def __init__(self, wire: TftpWire, server: VirtualTftpServer, transfer, port: int, client: ClientEnd):
        self.wire = wire
        self.server = server
        self.transfer = transfer  # a ReadTransfer or WriteTransfer
        self.port = port
        self.source = (server.host, port)  # where its packets come from, as the client sees them
        self.client = client  # the only sender it hears: another one is its pool socket's stranger
        self.timer = None
        self.closed = False

    def receive(self, datagram: bytes, client: ClientEnd) -> None:
        if self.closed:  # ended (or the server stopped) while a fault held the datagram
            return
        try:
            step = self.transfer.datagram_received(datagram, client.address)
        except Exception:  # as the socket adapter: a bug ends the transfer, never the run
            self.server.stats["internal_errors"] += 1
            step = DONE
        self._apply(step)

    def send_held(self, packet: bytes) -> None:
        """A packet the ``out`` faults held: sent now, unless the transfer is over."""
        if not self.closed:
            self.wire.to_client(packet, self.source, self.client)

    def act(self, method) -> None:
        """Apply what ``method()`` (the transfer's start or timer_expired) returns."""
        try:
            step = method()
        except Exception:
            self.server.stats["internal_errors"] += 1
            step = DONE
        self._apply(step)

    def _timer_due(self) -> None:
        self.timer = self.wire.clock.callLater(0, ServerEnd._timer_fired, self)  # datagrams due now first

    def _timer_fired(self) -> None:
        self.timer = None
        self.act(self.transfer.timer_expired)

    def close(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _apply(self, step: Step) -> None:
        send, timer, done = step
        wire = self.wire
        for packet, _ in send:  # a transfer sends only to its client
            wire.from_transfer(packet, self)
        if done:
            self.close()
            self.server.ended(self, wire.clock.rightNow)
        elif timer is not None:
            if self.timer is None:
                self.timer = wire.clock.callLater(timer, ServerEnd._timer_due, self)
            else:
                self.timer.reset(timer)

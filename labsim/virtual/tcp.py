"""TCP in the in-memory lab: connections whose bytes are calls on the simulated clock,
for a Twisted client on one end and a pyftpdlib server on the other (``virtual.ftp``).

The two ends are what each program already talks to: the client gets a Twisted
``ITCPTransport`` from a ``connectTCP`` (``LabReactor``), the server a socket-like object
(``ServerSocket``, ``ListeningSocket``) that pyftpdlib's dispatchers call ``send``,
``recv``, ``accept`` and ``close`` on, and a stand-in for its IO loop (``MemoryLoop``)
that tells a dispatcher its socket is readable or writable as epoll would.

What goes over the wire, each one hop (the lab's ``latency_s``) after it was sent:

- a connection: the SYN reaches the server's listening socket, looked up by port when
  it arrives (``TcpLab.listener_at``): none there (the server stopped, a data port long
  closed) answers with a refusal, else the connection waits in the listener's backlog
  for ``accept`` and the client is connected one hop later (the kernel's handshake does
  not wait for ``accept``);
- every ``write``/``send`` as one segment, in order; nothing is lost (TCP's
  retransmissions are below what a lab's faults model for a stream, see
  ``services.ftp``), the send buffers have no limit;
- a close as a FIN: the other end reads EOF (the client: ``connectionLost`` with
  ``ConnectionDone``); an abort as a reset. Bytes that reach a closed end are dropped.

The loop is readiness-driven rather than polled: a socket that becomes readable (bytes,
EOF, a connection to accept) or a dispatcher that asks for WRITE gets one check, a call
due now (``schedule(0)``), which runs the dispatcher's ``handle_read_event`` /
``handle_write_event`` as pyftpdlib's epoll loop does (``readable()``/``writable()``
first). Level-triggered as epoll is: a socket still ready after a check that moved bytes
is checked again; one that moved nothing waits for the next change (a real loop would
spin there).
"""

from __future__ import annotations

import errno
import socket
from collections import deque
from itertools import count

from pyftpdlib.ioloop import _read, _write
from twisted.internet import error as net_error
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IConnector, ITCPTransport
from twisted.python.failure import Failure
from zope.interface import implementer

CLIENT_HOST = "127.0.0.1"  # the phones' end, as on the loopback network (the kernel's choice)
FIRST_CLIENT_PORT = 1 << 16  # the phones' ends, counted up over a run: above any real port
FIRST_FD = 1 << 20  # the sockets' file numbers, never a real descriptor's
_fds = count(FIRST_FD)


class TcpLab:
    """The in-memory network's TCP: connections from the phones to the lab's servers."""

    def __init__(self, clock, latency_s: float, listener_at):
        self.clock = clock
        self.latency_s = latency_s
        self.listener_at = listener_at  # port -> ListeningSocket, or None: looked up when a SYN arrives
        self._client_ports = count(FIRST_CLIENT_PORT)

    def connect(self, host: str, port: int, factory, bind_host: str | None = None) -> "Connector":
        connector = Connector(self, host, port, factory, (bind_host or CLIENT_HOST, next(self._client_ports)))
        self.clock.schedule(self.latency_s, connector.syn_arrives)
        return connector


class LabReactor:
    """What the phones' FTP client (``transport.ftp_fetch``) uses of a reactor: the
    simulated clock and ``connectTCP`` over the lab."""

    def __init__(self, clock, tcp: TcpLab):
        self.clock = clock
        self.tcp = tcp
        self.callLater = clock.callLater
        self.seconds = clock.seconds

    def connectTCP(self, host, port, factory, timeout=30, bindAddress=None):
        # No timeout of its own: a SYN is never lost here; the exchange's own limit covers it.
        return self.tcp.connect(host, port, factory, bindAddress[0] if bindAddress else None)


@implementer(IConnector)
class Connector:
    """A connection attempt from a phone, then its connection (``IConnector``)."""

    def __init__(self, lab: TcpLab, host: str, port: int, factory, source: tuple[str, int]):
        self.lab, self.host, self.port, self.factory, self.source = lab, host, port, factory, source
        self.state = "connecting"  # then "connected", "disconnected"
        self.transport: ClientTransport | None = None

    def syn_arrives(self) -> None:
        if self.state != "connecting":
            return  # given up before it got there (nothing answers a connection nobody waits for)
        listener = self.lab.listener_at(self.port)
        lab = self.lab
        if listener is None or listener.closed:
            lab.clock.schedule(lab.latency_s, self._refused)
            return
        transport = self.transport = ClientTransport(self)
        transport.server = listener.incoming(transport)
        lab.clock.schedule(lab.latency_s, self._established)

    def _refused(self) -> None:
        if self.state == "connecting":
            self.state = "disconnected"
            self.factory.clientConnectionFailed(self, Failure(net_error.ConnectionRefusedError()))

    def _established(self) -> None:
        transport = self.transport
        if self.state != "connecting":  # given up meanwhile: its answer is a reset
            transport.server.reset()
            return
        self.state = "connected"
        protocol = self.factory.buildProtocol(self.getDestination())
        transport.protocol = protocol
        transport.connected = 1
        transport.settling = []
        protocol.makeConnection(transport)
        # What the factory set going as the connection was made (ClientCreator fires its
        # Deferred with a callLater(0)) runs before what arrives at this same moment, as
        # the reactor runs the calls due before it reads the sockets again.
        self.lab.clock.schedule(0, ClientTransport.settled, transport)

    def stopConnecting(self) -> None:
        if self.state != "connecting":
            raise net_error.NotConnectingError("we're not trying to connect")
        self.state = "disconnected"
        self.factory.clientConnectionFailed(self, Failure(net_error.UserError()))

    def disconnect(self) -> None:
        if self.state == "connecting":
            self.stopConnecting()
        elif self.state == "connected":
            self.transport.loseConnection()

    def connect(self) -> None:
        raise NotImplementedError("a lab connection is made once")

    def getDestination(self) -> IPv4Address:
        return IPv4Address("TCP", self.host, self.port)


@implementer(ITCPTransport)
class ClientTransport:
    """The phone's end of a connection, as a Twisted protocol sees its transport."""

    connected = 0
    disconnecting = False
    protocol = None
    lost = False
    closed = False  # the FIN (or reset) sent: nothing more goes out
    settling = None  # what arrived at the moment the connection was made: handed over just after

    def __init__(self, connector: Connector):
        self.connector = connector
        self.clock = connector.lab.clock
        self.latency_s = connector.lab.latency_s
        self.server: ServerSocket | None = None

    # --- what the protocol calls
    def write(self, data: bytes) -> None:
        # Written after loseConnection in the same turn still goes out before the FIN, as
        # Twisted flushes its buffer before it closes.
        if self.connected and not self.closed and data:
            self.clock.schedule(self.latency_s, ServerSocket.receive, self.server, bytes(data))

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if not self.connected or self.disconnecting:
            return
        self.disconnecting = True  # and reads no more, as a Twisted connection stops reading
        self.clock.schedule(0, ClientTransport._close, self)

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self.clock.schedule(self.latency_s, ServerSocket.fin, self.server)
            self.ended(net_error.ConnectionDone())

    def abortConnection(self) -> None:
        if not self.connected or self.closed:
            return
        self.disconnecting = self.closed = True
        self.clock.schedule(self.latency_s, ServerSocket.reset, self.server)
        self.clock.schedule(0, ClientTransport.ended, self, net_error.ConnectionAborted())

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", self.connector.host, self.connector.port)

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", *self.connector.source)

    def registerProducer(self, producer, streaming) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def setTcpNoDelay(self, enabled) -> None:
        pass

    def getTcpNoDelay(self) -> bool:
        return True

    def setTcpKeepAlive(self, enabled) -> None:
        pass

    def getTcpKeepAlive(self) -> bool:
        return False

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        self.loseConnection()

    # --- what arrives from the server
    def settled(self) -> None:
        arrived, self.settling = self.settling, None
        for method, argument in arrived:
            method(self, argument)

    def receive(self, data: bytes) -> None:
        if self.settling is not None:
            self.settling.append((ClientTransport.receive, data))
        elif self.connected and not self.disconnecting:
            self.protocol.dataReceived(data)

    def fin(self) -> None:
        self.ended(net_error.ConnectionDone())

    def reset(self) -> None:
        self.ended(net_error.ConnectionLost("Connection reset by peer"))

    def ended(self, reason: Exception) -> None:
        if self.lost:
            return
        if self.settling is not None:
            self.settling.append((ClientTransport.ended, reason))
            return
        self.lost = self.closed = True
        self.connected = 0
        self.disconnecting = True
        connector = self.connector
        connector.state = "disconnected"
        failure = Failure(reason)
        self.protocol.connectionLost(failure)
        connector.factory.clientConnectionLost(connector, failure)


class _LabSocket:
    """What pyftpdlib's dispatchers ask of any socket."""

    family = socket.AF_INET
    type = socket.SOCK_STREAM
    closed = False
    moved = 0  # segments read, sent or accepted: a check that moved nothing does not repeat

    def __init__(self, loop: "MemoryLoop", host: str, port: int):
        self.loop = loop
        self.fd = next(_fds)
        self.host, self.port = host, port

    def fileno(self) -> int:
        return self.fd

    def setblocking(self, flag) -> None:
        pass

    def setsockopt(self, *args) -> None:
        pass

    def getsockopt(self, *args) -> int:
        return 0  # SO_ERROR: none; SO_REUSEADDR: off

    def getsockname(self) -> tuple[str, int]:
        return self.host, self.port

    def readable_now(self) -> bool:
        raise NotImplementedError

    writable_now = False


class ServerSocket(_LabSocket):
    """The server's end of a connection, as pyftpdlib reads and writes a socket."""

    eof = False
    was_reset = False

    def __init__(self, loop: "MemoryLoop", host: str, port: int, client: ClientTransport):
        super().__init__(loop, host, port)
        self.client = client
        self.peer = client.connector.source
        self.latency_s = client.latency_s
        self.inbound = bytearray()

    @property
    def writable_now(self) -> bool:
        return not (self.closed or self.was_reset)

    def readable_now(self) -> bool:
        return bool(self.inbound) or self.eof or self.was_reset

    def getpeername(self) -> tuple[str, int]:
        if self.closed:
            raise OSError(errno.ENOTCONN, "not connected")
        return self.peer

    def send(self, data) -> int:
        if self.closed:
            raise OSError(errno.EBADF, "closed")
        if self.was_reset:
            raise ConnectionResetError(errno.ECONNRESET, "reset by peer")
        if data:
            self.moved += 1
            self.loop.clock.schedule(self.latency_s, ClientTransport.receive, self.client, bytes(data))
        return len(data)

    def recv(self, size: int) -> bytes:
        inbound = self.inbound
        if inbound:
            data = bytes(inbound[:size])
            del inbound[:size]
            self.moved += 1
            return data
        if self.was_reset:
            raise ConnectionResetError(errno.ECONNRESET, "reset by peer")
        if self.eof:
            self.moved += 1
            return b""
        raise BlockingIOError(errno.EAGAIN, "no data")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.was_reset:
            self.loop.clock.schedule(self.latency_s, ClientTransport.fin, self.client)

    # --- what arrives from the client
    def receive(self, data: bytes) -> None:
        if not self.closed:
            self.inbound += data
            self.loop.ready(self.fd)

    def fin(self) -> None:
        if not self.closed:
            self.eof = True
            self.loop.ready(self.fd)

    def reset(self) -> None:
        if not self.closed:
            self.was_reset = True
            self.loop.ready(self.fd)


class ListeningSocket(_LabSocket):
    """A server's listening socket: the control port, or a passive data port. Known to
    its server (``ports``) from ``bind`` to ``close``: a connection finds it there."""

    def __init__(self, loop: "MemoryLoop", host: str, ports: "PortTable"):
        super().__init__(loop, host, 0)
        self.ports = ports
        self.backlog: deque[ServerSocket] = deque()

    def bind(self, address) -> None:
        self.host = address[0] or self.host
        self.port = self.ports.bind(self, address[1])

    def listen(self, backlog) -> None:
        pass

    def readable_now(self) -> bool:
        return bool(self.backlog)

    def incoming(self, client: ClientTransport) -> ServerSocket:
        """A SYN has arrived: the connection waits to be accepted."""
        connection = ServerSocket(self.loop, self.host, self.port, client)
        self.backlog.append(connection)
        self.loop.ready(self.fd)
        return connection

    def accept(self):
        if not self.backlog:
            raise BlockingIOError(errno.EAGAIN, "nothing to accept")
        connection = self.backlog.popleft()
        self.moved += 1
        return connection, connection.peer

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.ports.release(self)
        while self.backlog:  # connections never accepted are reset, as the kernel does
            connection = self.backlog.popleft()
            connection.closed = True
            self.loop.clock.schedule(connection.latency_s, ClientTransport.reset, connection.client)


class PortTable:
    """One server's listening sockets by port: its service port and the passive data
    ports it opens, numbered from ``first`` up (wrapping, skipping ports in use)."""

    def __init__(self, first: int = 30000, last: int = 60999):
        self.first, self.last = first, last
        self.listening: dict[int, ListeningSocket] = {}
        self._next = first

    def bind(self, listener: ListeningSocket, port: int) -> int:
        if port == 0:
            span = self.last - self.first + 1
            for _ in range(span):
                port, self._next = self._next, self.first + (self._next + 1 - self.first) % span
                if port not in self.listening:
                    break
            else:
                raise OSError(errno.EADDRINUSE, "no free passive port")
        elif port in self.listening:
            raise OSError(errno.EADDRINUSE, "address in use")
        self.listening[port] = listener
        return port

    def release(self, listener: ListeningSocket) -> None:
        if self.listening.get(listener.port) is listener:
            del self.listening[listener.port]


class LoopCall:
    """What pyftpdlib's ``call_later``/``call_every`` return (``cancel``, ``reset``,
    ``cancelled``), on the simulated clock."""

    __slots__ = ("loop", "delay", "target", "args", "kwargs", "errback", "every", "cancelled", "timer")

    def __init__(self, loop: "MemoryLoop", delay: float, target, args, kwargs, every: bool):
        self.loop, self.delay, self.target, self.args, self.every = loop, delay, target, args, every
        self.errback = kwargs.pop("_errback", None)
        self.kwargs = kwargs
        self.cancelled = False
        self.timer = loop.clock.callLater(delay, self._fire)
        loop.calls.add(self)

    def _fire(self) -> None:
        if self.every:
            self.timer = self.loop.clock.callLater(self.delay, self._fire)
        try:
            self.target(*self.args, **self.kwargs)
        except Exception:
            self.loop.stats["loop_errors"] += 1  # pyftpdlib's scheduler logs it and goes on
            if self.errback is not None:
                self.errback()
            self.cancel()
            return
        if not self.every:
            self.cancel()  # as pyftpdlib marks a call that ran

    def reset(self) -> None:
        if self.timer.active():
            self.timer.reset(self.delay)
        else:
            self.timer = self.loop.clock.callLater(self.delay, self._fire)

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            if self.timer.active():
                self.timer.cancel()
            self.target = self.args = self.kwargs = self.errback = None
            self.loop.calls.discard(self)


class MemoryLoop:
    """pyftpdlib's IOLoop for one server in memory: its dispatchers by file number, the
    events each waits for, and its timers on the simulated clock."""

    READ = 1
    WRITE = 2

    def __init__(self, clock, stats: dict):
        self.clock = clock
        self.stats = stats
        self.socket_map: dict[int, object] = {}
        self.events: dict[int, int] = {}
        self.calls: set[LoopCall] = set()
        self._checking: set[int] = set()  # fds with a check due now
        self.closed = False

    def register(self, fd, instance, events) -> None:
        self.socket_map[fd] = instance
        self.events[fd] = events
        self.ready(fd)

    def unregister(self, fd) -> None:
        self.socket_map.pop(fd, None)
        self.events.pop(fd, None)

    def modify(self, fd, events) -> None:
        if fd in self.socket_map:
            self.events[fd] = events
            self.ready(fd)

    def ready(self, fd: int) -> None:
        """Something changed for ``fd``: check it, at this moment, after what is due now."""
        if fd in self.events and fd not in self._checking:
            self._checking.add(fd)
            self.clock.schedule(0, self._check, fd)

    def _check(self, fd: int) -> None:
        self._checking.discard(fd)
        instance = self.socket_map.get(fd)
        sock = getattr(instance, "socket", None)
        if sock is None:
            return
        events = self.events[fd]
        moved = sock.moved
        if events & self.READ and sock.readable_now() and instance.readable():
            _read(instance)
        if events & self.WRITE and fd in self.socket_map and sock.writable_now and instance.writable():
            _write(instance)
        if sock.moved != moved and fd in self.socket_map and (self.events[fd] & self.WRITE or sock.readable_now()):
            self.ready(fd)

    def call_later(self, seconds, target, *args, **kwargs) -> LoopCall:
        return LoopCall(self, seconds, target, args, kwargs, every=False)

    def call_every(self, seconds, target, *args, **kwargs) -> LoopCall:
        return LoopCall(self, seconds, target, args, kwargs, every=True)

    def close(self) -> None:
        """Close every dispatcher, then cancel every timer (pyftpdlib's ``IOLoop.close``)."""
        self.closed = True
        for fd in sorted(self.socket_map):
            instance = self.socket_map.get(fd)  # closing one may have closed others (a session's data channel)
            try:
                if instance is not None:
                    instance.close()
            except Exception:
                self.stats["loop_errors"] += 1
        self.socket_map.clear()
        self.events.clear()
        for call in list(self.calls):
            call.cancel()

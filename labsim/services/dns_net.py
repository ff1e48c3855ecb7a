"""labsim's DNS server on the network: the I/O-free ``DnsAnswerer`` on a Twisted UDP port
and a TCP port with the same number (RFC 7766).

Run alone: ``python -m labsim.services.dns_net --zone FILE [--host H] [--port P]``; the
zone file's format is in ``labsim.services.dns``.

Faults (labsim.faults), attached with ``DnsServerHandle.link``; None (the default) costs
one check per datagram or per TCP read:

- UDP: every query and every answer passes through ``link.carry`` (loss, delay, jitter,
  duplicate, reorder, corrupt, bandwidth, down), as TFTP's datagrams do;
- TCP: ``down`` closes each new connection at once, before reading anything (the
  client sees the connection end with no answer: what a resolver meets when a server
  accepts and drops, and quicker to fail than a silent one); delay_s, jitter_s and
  slow_s hold each answer that long, in order. Datagram faults do not apply to a stream.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.python.failure import Failure

from labsim.net.udp import bind_udp
from labsim.services.dns import (
    PORT_ATTEMPTS,
    TCP_IDLE_TIMEOUT_S,
    TCP_LISTEN_BACKLOG,
    TCP_MAX_CONNECTIONS,
    TCP_MAX_CONNECTIONS_PER_ADDRESS,
    DnsRecordConfig,
    DnsServerConfig,
    parse_zone,
)
from labsim.wire.dns_records import DnsAnswerer, DnsStats, DnsTcpSession, Zone

# A fleet's phones each ask for themselves: a storm of them is a burst of queries, which
# the default receive buffer (~200 KB, a few hundred datagrams) would drop (as DHCP's).
RECV_BUFFER = 4 << 20


class DnsServerProtocol(DatagramProtocol):
    def __init__(self, answerer: DnsAnswerer):
        self.answerer = answerer
        self.link = None  # a labsim.faults.FaultyLink, or None: datagrams go straight through
        self._stopped = False

    def datagramReceived(self, data: bytes, addr) -> None:
        link = self.link
        if link is None:
            reply = self.answerer.handle(data)
            if reply is not None:
                self.transport.write(reply, addr)
        else:
            link.carry("in", data, lambda query: self._answer_through(link, query, addr))

    def _answer_through(self, link, query: bytes, addr) -> None:
        if self._stopped:  # a query the link delayed past the server's stop
            return
        reply = self.answerer.handle(query)
        if reply is not None:
            link.carry("out", reply, lambda data: self._send(data, addr))

    def _send(self, data: bytes, addr) -> None:
        if self._stopped:  # an answer the link delayed past the server's stop
            return
        try:
            self.transport.write(data, addr)
        except OSError:  # a full socket buffer: lost, as on a real network
            pass

    def stopProtocol(self) -> None:
        self._stopped = True


class DnsTcpProtocol(Protocol):
    """One TCP connection: ``DnsTcpSession`` does the work; this owns the socket and the
    idle timer, and stops reading while the client does not read its answers (so a
    client pipelining thousands of queries cannot grow our write buffer without bound)."""

    def __init__(self, factory: DnsTcpFactory):
        self.factory = factory
        self.session = DnsTcpSession(factory.answerer)
        self._idle = None
        self.lost = defer.Deferred()  # fires when the connection is gone: stop() waits for it
        # Answers held back by a delay fault, in order: (due time, bytes, close after).
        self._held: list[tuple[float, bytes, bool]] = []
        self._release = None  # the timer that sends the first held answer
        self.refused = False  # closed at once by a down fault: read nothing

    def connectionMade(self) -> None:
        factory = self.factory
        factory.connections.add(self)
        self.address = self.transport.getPeer().host
        from_address = factory.per_address[self.address] = factory.per_address.get(self.address, 0) + 1
        link = factory.link
        over_limit = len(factory.connections) > factory.max_connections
        address_over = 0 < factory.max_per_address < from_address
        if over_limit or address_over or (link is not None and link.refuses()):  # full, or down (a fault)
            if over_limit:
                factory.answerer.stats.tcp_over_limit += 1
            elif address_over:
                factory.answerer.stats.tcp_address_over_limit += 1
            self.refused = True
            self.transport.loseConnection()
            return
        # Streaming producer: the transport calls pauseProducing when its write buffer
        # fills and resumeProducing when it drains.
        self.transport.registerProducer(self, True)
        timeout = self.factory.idle_timeout_s
        if timeout is not None:
            self._idle = self.factory.reactor.callLater(timeout, self._idle_expired)

    def dataReceived(self, data: bytes) -> None:
        if self.refused:
            return
        if self._idle is not None and self._idle.active():
            self._idle.reset(self.factory.idle_timeout_s)
        out, close = self.session.received(data)
        link = self.factory.link
        if link is not None and (out or close):
            delay = link.answer_delay()
            if delay > 0 or self._held:
                self._hold(delay, out, close)
                return
        if out:
            self.transport.write(out)
        if close:
            self.transport.loseConnection()  # after the replies already written

    def _hold(self, delay: float, out: bytes, close: bool) -> None:
        """Send ``out`` ``delay`` from now, never before what is already held."""
        reactor = self.factory.reactor
        due = reactor.seconds() + delay
        if self._held:
            due = max(due, self._held[-1][0])
        self._held.append((due, out, close))
        if self._release is None:
            self._release = reactor.callLater(max(0.0, due - reactor.seconds()), self._send_held)

    def _send_held(self) -> None:
        self._release = None
        reactor = self.factory.reactor
        now = reactor.seconds()
        while self._held and self._held[0][0] <= now:
            _, out, close = self._held.pop(0)
            if out:
                self.transport.write(out)
            if close:
                self._held.clear()
                self.transport.loseConnection()
                return
        if self._held:
            self._release = reactor.callLater(self._held[0][0] - now, self._send_held)

    def _idle_expired(self) -> None:
        if self._held:  # answers held by a delay fault: the server is the slow one, not the client
            self._idle = self.factory.reactor.callLater(self.factory.idle_timeout_s, self._idle_expired)
            return
        if self.transport.disconnecting:
            # Closed once, but our replies are still unsent: the client stopped reading.
            self.transport.abortConnection()
            return
        self.factory.answerer.stats.tcp_idle_closed += 1
        self.transport.loseConnection()
        self._idle = self.factory.reactor.callLater(self.factory.idle_timeout_s, self._idle_expired)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None
        if self._release is not None and self._release.active():
            self._release.cancel()
        self._release = None
        self._held.clear()
        factory = self.factory
        if self in factory.connections:
            factory.connections.discard(self)
            left = factory.per_address[self.address] - 1
            if left:
                factory.per_address[self.address] = left
            else:
                del factory.per_address[self.address]
        self.lost.callback(None)

    # IPushProducer, registered on our own transport
    def pauseProducing(self) -> None:
        self.transport.pauseProducing()  # stop reading queries until the answers drain

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        pass  # the connection is going away: connectionLost cleans up


class DnsTcpFactory(Factory):
    noisy = False  # no log line per connection

    def __init__(self, reactor, answerer: DnsAnswerer, idle_timeout_s: float | None,
                 max_connections: int = TCP_MAX_CONNECTIONS,
                 max_per_address: int = TCP_MAX_CONNECTIONS_PER_ADDRESS):
        self.reactor = reactor
        self.answerer = answerer
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        self.max_per_address = max_per_address  # 0: no limit
        self.connections: set[DnsTcpProtocol] = set()
        self.per_address: dict[str, int] = {}  # open connections by client address
        self.link = None  # a labsim.faults.FaultyLink for the TCP side, or None

    def buildProtocol(self, addr) -> DnsTcpProtocol:
        return DnsTcpProtocol(self)


@dataclass
class DnsServerHandle:
    port: int
    stats: DnsStats
    _listening: object  # the UDP port
    _tcp_listening: object = None
    _tcp_factory: DnsTcpFactory | None = field(default=None, repr=False)

    def set_observer(self, observer) -> None:
        """``observer(query, reply, over_tcp)`` for every answer sent; None: off."""
        self._listening.protocol.answerer.on_answer = observer

    @property
    def link(self):
        """The fault link (labsim.faults.FaultyLink) on both the UDP and the TCP side."""
        return self._listening.protocol.link

    @link.setter
    def link(self, link) -> None:
        self._listening.protocol.link = link
        if self._tcp_factory is not None:
            self._tcp_factory.link = link

    def stop(self) -> defer.Deferred:
        """Stop both ports and drop open TCP connections (as a server going down does);
        fires when all are closed."""
        waits = [defer.maybeDeferred(self._listening.stopListening)]
        if self._tcp_listening is not None:
            waits.append(defer.maybeDeferred(self._tcp_listening.stopListening))
        if self._tcp_factory is not None:
            for connection in list(self._tcp_factory.connections):
                waits.append(connection.lost)
                connection.transport.abortConnection()
        return defer.gatherResults(waits, consumeErrors=True).addCallback(lambda _: None)


def start_dns_server(reactor, config: DnsServerConfig, host: str = "127.0.0.1", port: int = 5353, *,
                     share: str | None = None) -> DnsServerHandle:
    """Listen on UDP and TCP ``host:port`` (0: a port free for both; the handle says which).
    ``share``: the port is served by several processes (labsim.net.reuseport)."""
    answerer = DnsAnswerer(Zone(config.records))  # raises ValueError on a bad record, before binding
    factory = DnsTcpFactory(reactor, answerer, config.tcp_idle_timeout_s, config.tcp_max_connections,
                            config.tcp_max_connections_per_address)
    if share:
        import socket

        from labsim.net.reuseport import adopt_shared_udp, free_port, listen_shared_tcp

        if port == 0:
            port = free_port(host, (socket.SOCK_DGRAM, socket.SOCK_STREAM))
        udp = adopt_shared_udp(reactor, DnsServerProtocol(answerer), host, port, share, recv_buffer=RECV_BUFFER)
        try:
            tcp = listen_shared_tcp(reactor, factory, host, port, share, backlog=TCP_LISTEN_BACKLOG)
        except CannotListenError:
            udp.stopListening()
            raise
        return DnsServerHandle(port, answerer.stats, udp, tcp, factory)
    for attempt in range(1 if port else PORT_ATTEMPTS):
        udp = bind_udp(reactor, DnsServerProtocol(answerer), host, port, exclusive=True, recv_buffer=RECV_BUFFER)
        chosen = udp.getHost().port
        try:
            tcp = reactor.listenTCP(chosen, factory, backlog=TCP_LISTEN_BACKLOG, interface=host)
        except CannotListenError:
            udp.stopListening()
            if port or attempt == PORT_ATTEMPTS - 1:
                raise
            continue
        return DnsServerHandle(chosen, answerer.stats, udp, tcp, factory)
    raise AssertionError("unreachable")


def load_zone_file(path: str) -> list[DnsRecordConfig]:
    with open(path, encoding="utf-8") as f:
        return parse_zone(f.read())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labsim.services.dns_net")
    parser.add_argument("--zone", required=True, help="zone file: NAME [TTL] TYPE VALUE per line")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5353, help="UDP and TCP; 0 picks a port free for both")
    parser.add_argument("--tcp-idle-timeout", type=float, default=TCP_IDLE_TIMEOUT_S, metavar="SECONDS",
                        help="close a TCP connection idle this long (default %(default)s)")
    args = parser.parse_args(argv)

    from twisted.internet import reactor

    config = DnsServerConfig(load_zone_file(args.zone), tcp_idle_timeout_s=args.tcp_idle_timeout)
    handle = start_dns_server(reactor, config, args.host, args.port)
    # One line a test or a script can wait for (and read the port from, with --port 0).
    print(f"labsim dns listening on {args.host}:{handle.port} (udp and tcp)", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

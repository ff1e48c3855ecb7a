"""Host names in provisioning URLs, resolved through the lab's DNS server only.

Phones must never reach the machine's own resolver (it would send queries to whatever
/etc/resolv.conf names), so names are looked up with dnslib's codec over one UDP socket
to the scenario's DNS server on loopback. One resolver carries the whole fleet's
lookups, but each phone asks as a phone does, on its own: its question goes on the wire
whatever other phones are asking, and the answer is kept in that phone's own cache (RAM,
emptied when it boots) for the records' TTL, so a storm of phones is a storm of queries
at the DNS server, as with real phones. A failed lookup is retried ``attempts`` times.

A UDP answer with TC set did not fit a datagram: as a phone's stub resolver does
(RFC 1035 4.2.2, RFC 7766 5), the question is asked again over TCP to the same server
and the TCP answer is the one used. The truncated records are never used: they are a
cut list, and a phone that picked from them would not be a faithful one.

The I/O-free pieces (``is_truncated``, ``TcpExchange``; query building and answer
parsing are ``labsim.wire.dns_records.DnsResolver``) come first; the Twisted classes
after them only move bytes and own the timers.
"""

from __future__ import annotations

import random
from collections import deque

from twisted.internet import defer
from twisted.internet.error import NotConnectingError
from twisted.internet.protocol import ClientFactory, DatagramProtocol, Protocol

from labsim.net.udp import bind_udp
from labsim.phones.dns_client import PhoneDns
from labsim.transport.guard import loopback_address
from labsim.wire.dns_records import (TC_BIT, DnsLookupError, DnsResolver, DnsTcpDecoder, dns_name_problem, frame_tcp,
                                     query_bytes)

HEADER_SIZE = 12
QTYPE_A = 1
QR_BIT = 0x80  # in the third header byte, beside TC
ANSWERS_SHARED = 4096  # distinct answers kept once for every phone's cache
RECV_BUFFER = 4 << 20  # the answers to a storm of phones' questions (services.dns_net's reason)
# A failed lookup's reason as the phone's notes and the report say it (RFC 1035 4.1.1).
RCODE_WORDS = {1: "format error (FORMERR)", 2: "server failure (SERVFAIL)", 3: "no such name (NXDOMAIN)",
               4: "not implemented (NOTIMP)", 5: "refused (REFUSED)"}


class LookupFailed(Exception):
    pass


# --- without I/O -----------------------------------------------------------------------


def is_truncated(reply: bytes) -> bool:
    """Whether ``reply`` is a response (QR) with TC set: ask again over TCP.

    Only the header is read: the body of a truncated reply is not used for anything, and
    a reply that is not even a header is not truncated, it is junk (``parse_answer``
    rejects it)."""
    return len(reply) >= HEADER_SIZE and bool(reply[2] & QR_BIT) and bool(reply[2] & TC_BIT)


class TcpExchange:
    """One question on one TCP connection, without the socket: ``outgoing`` is what to
    write once connected; ``received(data)`` returns the reply once its last byte has
    arrived (None before), however TCP cut the stream."""

    def __init__(self, query: bytes):
        self.outgoing = frame_tcp(query)
        self._decoder = DnsTcpDecoder()

    def received(self, data: bytes) -> bytes | None:
        messages = self._decoder.feed(data)
        return messages[0] if messages else None


# --- Twisted ---------------------------------------------------------------------------


class _Query:
    def __init__(self, name: str, qid: int, deferred: defer.Deferred, client: PhoneDns):
        self.name = name
        self.qid = qid
        self.deferred = deferred
        self.client = client  # who asks (its timing; its answers get the reply): a phone, or the resolver
        self.tries = 0
        self.timer = None  # the UDP retransmission timer
        self.over_tcp = False  # once a TC reply came: late UDP replies are ignored
        self.tcp: _TcpAttempt | None = None  # the TCP connection in flight


class _TcpAnswerProtocol(Protocol):
    def __init__(self, attempt: _TcpAttempt):
        self.attempt = attempt

    def connectionMade(self) -> None:
        self.attempt.protocol = self
        self.transport.write(self.attempt.exchange.outgoing)

    def dataReceived(self, data: bytes) -> None:
        reply = self.attempt.exchange.received(data)
        if reply is not None:
            # One question per connection: close it ourselves (RFC 7766 6.2.1 lets the
            # client close once it has its answers; the server would wait for its idle timeout).
            self.transport.loseConnection()
            self.attempt.finish(reply)

    def connectionLost(self, reason=None) -> None:
        self.attempt.protocol = None
        self.attempt.finish(LookupFailed("TCP connection closed before the whole answer came"))
        self.attempt.socket_gone()


class _TcpAttempt(ClientFactory):
    """One TCP connection for one question. ``done`` fires once: with the reply bytes, or
    with LookupFailed (refused, closed early, no answer within ``timeout_s``). The
    timeout covers connecting and answering and runs on the injected reactor's clock.
    ``closed`` fires when the socket is gone (after ``done``: closing takes a reactor turn)."""

    noisy = False  # no log line per connection

    def __init__(self, reactor, server: tuple[str, int], query: bytes, timeout_s: float):
        self.exchange = TcpExchange(query)
        self.done = defer.Deferred()
        self.closed = defer.Deferred()
        self.protocol: _TcpAnswerProtocol | None = None
        self.timeout_s = timeout_s
        self.timer = reactor.callLater(timeout_s, self.abort, f"no TCP answer within {timeout_s:g} s")
        self.connector = reactor.connectTCP(server[0], server[1], self)

    def buildProtocol(self, addr) -> _TcpAnswerProtocol:
        return _TcpAnswerProtocol(self)

    def clientConnectionFailed(self, connector, reason) -> None:
        self.finish(LookupFailed(f"TCP connection failed: {reason.getErrorMessage()}"))
        self.socket_gone()

    def abort(self, why: str) -> None:
        """Give up now (timeout, resolver closed): drop the connection, fail ``done``."""
        if self.done.called:
            return
        self.finish(LookupFailed(why))
        if self.protocol is not None:
            self.protocol.transport.abortConnection()
        else:
            try:
                self.connector.stopConnecting()  # closes the socket at once
            except NotConnectingError:
                pass
            self.socket_gone()

    def socket_gone(self) -> None:
        if not self.closed.called:
            self.closed.callback(None)

    def finish(self, outcome) -> None:
        if self.done.called:  # the second of e.g. "answer received" and "connection lost"
            return
        if self.timer.active():
            self.timer.cancel()
        if isinstance(outcome, Exception):
            self.done.errback(outcome)
        else:
            self.done.callback(outcome)


# What a network's resolvers did for its phones (report.json's network.dns_lookups):
# lookups asked for, those a phone's cache answered (a negative answer it keeps too, which
# also counts as a failure), UDP queries sent (resends included),
# lookups that failed, lookups held for a query ID, truncated replies, and the TCP
# questions they led to and those that brought nothing.
LOOKUP_COUNTERS = ("lookups", "cache_hits", "queries", "failures", "held", "truncated", "tcp_queries",
                   "tcp_failures")


def lookup_counters() -> dict[str, int]:
    return dict.fromkeys(LOOKUP_COUNTERS, 0)


def no_name_servers(name: str) -> defer.Deferred:
    """The lookup of a phone whose lease named no DNS server (no option 6): it fails at once."""
    return defer.fail(LookupFailed(f"{name}: no DNS server to ask: the phone's lease has none (DHCP option 6)"))


class LabResolver(DatagramProtocol):
    """``resolve(name)`` / ``resolve_all(name)`` against one DNS server on loopback.

    A phone's lookup passes ``dns``, the phone's own DNS client (``PhoneDns``: its
    answers, name -> (expiry, addresses), and its timing: ``tries`` UDP queries
    ``timeout_s`` apart); a caller that is not a phone passes none and shares the
    resolver's (``timeout_s``, ``attempts``), where one question on the wire serves
    everyone asking that name. A TCP question (after a truncated reply) is the
    resolver's timing.

    ``stats``: ``LOOKUP_COUNTERS`` (``stats=`` a network's dict, which all its resolvers
    count into): ``lookups`` asked for, ``cache_hits``, ``queries`` UDP queries sent,
    ``failures`` lookups that failed, ``held`` lookups that waited for a query ID
    (``QUERIES_IN_FLIGHT``), ``truncated`` TC replies received, ``tcp_queries`` TCP
    connections made for them, ``tcp_failures`` of those that brought no answer."""

    noisy = False
    # Every phone's question leaves from this resolver's one socket, told apart by its
    # 16-bit ID: beyond this many in flight a lookup waits for one to end (a fleet of real
    # phones has a socket each; a storm of tens of thousands of lookups at once here).
    QUERIES_IN_FLIGHT = 32768

    def __init__(self, reactor, server: tuple[str, int], *, timeout_s: float = 1.0, attempts: int = 3,
                 guard=loopback_address, bind_host: str = "127.0.0.1", stats: dict[str, int] | None = None):
        # The lab's safety rule (guard.py), here rather than only in the callers: every
        # packet this resolver sends, UDP or TCP, goes to ``server`` and nowhere else.
        # ``guard``: loopback_address, or a real network's allow-list check.
        self.server = (guard(server[0]), server[1])
        self.reactor = reactor
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.codec = DnsResolver()
        self.rng = random.Random()
        self._shared = PhoneDns(timeout_s, attempts)  # for callers that are not phones
        self._answers_kept: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._queries: dict[int, _Query] = {}
        self._waiting: dict[str, list[defer.Deferred]] = {}
        self._held: deque[_Query] = deque()  # waiting for a query ID (QUERIES_IN_FLIGHT)
        self._connections: set[_TcpAttempt] = set()  # TCP sockets not yet closed: close() waits for them
        self.stats = lookup_counters() if stats is None else stats
        # --pcap: the run sets it (observe.pcap.PcapCapture), and every UDP query and reply
        # to one is written to the capture as it passes.
        self.capture = None
        self.bind_host = bind_host
        self.port = self._open(reactor, bind_host)

    # The two ways out, for a resolver over another network (the in-memory lab: labsim.virtual.dns).
    def _open(self, reactor, bind_host: str):
        """The UDP port this resolver sends from (it becomes ``self.transport``): every
        phone's answers arrive on it, a burst in a storm (a buffer as the DNS server's)."""
        return bind_udp(reactor, self, bind_host, 0, recv_buffer=RECV_BUFFER)

    def _tcp_attempt(self, message: bytes):
        """One TCP question (``done``, ``closed``, ``abort``: see _TcpAttempt)."""
        return _TcpAttempt(self.reactor, self.server, message, self.timeout_s)

    def resolve(self, name: str, dns: PhoneDns | None = None) -> defer.Deferred:
        """The first IPv4 address of ``name`` (CNAMEs followed), or LookupFailed."""
        return self.resolve_all(name, dns).addCallback(lambda addresses: addresses[0])

    def resolve_with(self, name: str, name_servers: tuple[str, ...] | None,
                     dns: PhoneDns | None = None) -> defer.Deferred:
        """``resolve(name, dns)`` as a phone whose lease gave it ``name_servers`` (DHCP
        option 6) asks: None (not said), or a list with the lab's DNS in it: the lab's DNS answers.
        An empty list: the phone has no one to ask and fails at once. Servers that are
        not the lab's DNS: the phone asks them and hears nothing (labsim sends nowhere
        but the lab's DNS), so it fails after its tries, ``timeout_s`` apart."""
        if name_servers is None or self.server[0] in name_servers:
            return self.resolve(name, dns)
        self.stats["lookups"] += 1
        self.stats["failures"] += 1
        if not name_servers:
            return no_name_servers(name)
        problem = dns_name_problem(name)
        if problem is not None:  # asked of nobody, as on the lab's DNS (_send)
            return defer.fail(LookupFailed(f"{name}: no DNS name ({problem}): nothing asked"))
        client = dns or self._shared
        if self.capture is not None:
            self._capture_unanswered(name, name_servers, client)
        waiting = defer.Deferred()
        self.reactor.callLater(client.timeout_s * client.tries, waiting.errback, LookupFailed(
            f"{name}: no answer from {', '.join(name_servers)} (the lease's DNS servers, DHCP option 6), "
            f"which are not the lab's DNS {self.server[0]}"))
        return waiting

    def _capture_unanswered(self, name: str, name_servers: tuple[str, ...], client: PhoneDns) -> None:
        """--pcap: the queries a phone sends the servers its lease names, one a try, the
        servers in turn, ``timeout_s`` apart, none answered. Made up: labsim sends nothing
        there (the lab's safety rule), but the capture shows what went wrong on the wire."""
        message = query_bytes(name, QTYPE_A, self.rng.getrandbits(16))
        for attempt in range(client.tries):
            server = name_servers[attempt % len(name_servers)]
            self.reactor.callLater(attempt * client.timeout_s, self._capture_query, message, server)

    def _capture_query(self, message: bytes, server: str) -> None:
        self.capture.dns_datagram(self.reactor.seconds(), message, self.bind_host, server, query=True)

    def resolve_all(self, name: str, dns: PhoneDns | None = None) -> defer.Deferred:
        """Every IPv4 address of ``name`` in the server's order (never empty), or
        LookupFailed. ``dns``: the asking phone's client (the class's docstring)."""
        self.stats["lookups"] += 1
        key = name.lower().rstrip(".")
        client = dns or self._shared
        cached = client.answers.get(key)
        if cached is not None:
            if cached[0] > self.reactor.seconds():
                self.stats["cache_hits"] += 1
                if isinstance(cached[1], str):  # a negative answer it keeps (RFC 2308)
                    self.stats["failures"] += 1
                    return defer.fail(LookupFailed(f"{key}: {cached[1]} (kept from an earlier answer for "
                                                   f"{cached[0] - self.reactor.seconds():.0f} s more, RFC 2308)"))
                return defer.succeed(list(cached[1]))
            del client.answers[key]  # its TTL is over: the phone asks again
        if dns is not None:  # a phone asks for itself, whatever the others are asking
            return self._ask(key, dns).addErrback(self._count_failure)
        waiting = defer.Deferred()
        if key in self._waiting:  # one query on the wire per name, however many callers ask
            self._waiting[key].append(waiting)
            return waiting
        self._waiting[key] = [waiting]
        self._ask(key, client).addBoth(self._settle, key)
        return waiting

    def _ask(self, key: str, client: PhoneDns) -> defer.Deferred:
        """One question on the wire, now, or once a query ID is free."""
        query = _Query(key, None, defer.Deferred(), client)
        if len(self._queries) >= self.QUERIES_IN_FLIGHT:
            self.stats["held"] += 1
            self._held.append(query)
        else:
            self._start(query)
        return query.deferred

    def _start(self, query: _Query) -> None:
        query.qid = qid = self._free_qid()
        self._queries[qid] = query
        self._send(query)

    def _free_qid(self) -> int:
        while True:
            qid = self.rng.getrandbits(16)
            if qid not in self._queries:
                return qid

    def _count_failure(self, failure):
        self.stats["failures"] += 1
        return failure

    def _send(self, query: _Query) -> None:
        try:
            message = self.codec.build_query(query.name, "A", query.qid)
        except DnsLookupError as exc:  # a name no query can carry: the phone asks nobody
            self._fail(query, str(exc))
            return
        query.tries += 1
        self.stats["queries"] += 1
        self.transport.write(message, self.server)
        if self.capture is not None:
            self.capture.dns_datagram(self.reactor.seconds(), message, self.bind_host, self.server[0], query=True)
        query.timer = self.reactor.callLater(query.client.timeout_s, self._timed_out, query)

    def _timed_out(self, query: _Query) -> None:
        if query.tries >= query.client.tries:
            self._fail(query, f"no answer from the lab DNS {self.server[0]}:{self.server[1]}")
        else:
            self._send(query)

    def datagramReceived(self, data: bytes, addr) -> None:
        if len(data) < 2:
            return
        query = self._queries.get(int.from_bytes(data[:2], "big"))
        if query is None or query.over_tcp:
            return
        if self.capture is not None:
            self.capture.dns_datagram(self.reactor.seconds(), data, self.bind_host, self.server[0], query=False)
        if is_truncated(data):
            self.stats["truncated"] += 1
            self._cancel_timer(query)
            query.over_tcp = True
            query.tries = 0  # the server is up (it answered): TCP gets its own attempts
            self._send_tcp(query)
            return
        self._answered(query, data)

    def _send_tcp(self, query: _Query) -> None:
        query.tries += 1
        self.stats["tcp_queries"] += 1
        message = self.codec.build_query(query.name, "A", query.qid)
        query.tcp = attempt = self._tcp_attempt(message)
        self._connections.add(attempt)
        attempt.closed.addCallback(lambda _: self._connections.discard(attempt))
        attempt.done.addCallbacks(self._tcp_answered, self._tcp_failed, callbackArgs=(query,), errbackArgs=(query,))

    def _tcp_answered(self, data: bytes, query: _Query) -> None:
        query.tcp = None
        if self._queries.get(query.qid) is query:  # not given up on meanwhile (close())
            self._answered(query, data)

    def _tcp_failed(self, failure, query: _Query) -> None:
        failure.trap(LookupFailed)
        query.tcp = None
        if self._queries.get(query.qid) is not query:  # given up on already (close())
            return
        self.stats["tcp_failures"] += 1
        if query.tries >= self.attempts:
            self._fail(query, f"{failure.getErrorMessage()} (the UDP answer from the lab DNS "
                              f"{self.server[0]}:{self.server[1]} was truncated)")
        else:
            self._send_tcp(query)

    def _answered(self, query: _Query, data: bytes) -> None:
        """A whole reply (UDP, or TCP after a truncated one) settles the lookup."""
        try:
            answers, ttl = self.codec.parse_answer_and_ttl(data)
        except DnsLookupError as exc:
            if exc.rcode in RCODE_WORDS:  # the server's own answer, in words
                why = f"{RCODE_WORDS[exc.rcode]} from the lab DNS {self.server[0]}:{self.server[1]}"
                self._keep_negative(query, why, exc.negative_ttl)
                self._fail(query, why)
            else:
                self._fail(query, str(exc))
            return
        addresses = [a for a in answers if isinstance(a, str) and a.count(".") == 3]
        if not addresses:
            why = f"no A record at the lab DNS {self.server[0]}:{self.server[1]}"
            self._keep_negative(query, why, ttl)
            self._fail(query, why)
            return
        self._finish(query)
        if ttl > 0:  # RFC 1035 3.2.1: zero means use it once, keep it not
            # The same few answers in thousands of phones' caches: one tuple each (a
            # bounded table: a server rotating many addresses gets no sharing past it).
            kept = tuple(addresses)
            if len(self._answers_kept) < ANSWERS_SHARED:
                kept = self._answers_kept.setdefault(kept, kept)
            query.client.answers[query.name] = (self.reactor.seconds() + ttl, kept)
        query.deferred.callback(list(addresses))

    def _keep_negative(self, query: _Query, why: str, ttl: int | None) -> None:
        """A phone that keeps negative answers (RFC 2308) keeps this one for ``ttl``
        seconds, as the SOA of the server's reply said (no SOA, or 0: not kept)."""
        if ttl and query.client.negative_caching:
            query.client.answers[query.name] = (self.reactor.seconds() + ttl, why)

    def _fail(self, query: _Query, why: str) -> None:
        self._finish(query)
        query.deferred.errback(LookupFailed(f"{query.name}: {why}"))

    def _cancel_timer(self, query: _Query) -> None:
        if query.timer is not None and query.timer.active():
            query.timer.cancel()

    def _finish(self, query: _Query) -> None:
        self._queries.pop(query.qid, None)
        self._cancel_timer(query)
        if query.tcp is not None:
            attempt, query.tcp = query.tcp, None
            attempt.abort("lookup ended")
        if self._held and len(self._queries) < self.QUERIES_IN_FLIGHT:
            self._start(self._held.popleft())  # its ID is free now

    def _settle(self, result, key: str):
        if isinstance(result, Exception) or hasattr(result, "getErrorMessage"):
            self.stats["failures"] += 1
        for waiting in self._waiting.pop(key, []):
            if hasattr(result, "getErrorMessage"):
                waiting.errback(result)
            else:
                waiting.callback(list(result))
        return None

    def close(self) -> defer.Deferred:
        """Give up on lookups in flight; fires when the UDP port and every TCP socket are closed."""
        self._held.clear()
        for query in list(self._queries.values()):
            self._finish(query)
        waits = [defer.maybeDeferred(self.port.stopListening)] + [a.closed for a in list(self._connections)]
        return defer.gatherResults(waits, consumeErrors=True).addCallback(lambda _: None)

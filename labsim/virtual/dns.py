"""DNS in the in-memory lab: the phones' resolver (``transport.dns_lookup.LabResolver``:
each phone's own question and cache of answers for the records' TTL, its vendor's
tries, TC -> TCP) asking labsim's
own DNS answerer (``wire.dns_records.DnsAnswerer``), every datagram through the
scenario's ``dns`` faults both ways as on sockets; over TCP a ``down`` fault refuses the
connection and delays hold the answer. Only the sockets are left out.
"""

from __future__ import annotations

import random

from twisted.internet import defer

from labsim.transport.dns_lookup import LabResolver, LookupFailed

LATENCY_S = 0.001  # as every hop of the in-memory lab


class VirtualResolver(LabResolver):
    """``resolve(name)`` through the lab's DNS service as ``services.dns_answerer()`` finds
    it (None while stopped: the queries go unanswered and time out)."""

    def __init__(self, clock, server: tuple[str, int], answerer, link=None, stats: dict[str, int] | None = None):
        self._answerer = answerer
        self._link = link
        super().__init__(clock, server, stats=stats)
        self.rng = random.Random(0)  # query ids: the same run every time

    def _open(self, reactor, bind_host: str):
        self.transport = _Datagrams(self)
        return _Port()

    def _tcp_attempt(self, message: bytes):
        return _TcpQuestion(self, message)


class _Port:
    @staticmethod
    def stopListening():
        return None


class _Datagrams:
    """The resolver's UDP socket: a query goes to the answerer, its reply comes back a hop later."""

    def __init__(self, resolver: VirtualResolver):
        self.resolver = resolver

    def write(self, data: bytes, addr) -> None:
        link = self.resolver._link
        if link is None:
            self._at_server(data, addr)
        else:
            link.carry("in", data, lambda query: self._at_server(query, addr))

    def _at_server(self, query: bytes, addr) -> None:
        resolver = self.resolver
        answerer = resolver._answerer()
        reply = answerer.handle(query) if answerer is not None else None
        if reply is None:
            return
        clock, link = resolver.reactor, resolver._link
        if link is None:
            clock.callLater(LATENCY_S, resolver.datagramReceived, reply, addr)
        else:
            clock.callLater(LATENCY_S, link.carry, "out", reply, lambda data: resolver.datagramReceived(data, addr))


class _TcpQuestion:
    """One question over TCP (after a truncated UDP reply), as ``_TcpAttempt`` answers it:
    ``done`` with the reply or LookupFailed (refused, or no answer within the timeout)."""

    def __init__(self, resolver: VirtualResolver, message: bytes):
        self.done = defer.Deferred()
        self.closed = defer.succeed(None)
        clock, link, answerer = resolver.reactor, resolver._link, resolver._answerer()
        self._timer = clock.callLater(resolver.timeout_s, self.abort, f"no TCP answer within {resolver.timeout_s:g} s")
        if answerer is None or (link is not None and link.refuses()):
            clock.callLater(LATENCY_S, self._finish, LookupFailed("TCP connection failed: Connection was refused "
                                                                  "by other side: 111: Connection refused."))
            return
        reply = answerer.handle(message, over_tcp=True)
        delay = LATENCY_S + (link.answer_delay() if link is not None else 0.0)
        clock.callLater(delay, self._finish, reply if reply is not None else
                        LookupFailed("TCP connection closed before the whole answer came"))

    def abort(self, why: str) -> None:
        self._finish(LookupFailed(why))

    def _finish(self, outcome) -> None:
        if self.done.called:
            return
        if self._timer.active():
            self._timer.cancel()
        if isinstance(outcome, Exception):
            self.done.errback(outcome)
        else:
            self.done.callback(outcome)

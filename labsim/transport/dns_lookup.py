"""Host names in provisioning URLs, resolved through the lab's DNS server only.

Phones must never reach the machine's own resolver (it would send queries to whatever
/etc/resolv.conf names), so names are looked up with dnslib's codec over one UDP socket
to the scenario's DNS server on loopback. Answers are cached for the run (a fleet asks
the same few names thousands of times); a failed lookup is retried ``attempts`` times.
"""

from __future__ import annotations

import random

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol

from labsim.services.udp import bind_udp
from labsim.wire.dns_records import DnsLookupError, DnsResolver


class LookupFailed(Exception):
    pass


class _Query:
    def __init__(self, name: str, qid: int, deferred: defer.Deferred):
        self.name = name
        self.qid = qid
        self.deferred = deferred
        self.tries = 0
        self.timer = None


class LabResolver(DatagramProtocol):
    noisy = False

    def __init__(self, reactor, server: tuple[str, int], *, timeout_s: float = 1.0, attempts: int = 3,
                 cache_s: float = 300.0):
        self.reactor = reactor
        self.server = server
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.cache_s = cache_s
        self.codec = DnsResolver()
        self.rng = random.Random()
        self._cache: dict[str, tuple[float, str]] = {}
        self._queries: dict[int, _Query] = {}
        self._waiting: dict[str, list[defer.Deferred]] = {}
        self.stats = {"queries": 0, "cache_hits": 0, "failures": 0}
        self.port = bind_udp(reactor, self, "127.0.0.1", 0)

    def resolve(self, name: str) -> defer.Deferred:
        """The first IPv4 address of ``name`` (CNAMEs followed), or LookupFailed."""
        key = name.lower().rstrip(".")
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self.reactor.seconds():
            self.stats["cache_hits"] += 1
            return defer.succeed(cached[1])
        waiting = defer.Deferred()
        if key in self._waiting:  # one query on the wire per name, however many phones ask
            self._waiting[key].append(waiting)
            return waiting
        self._waiting[key] = [waiting]
        qid = self._free_qid()
        query = _Query(key, qid, defer.Deferred())
        self._queries[qid] = query
        query.deferred.addBoth(self._settle, key)
        self._send(query)
        return waiting

    def _free_qid(self) -> int:
        while True:
            qid = self.rng.getrandbits(16)
            if qid not in self._queries:
                return qid

    def _send(self, query: _Query) -> None:
        query.tries += 1
        self.stats["queries"] += 1
        self.transport.write(self.codec.build_query(query.name, "A", query.qid), self.server)
        query.timer = self.reactor.callLater(self.timeout_s, self._timed_out, query)

    def _timed_out(self, query: _Query) -> None:
        if query.tries >= self.attempts:
            self._queries.pop(query.qid, None)
            query.deferred.errback(LookupFailed(f"{query.name}: no answer from the lab DNS {self.server[0]}:{self.server[1]}"))
        else:
            self._send(query)

    def datagramReceived(self, data: bytes, addr) -> None:
        if len(data) < 2:
            return
        query = self._queries.get(int.from_bytes(data[:2], "big"))
        if query is None:
            return
        try:
            answers = self.codec.parse_answer(data)
        except DnsLookupError as exc:
            self._finish(query)
            query.deferred.errback(LookupFailed(f"{query.name}: {exc}"))
            return
        self._finish(query)
        addresses = [a for a in answers if isinstance(a, str) and a.count(".") == 3]
        if not addresses:
            query.deferred.errback(LookupFailed(f"{query.name}: no A record"))
            return
        self._cache[query.name] = (self.reactor.seconds() + self.cache_s, addresses[0])
        query.deferred.callback(addresses[0])

    def _finish(self, query: _Query) -> None:
        self._queries.pop(query.qid, None)
        if query.timer is not None and query.timer.active():
            query.timer.cancel()

    def _settle(self, result, key: str):
        if isinstance(result, Exception) or hasattr(result, "getErrorMessage"):
            self.stats["failures"] += 1
        for waiting in self._waiting.pop(key, []):
            if hasattr(result, "getErrorMessage"):
                waiting.errback(result)
            else:
                waiting.callback(result)
        return None

    def close(self):
        for query in list(self._queries.values()):
            self._finish(query)
        return defer.maybeDeferred(self.port.stopListening)

"""At most so many of a fleet's TFTP transfers to one server at once; the rest wait their turn.

A storm of thousands of lobby phones asking one TFTP server at the same instant queued
every request in the server's socket, and when the simulator's own process was short of
CPU (one process, 100,000 phones, other jobs on the machine) the server read them more
than 31 s late: the phones' client had given up (its RFC 1123 back-off, 1+2+4+8+8+8 s),
three attempts in a row, and 377 phones ended ``failed`` for the simulator's reasons,
not the server's. The HTTP client has the same limit as its connection pool (512 per
server, ``transport.http_fetch``); a TFTP transfer has no connection to reuse, so the
gate is a count. A transfer's clock starts when it leaves the queue (``tftp_get`` is
called then), so time spent waiting here never counts against a phone.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from twisted.internet import defer

# Like HttpFetcher's connections per server. A real server sees at most this many of one
# fleet's transfers at a time; a storm bigger than that is spread out by the fleet.
TRANSFERS_PER_SERVER = 512


class TransferGate:
    """Runs ``start()`` (which returns a Deferred) now if fewer than ``limit`` run, else when one ends."""

    def __init__(self, limit: int = TRANSFERS_PER_SERVER):
        if limit < 1:
            raise ValueError("a transfer gate lets at least one transfer through")
        self.limit = limit
        self.running = 0
        self.waited = 0  # how many transfers had to wait (reported with the fleet's network counters)
        self._waiting: deque[tuple[Callable[[], defer.Deferred], defer.Deferred]] = deque()
        self._admitting = False

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def run(self, start: Callable[[], defer.Deferred]) -> defer.Deferred:
        if self.running < self.limit:
            return self._start(start)
        self.waited += 1
        turn = defer.Deferred()
        self._waiting.append((start, turn))
        return turn

    def _start(self, start) -> defer.Deferred:
        self.running += 1
        transfer = defer.maybeDeferred(start)
        transfer.addBoth(self._ended)
        return transfer

    def _ended(self, result):
        self.running -= 1
        self._admit()
        return result

    def _admit(self) -> None:
        # A loop, not a recursion: a transfer that ends at once (a port that cannot be
        # bound) ends inside _start, and a queue of 50,000 such would overflow the stack.
        if self._admitting:
            return
        self._admitting = True
        try:
            while self._waiting and self.running < self.limit:
                start, turn = self._waiting.popleft()
                self._start(start).chainDeferred(turn)
        finally:
            self._admitting = False

"""Power-on at a rate: one timer releases every phone that is due, instead of a timer each.

An arrival pattern (a ramp of 5,000 phones/s, a storm spread over a second) is a
schedule. With one ``callLater`` per phone, 10,000+ pending DelayedCalls sit in the
reactor's heap, and after any stall the reactor fires all the overdue ones in one pass:
the DISCOVERs leave in bursts of hundreds where the schedule asks for a dozen, and a
server's receive queue overflows (issue 12, measured against Kea). Here the schedule is
one sorted list and one timer, always armed for the next phone's moment; each firing
releases every phone due by then, and records how late each one was against its own
moment (``lateness_ms``: a histogram by the nearest millisecond, whose counts add up across
shards, unlike percentiles).
"""

from __future__ import annotations

from typing import Callable

from twisted.python import log

# Lateness at or beyond this many milliseconds is counted in the last bucket.
LATENESS_CAP_MS = 1000


class Pacer:
    def __init__(self, clock, on_done: Callable[[], None] | None = None):
        """``on_done``: called once, when the last phone has been released or on ``stop``."""
        self.clock = clock
        self.on_done = on_done
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._next = 0  # index of the next call to release
        self._timer = None
        self.lateness_ms: dict[str, int] = {}

    def schedule(self, calls: list[tuple[float, Callable[[], None]]]) -> None:
        """``calls``: (absolute reactor time, function) pairs; released in time order
        (ties in the order given). Call once, before ``start``."""
        self._due = sorted((when, order, call) for order, (when, call) in enumerate(calls))
        self._next = 0

    def start(self) -> None:
        self._arm(self.clock.seconds())

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._done()

    def _done(self) -> None:
        on_done, self.on_done = self.on_done, None
        if on_done is not None:
            on_done()

    @property
    def pending(self) -> int:
        return len(self._due) - self._next

    def _arm(self, now: float) -> None:
        self._timer = None
        if self._next < len(self._due):
            self._timer = self.clock.callLater(max(0.0, self._due[self._next][0] - now), self._release)
        else:
            self._done()

    def _release(self) -> None:
        now = self.clock.seconds()
        due, lateness = self._due, self.lateness_ms
        index = self._next
        while index < len(due) and due[index][0] <= now:
            when, _, call = due[index]
            due[index] = None  # let the phone's closure go
            index += 1
            self._next = index
            bucket = str(min(round((now - when) * 1000), LATENESS_CAP_MS))
            lateness[bucket] = lateness.get(bucket, 0) + 1
            try:
                call()
            except Exception:  # one phone's bug must not stop the others' power-on
                log.err(None, "labsim: power-on failed")
        if index >= len(due):
            self._due = []
            self._next = 0
        self._arm(now)


def lateness_percentile(histogram: dict[str, int], fraction: float) -> float | None:
    """The ``fraction`` percentile (0.99: p99) of a ``lateness_ms`` histogram, in ms
    (its bucket, to the millisecond); None when empty."""
    total = sum(histogram.values())
    if not total:
        return None
    wanted = fraction * total
    seen = 0
    for bucket in sorted(histogram, key=int):
        seen += histogram[bucket]
        if seen >= wanted:
            return float(bucket)
    return float(max(histogram, key=int))

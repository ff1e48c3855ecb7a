"""Fewer full garbage collections while a power-on schedule runs.

What a run builds before its start instant is frozen out of the collector's sight
(``gc.freeze`` in run.py), but everything made during a storm (DHCP messages, leases,
timers, event rows) lands in the oldest generation, and CPython walks all of it in a
full collection. Measured in a 20,000-phone DHCP fleet at 5,000 phones/s against Kea:
3-4 full collections in the 4 s of power-on, each 64-74 ms of CPU in which the reactor
stands still, so the pacer's next tick is late by as much and releases a burst of phones
at once (what overflows a server's receive queue). The young generations are cheap
(0.1 ms and 1-3 ms a pass) and still collect the short-lived cycles.

While the schedule runs, a full collection waits for ``HELD_FULL_THRESHOLD`` young
(generation-1) passes instead of CPython's 10: none in a storm of that size, one every
~10 s in a long one at that rate, so garbage in the oldest generation still goes, only
later. The thresholds are put back when the last phone is powered on (or the run ends).
"""

from __future__ import annotations

import gc

HELD_FULL_THRESHOLD = 100  # generation-1 passes per full one while phones power on (CPython: 10)


class FullCollectionsHeld:
    """``hold()`` raises the full-collection threshold, ``release()`` puts it back; both
    may be called more than once."""

    def __init__(self, threshold: int = HELD_FULL_THRESHOLD):
        self.threshold = threshold
        self._saved: tuple[int, int, int] | None = None

    @property
    def held(self) -> bool:
        return self._saved is not None

    def hold(self) -> None:
        if self._saved is not None:
            return
        self._saved = gc.get_threshold()
        young, middle, full = self._saved
        gc.set_threshold(young, middle, max(full, self.threshold))

    def release(self) -> None:
        if self._saved is None:
            return
        gc.set_threshold(*self._saved)
        self._saved = None

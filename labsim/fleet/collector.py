"""Short garbage collections while a power-on schedule runs, and fewer walks over what a
long run keeps (``SurvivorsFrozen``, at the end).

What a run builds before its start instant is frozen out of the collector's sight
(``gc.freeze`` in run.py), but everything made during a storm (DHCP messages, leases,
timers, event rows) lands in the collector's generations, and each pass stands the
reactor still: the pacer's next tick is late by as much and releases a burst of phones
at once (what overflows a server's receive queue). While the schedule runs:

- **Full collections wait** for ``HELD_FULL_THRESHOLD`` generation-1 passes instead of
  CPython's 10. A full pass walks everything the storm made: measured in a 20,000-phone
  DHCP fleet at 5,000 phones/s against Kea, 3-4 of them in the 4 s of power-on, each
  64-74 ms of CPU. Held, none in a storm of that size, one every ~10 s in a long one at
  that rate: garbage in the oldest generation still goes, only later.
- **Generation 1 is collected after every generation-0 pass or two** instead of every
  tenth (``HELD_MIDDLE_THRESHOLD``). A generation-1 pass walks what survived the young
  passes since the one before, and a storm's phones keep most of what they make (their
  timers, leases, state): ten passes' worth was 2-9 ms of CPU a pass, as long a stall as
  the schedule's target. One pass's worth is under 1 ms, and fewer objects are walked
  altogether (a 20,000-phone DHCP storm in process: 87-102 ms of young and middle passes
  instead of 151-155 ms, the longest 0.6 ms instead of 2.4-2.7 ms).

The thresholds are put back when the last phone is powered on (or the run ends).
"""

from __future__ import annotations

import gc

HELD_MIDDLE_THRESHOLD = 1  # generation-0 passes per generation-1 one while phones power on (CPython: 10)
# Generation-1 passes per full one while phones power on (CPython: 10). A generation-1
# pass now comes every third young pass instead of every eleventh, so 400 holds a full
# pass off about as long as 100 did with CPython's middle threshold.
HELD_FULL_THRESHOLD = 400


class FullCollectionsHeld:
    """``hold()`` sets the thresholds above, ``release()`` puts CPython's back; both may be
    called more than once."""

    def __init__(self, threshold: int = HELD_FULL_THRESHOLD, middle: int = HELD_MIDDLE_THRESHOLD):
        self.threshold = threshold
        self.middle = middle
        self._saved: tuple[int, int, int] | None = None

    @property
    def held(self) -> bool:
        return self._saved is not None

    def hold(self) -> None:
        if self._saved is not None:
            return
        self._saved = gc.get_threshold()
        young, middle, full = self._saved
        gc.set_threshold(young, min(middle, self.middle), max(full, self.threshold))

    def release(self) -> None:
        if self._saved is None:
            return
        gc.set_threshold(*self._saved)
        self._saved = None


# A full collection walks every object the run keeps, again and again, though nearly all
# of it lives on: a 10,000-phone week in virtual time ran ~46 full collections a
# simulated day, each ~0.22 s of CPU (12 % of the run). Freezing what one leaves makes the
# next walk only what is newer. Something frozen that later becomes garbage in a cycle
# is not freed until the next walk of everything: that comes every RESCAN_EVERY-th full
# collection (measured: a 10,000-phone day with the collector off entirely peaked 2 %
# above one with it on: the run makes little cyclic garbage).
RESCAN_EVERY = 10


class SurvivorsFrozen:
    """While installed, what survives a full collection is frozen (``gc.freeze``), and
    every ``rescan_every``-th full collection walks everything again (``gc.unfreeze``
    first). ``remove()`` stops it; what is frozen stays frozen (the run unfreezes at its
    end, as it does what it froze at its start)."""

    def __init__(self, rescan_every: int = RESCAN_EVERY):
        self.rescan_every = rescan_every
        self.full_collections = 0

    def install(self) -> None:
        if self._on_collection not in gc.callbacks:
            gc.callbacks.append(self._on_collection)

    def remove(self) -> None:
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)

    def _on_collection(self, phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self.full_collections += 1
            if self.full_collections % self.rescan_every == 0:
                gc.unfreeze()  # this one walks everything: frozen cycles that died go now
        else:
            gc.freeze()

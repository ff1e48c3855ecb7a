"""A run's download latencies, counted by value while they repeat.

A week of 10,000 phones resyncing hourly downloads ~6.7 million files. In virtual time
a download without faults takes a whole number of hops, so those millions are a handful
of distinct values: each is kept once with how many times it was seen. On sockets every
latency differs; past ``DISTINCT_MAX`` distinct values they are kept one by one, 8 bytes
each, as an ``array`` (a dict entry per value would cost ten times that).

Either way the statistics are those of the sorted list of every value
(``observe.stats``): the same nearest-rank percentiles, and the same mean, summed in the
same order, so a report does not depend on how its latencies were kept.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import Counter
from itertools import chain, repeat

from labsim.observe.stats import STATISTICS, rounded, statistic

DISTINCT_MAX = 4096


class Latencies:
    """A multiset of floats: ``append``, ``extend``, ``update`` (another's), ``len``,
    iteration in ascending order, ``items()`` ((value, count) ascending) and ``summary()``
    (``observe.stats.summarize`` of every value).

    ``append`` is an array's own (a C call: a long run adds millions, one at a time); what
    it gathered is counted when the values are next read, or when ``fold()`` is called (an
    owner adding for a long time calls it now and then to keep that array short)."""

    __slots__ = ("_counts", "_values", "_pending", "append", "_ordered")

    def __init__(self, values=()):
        self._counts: Counter | None = Counter()  # value -> times seen, until too many distinct values
        self._values: array | None = None  # then every value
        self._pending = array("d")  # appended, not yet counted
        self.append = self._pending.append
        self._ordered: list[float] | None = None  # every value sorted, kept for ``statistic`` once they differ
        self.extend(values)

    @property
    def counted(self) -> bool:
        """True while values are kept once each with a count."""
        self.fold()
        return self._counts is not None

    def fold(self) -> None:
        """Count what ``append`` gathered."""
        pending = self._pending
        if not pending:
            return
        first = pending[0]
        alike = pending.count(first)  # a C scan: in virtual time a stage's downloads mostly take one value
        if alike == len(pending) and self._counts is not None and first in self._counts:
            self._counts[first] += alike
        else:
            self._add(pending)
        del pending[:]  # the same array: ``append`` is its method

    def extend(self, values) -> None:
        self.fold()
        self._add(values)

    def _add(self, values) -> None:
        counts = self._counts
        if counts is None:
            self._values.extend(values)
            return
        counts.update(values)  # counted in C
        if len(counts) > DISTINCT_MAX:
            self._spill()

    def add_counts(self, pairs) -> None:
        """Add (value, count) pairs (another's ``items()``, a record read back)."""
        self.fold()
        counts = self._counts
        if counts is None:
            for value, times in pairs:
                self._values.extend(repeat(value, times))
            return
        for value, times in pairs:
            counts[value] += times
        if len(counts) > DISTINCT_MAX:
            self._spill()

    def update(self, other: Latencies) -> None:
        other.fold()
        if other._counts is not None:
            self.add_counts(other._counts.items())
        else:
            self.extend(other._values)

    def _spill(self) -> None:
        self._values = array("d", chain.from_iterable(repeat(value, times) for value, times in self._counts.items()))
        self._counts = None

    def __len__(self) -> int:
        self.fold()
        return len(self._values) if self._counts is None else self._counts.total()

    def __iter__(self):
        """Every value, in ascending order."""
        return chain.from_iterable(repeat(value, times) for value, times in self.items())

    def as_array(self) -> array:
        """Every value as doubles: as kept once they differ, else ascending."""
        self.fold()
        if self._counts is None:
            return self._values
        return array("d", iter(self))

    def items(self) -> list[tuple[float, int]]:
        """(value, times seen), ascending by value."""
        self.fold()
        counts = self._counts if self._counts is not None else Counter(self._values)
        return sorted(counts.items())

    def summary(self) -> dict:
        """``observe.stats.summarize`` of every value."""
        self.fold()
        if self._counts is None:
            ordered = sorted(self._values)
            return {name: statistic(ordered, name) for name in STATISTICS}
        items, total = self.items(), self._counts.total()  # sorted once for every statistic
        return {name: _counted_statistic(items, total, name) for name in STATISTICS}

    def statistic(self, name: str) -> float | int | None:
        """One of ``STATISTICS``, as ``summary()`` gives it, for a reader that asks again and
        again while values arrive (a pending ``when:`` on a stage): from the counts, or,
        once the values differ, from a sorted list kept up to date with what was added."""
        self.fold()
        if self._counts is not None:
            return _counted_statistic(self.items(), self._counts.total(), name)
        ordered = self._ordered
        if ordered is None:
            ordered = self._ordered = sorted(self._values)
        elif len(ordered) < len(self._values):
            added = self._values[len(ordered):]
            if len(added) < 64:  # a few: each into its place
                for value in added:
                    bisect.insort(ordered, value)
            else:  # a sorted run and the rest: one merge
                ordered.extend(added)
                ordered.sort()
        return statistic(ordered, name)

    def __repr__(self) -> str:
        return f"Latencies({len(self)} values, {'counted' if self.counted else 'listed'})"


def _counted_statistic(items: list[tuple[float, int]], total: int, name: str) -> float | int | None:
    """``observe.stats.statistic`` of the sorted values ``items`` stand for, without making
    them: the rank walks the counts; the mean adds every value in ascending order, one by
    one, as ``sum`` over the sorted list does (the same float)."""
    if name == "count":
        return total
    if not items:
        return None
    if name == "max":
        return rounded(items[-1][0])
    if name == "mean":
        return rounded(sum(chain.from_iterable(repeat(value, times) for value, times in items)) / total)
    return rounded(counted_percentile(items, total, int(name[1:])))


def counted_items(values) -> list[tuple[float, int]]:
    """(value, count) ascending, of a Latencies or of any list of numbers."""
    if isinstance(values, Latencies):
        return values.items()
    return sorted(Counter(values).items())


def counted_percentile(items: list[tuple[float, int]], total: int, p: float) -> float | None:
    """``observe.stats.percentile`` (nearest rank) of the ``total`` sorted values that
    ``items`` ((value, count) ascending) stand for."""
    if not items:
        return None
    rank = max(1, math.ceil(p / 100 * total))
    seen = 0
    for value, times in items:
        seen += times
        if seen >= rank:
            return value
    raise ValueError(f"the counts add up to {seen}, not {total}")

"""Small statistics for reports: nearest-rank percentiles."""

from __future__ import annotations

import math

STATISTICS = ("count", "p50", "p90", "p95", "p99", "max", "mean")  # a summary's keys, in the report's order


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when there are none)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def statistic(ordered: list[float], name: str) -> float | int | None:
    """One of ``STATISTICS`` of already sorted values, as ``summarize`` gives it (a reader
    that keeps its values sorted, as the ``--workers`` parent judging a ``when:`` does,
    asks for the one it needs without sorting again)."""
    if name == "count":
        return len(ordered)
    if not ordered:
        return None
    if name == "max":
        return rounded(ordered[-1])
    if name == "mean":
        return rounded(sum(ordered) / len(ordered))
    return rounded(percentile(ordered, int(name[1:])))


def summarize(values) -> dict:
    """Every one of ``STATISTICS`` of ``values``: a list, or an ``observe.latencies.Latencies``
    (which works them out from its counts)."""
    if hasattr(values, "summary"):
        return values.summary()
    ordered = sorted(values)
    return {name: statistic(ordered, name) for name in STATISTICS}


def rounded(value: float) -> float:
    """A statistic as reports give it."""
    return round(value, 4)

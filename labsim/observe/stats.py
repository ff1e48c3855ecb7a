"""Small statistics for reports: nearest-rank percentiles."""

from __future__ import annotations

import math


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when there are none)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(values: list[float]) -> dict:
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, "p50": None, "p90": None, "p95": None, "p99": None, "max": None, "mean": None}
    return {
        "count": len(ordered),
        "p50": _r(percentile(ordered, 50)),
        "p90": _r(percentile(ordered, 90)),
        "p95": _r(percentile(ordered, 95)),
        "p99": _r(percentile(ordered, 99)),
        "max": _r(ordered[-1]),
        "mean": _r(sum(ordered) / len(ordered)),
    }


def _r(value: float) -> float:
    return round(value, 4)

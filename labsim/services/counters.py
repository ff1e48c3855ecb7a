"""Services' counters added up: the shards' or workers' of one run, and one service's
over each time the timeline started it (a service's counters in the report are the
run's, not its last start's)."""

from __future__ import annotations


def add_counters(items: list[dict]) -> dict:
    """Counters added key by key (nested dicts too); a text keeps the first value."""
    total: dict = {}
    for item in items:
        for key, value in (item or {}).items():
            if isinstance(value, dict):
                total[key] = add_counters([total.get(key) or {}, value])
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and \
                    isinstance(total.get(key, 0), (int, float)):
                total[key] = total.get(key, 0) + value
            else:
                total.setdefault(key, value)
    return total

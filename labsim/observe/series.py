"""Time series of a run, aggregated as it goes: requests per service and phones per state.

A week of 10,000 phones makes millions of requests; the report keeps counts, not the
requests. Each request adds one to its service's count for that second of the run (an
``array`` of 32-bit counts: 2.4 MB per service for a week), so the busiest second and
the busiest minute are exact. Phones per state are sampled at each bucket boundary from
the running counts. The report shows both per bucket, the bucket's size chosen from the
run's length: 1 s up to an hour (a boot storm), 1 min up to two days, 10 min beyond (a
week).

Services are named as in the scenario: ``dhcp`` (each message a phone sends), ``http``
(HTTP and HTTPS requests), ``tftp``, ``ftp``. Expectations can use
``service.<name>.requests`` (the total), ``service.<name>.requests_per_s.<max|mean>`` and
``service.<name>.requests_per_min.<max|mean>``, over the whole run or, with ``during``,
over a part of every day (``observe.day_window``). A service no phone asked has made no
request in any second: its metrics are 0 (a report lists the services asked).
"""

from __future__ import annotations

from array import array

from labsim.phones.packed import SharedValues
from labsim.phones.phone import STATES

SERIES_METRICS = ("requests_per_s", "requests_per_min")
SERIES_STATS = ("max", "mean")
_SCHEME_SERVICE = {"http": "http", "https": "http", "tftp": "tftp", "ftp": "ftp"}
SERVICES = ("dhcp", "http", "tftp", "ftp", "other")  # what the series counts under (a URL's other schemes: other)


def bucket_for(horizon_s: float) -> int:
    """The plot's bucket for a run this long: 1 s (storm), 60 s (a day), 600 s (a week)."""
    if horizon_s <= 3600:
        return 1
    if horizon_s <= 2 * 86400:
        return 60
    return 600


def _work_out_service(url: str) -> str:
    return _SCHEME_SERVICE.get(url.split(":", 1)[0].lower(), "other")


# A fleet asks for the same URLs all run long (a few per phone): sized for fleets of ~10,000.
service_of_url = SharedValues(1 << 17, _work_out_service).one


class TimeSeries:
    def __init__(self, horizon_s: float, total_phones: int = 0):
        self.bucket_s = bucket_for(horizon_s)
        self.per_second: dict[str, array] = {}
        self.states: dict[str, list[int]] = {state: [] for state in STATES}
        self._counts = dict.fromkeys(STATES, 0)
        self._counts["off"] = total_phones
        self.requests = 0  # every service's requests so far (a when: on service.* looks when it moves)

    # --- recording (hot path) ---------------------------------------------------------

    def request(self, service: str, t: float) -> None:
        counts = self.per_second.get(service)
        if counts is None:
            counts = self.per_second[service] = array("I")
        second = int(t) if t > 0 else 0
        if second >= len(counts):
            counts.frombytes(bytes(4 * (second + 1 - len(counts) + 3600)))  # an hour ahead at a time
        counts[second] += 1
        self.requests += 1

    def fetch(self, url: str, t: float) -> None:
        self.request(service_of_url(url), t)

    def state_changed(self, t: float, old: str, new: str) -> None:
        if len(self.states["off"]) < (int(t // self.bucket_s) + 1 if t >= 0 else 0):  # a boundary passed
            self._sample_until(t)
        self._counts[old] -= 1
        self._counts[new] += 1

    def _sample_until(self, t: float) -> None:
        """Record the counts at every bucket boundary up to ``t`` not yet recorded."""
        samples = self.states["off"]
        due = int(t // self.bucket_s) + 1 if t >= 0 else 0
        while len(samples) < due:
            for state in STATES:
                self.states[state].append(self._counts[state])

    # --- results ------------------------------------------------------------------------

    def _seconds(self, service: str, end_t: float) -> array:
        return seconds_of_run(self.per_second.get(service, _NONE), end_t)

    def metrics(self, end_t: float) -> dict[str, float]:
        result: dict[str, float] = {}
        for service in sorted(self.per_second):
            seconds = self._seconds(service, end_t)
            result.update(service_metrics(service, sum(seconds), max(seconds), max(_sums(seconds, 60)), end_t))
        return result

    def window_metrics(self, end_t: float, calendar_from: float, window) -> dict[str, float]:
        """:func:`window_metrics` of this run's requests."""
        return window_metrics(self.per_second, end_t, calendar_from, window)

    def to_report(self, end_t: float) -> dict:
        self._sample_until(end_t)
        buckets = int(end_t // self.bucket_s) + 1
        return {
            "bucket_s": self.bucket_s,
            "requests": {service: _padded(_sums(self._seconds(service, end_t), self.bucket_s), buckets)
                         for service in sorted(self.per_second)},
            "states": {state: samples[:buckets] for state, samples in self.states.items()},
            "peaks": self.metrics(end_t),
        }


_NONE = array("I")  # the counts of a service never asked


def seconds_of_run(counts: array, end_t: float) -> array:
    """A service's count for every second of a run ``end_t`` long, from its counts per
    second. Those are allocated an hour ahead of the last request, so a service that went
    quiet more than an hour before the end has fewer: the rest are seconds without a
    request, and count as such (a mean is over the run's seconds)."""
    length = run_seconds(end_t)
    seconds = counts[:length]
    if len(seconds) < length:
        seconds.frombytes(bytes(4 * (length - len(seconds))))
    return seconds


def window_metrics(per_second: dict[str, array], end_t: float, calendar_from: float, window) -> dict[str, float]:
    """The ``service.*`` metrics of the seconds in ``window`` (``observe.day_window``) only,
    from each service's requests per second (one process's :class:`TimeSeries`, or a
    fleet's added up), the run starting at ``calendar_from`` on the lab's calendar (seconds
    since 1970, UTC). A service's metrics are absent when the window never came in the run."""
    ranges = window.intervals(calendar_from, end_t)
    span = sum(b - a for a, b in ranges)
    result: dict[str, float] = {}
    if not span:
        return result
    for service in sorted(set(per_second) | set(SERVICES)):  # a service never asked: none in the window
        seconds = seconds_of_run(per_second.get(service, _NONE), end_t)
        minutes = _sums(seconds, 60)
        inside = [count for a, b in ranges for count in seconds[a:b]]
        # a minute counts when its first second is in the window
        picked = [minutes[m] if m < len(minutes) else 0
                  for a, b in ranges for m in range(-(-a // 60), -(-b // 60))]
        result[f"service.{service}.requests"] = sum(inside)
        result[f"service.{service}.requests_per_s.max"] = max(inside, default=0)
        result[f"service.{service}.requests_per_s.mean"] = round(sum(inside) / span, 4)
        if picked:
            result[f"service.{service}.requests_per_min.max"] = max(picked)
            result[f"service.{service}.requests_per_min.mean"] = round(sum(picked) / len(picked), 4)
    return result


def run_seconds(end_t: float) -> int:
    """How many seconds of counts a run ``end_t`` long has (its last one begun)."""
    return max(1, int(end_t) + 1) if end_t > 0 else 1


def service_metrics(service: str, total: int, busiest_second: int, busiest_minute: int,
                    end_t: float) -> dict[str, float]:
    """A service's ``service.*`` metrics for a run ``end_t`` long: the means over every
    second and minute of it (the last ones as far as they went)."""
    seconds = run_seconds(end_t)
    minutes = -(-seconds // 60)
    return {f"service.{service}.requests": total,
            f"service.{service}.requests_per_s.max": busiest_second,
            f"service.{service}.requests_per_s.mean": round(total / seconds, 4),
            f"service.{service}.requests_per_min.max": busiest_minute,
            f"service.{service}.requests_per_min.mean": round(total / minutes, 4)}


class RunningRequests:
    """A service's requests per second and per minute as they come in, with their total
    and peaks kept up to date, so that a ``when:`` on ``service.*`` reads
    :meth:`TimeSeries.metrics`' values at any instant without counting over the run. Fed
    with (second, requests added): a ``--workers`` parent adds every shard's."""

    __slots__ = ("per_second", "per_minute", "total", "busiest_second", "busiest_minute")

    def __init__(self):
        self.per_second = array("I")
        self.per_minute = array("I")
        self.total = self.busiest_second = self.busiest_minute = 0

    def add(self, second: int, requests: int) -> None:
        per_second, per_minute, minute = self.per_second, self.per_minute, second // 60
        if second >= len(per_second):
            per_second.frombytes(bytes(4 * (second + 1 - len(per_second) + 3600)))
        if minute >= len(per_minute):
            per_minute.frombytes(bytes(4 * (minute + 1 - len(per_minute) + 60)))
        per_second[second] += requests
        per_minute[minute] += requests
        self.total += requests
        self.busiest_second = max(self.busiest_second, per_second[second])
        self.busiest_minute = max(self.busiest_minute, per_minute[minute])

    def metrics(self, service: str, end_t: float) -> dict[str, float]:
        return service_metrics(service, self.total, self.busiest_second, self.busiest_minute, end_t)


def _padded(values: list[int], length: int) -> list[int]:
    return values[:length] + [0] * (length - len(values))


def _sums(counts, size: int) -> list[int]:
    return [sum(counts[start:start + size]) for start in range(0, len(counts), size)] or [0]

"""The metrics a ``when:`` reads, for the whole fleet of ``--clock virtual --workers N``.

Counts add up: each shard sends its phones per state and its reboots, and the parent
sums them. The other metrics are over every phone or every sample, so each shard sends
what moved since its last meeting and the parent keeps the fleet's:

- ``time_to_ready.*``, ``phone.reboots``: a phone's time to ready and reboot count
  change only when it changes state, so a shard sends (MAC, reboots, time to ready) for
  the phones that changed state since it last sent (every phone the first time);
- ``stage.*``: a stage's latencies only grow (a long run's archive moves a phone's older
  timings, it keeps them), so a shard sends each timing its phones add, as they add it;
- ``downloads.*``: from the same timings, their outcome per server, counted as they come;
- ``service.*``: the requests a shard's phones made per second (``observe.series``),
  for the seconds since it last sent (the last of those again: it may have grown), and
  where the run is (``now``: a mean is over the run's seconds so far). Requests move
  these without any phone changing state, so a shard counts its requests among its
  changes (``MetricsOutbox.changes``) while a condition reads them.

The parent computes a statistic over the fleet's values as one process does (times to
ready kept sorted for ``observe.stats.statistic``; stage latencies counted by value,
``observe.latencies``; requests with their peaks kept, ``observe.series.RunningRequests``),
and only those the pending
conditions read (``wanted``). ``phone.reboots`` holds when it holds for every phone, so
what decides it is which reboot counts occur: the shards judge on one phone of each.

One process judges its own conditions the same way, as a fleet of one shard
(``RunMetrics``): a look reads what moved since the last, not every phone and sample.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict

from labsim.observe.latencies import Latencies
from labsim.observe.report import counts_of, download_metrics, time_to_ready
from labsim.observe.series import RunningRequests, window_metrics
from labsim.observe.stats import statistic
from labsim.phones.phone import StageList

PER_PHONE_PREFIXES = ("time_to_ready.", "phone.")
# The metrics read from the phones' timings (their latencies, their outcomes): while a
# condition or a check reads one, every shard tells each timing its phones add.
TIMING_PREFIXES = ("stage.", "downloads.")


def reads(wanted, prefixes) -> bool:
    return any(name.startswith(prefixes) for name in wanted)


def reads_requests(scenario) -> bool:
    """Whether some ``when:`` of the scenario's timeline reads the request series."""
    return _timeline_reads(scenario, "service.")


def reads_stages(scenario) -> bool:
    """Whether some ``when:`` of the scenario's timeline reads the phones' timings: a
    stage's latencies, the downloads' outcomes."""
    return _timeline_reads(scenario, TIMING_PREFIXES)


def _timeline_reads(scenario, prefix: str | tuple[str, ...]) -> bool:
    from labsim.timeline import condition_metric

    return any(entry.when is not None and condition_metric(entry).startswith(prefix) for entry in scenario.timeline)


class _ReportedStages(StageList):
    """A phone's ``stages`` that also hands each new timing's latency to its shard's
    outbox (while a pending ``when:`` or a dashboard's check reads ``stage.*``)."""

    __slots__ = ("outbox",)

    def __init__(self, outbox: "StagesOutbox"):
        super().__init__()
        self.outbox = outbox

    def add(self, stage: str, started: float, ended: float, status: str, server: str = "") -> None:
        StageList.add(self, stage, started, ended, status, server)
        outbox = self.outbox
        if outbox.stages_wanted:
            outbox.stage_samples.setdefault(stage, []).append(ended - started)
            if server:
                by_status = outbox.outcomes.setdefault(server, {})
                by_status[status] = by_status.get(status, 0) + 1


class StagesOutbox:
    """A shard's stage latencies, told as its phones add them (a ``when:`` on ``stage.*``
    or a dashboard's check): every phone's ``stages`` hands each new timing here
    (``_ReportedStages``); made before any phone has run, so nothing is to carry over."""

    def __init__(self, members):
        self.stages_wanted = True
        self.stage_samples: dict[str, list[float]] = {}
        self.outcomes: dict[str, dict[str, int]] = {}  # server -> status -> timings since the last time
        for member in members:
            member.phone.stages = _ReportedStages(self)

    def since_last(self) -> dict[str, list[float]]:
        """``{stage: [latency, ...]}`` added since the last time (empty: none)."""
        samples, self.stage_samples = self.stage_samples, {}
        return samples

    def outcomes_since_last(self) -> dict[str, dict[str, int]]:
        """``{server: {status: count}}`` of the timings added since the last time."""
        outcomes, self.outcomes = self.outcomes, {}
        return outcomes

    def stop(self) -> None:
        """Nothing reads them any more (the conditions that did fired): gather no more."""
        self.stages_wanted = False
        self.stage_samples = {}
        self.outcomes = {}


class FleetStages:
    """Every worker's stage latencies as they tell them, counted by value: read as a run's
    ``observe.stage_archive`` is (``latencies``), so ``observe.report.phone_metrics`` gives
    the fleet's ``stage.*`` metrics from it and the parent's mirror (whose phones hold no
    timings)."""

    def __init__(self):
        self.latencies: defaultdict[str, Latencies] = defaultdict(Latencies)
        self.server_status: defaultdict[str, Counter] = defaultdict(Counter)  # as the archive's: downloads.*

    def take(self, samples: dict[str, list[float]], outcomes: dict[str, dict[str, int]] | None = None) -> None:
        for stage, latencies in samples.items():
            self.latencies[stage].extend(latencies)
        for server, by_status in (outcomes or {}).items():
            self.server_status[server].update(by_status)


class MetricsOutbox:
    """A shard's side: what it tells the parent at a meeting, of what moved since the last."""

    def __init__(self, run, wanted: set[str]):
        self.run = run
        self.sent_changes = None  # the shard's state-change count when it last sent its counts
        self.phones_wanted = reads(wanted, PER_PHONE_PREFIXES)
        self._stages = StagesOutbox(run.members) if reads(wanted, TIMING_PREFIXES) else None
        # Fixed for the run (its changes must only grow): whether some condition reads the requests.
        self.counts_requests = reads(wanted, ("service.",))
        self._requests_wanted = self.counts_requests
        self._requests = RequestsOutbox(run)
        self._changed: dict = {}  # phones that changed state since the last send (ordered: a run replays)
        if self.phones_wanted:
            self._changed = dict.fromkeys(member.phone for member in run.members)
        # observe.report.count_metrics, kept as the phones change rather than counted over
        # them at each meeting (a meeting's largest cost at 1,000 phones): the run's
        # counter has the phones per state; a phone's reboots grow just before it changes state.
        self._reboots = {member.phone: member.phone.reboots for member in run.members}
        self._reboots_total = sum(self._reboots.values())
        run.counter.listeners.append(self._state_changed)

    def want(self, wanted: set[str]) -> None:
        """What the pending conditions read now (it only shrinks as entries fire)."""
        self.phones_wanted = self.phones_wanted and reads(wanted, PER_PHONE_PREFIXES)
        if self._stages is not None and not reads(wanted, TIMING_PREFIXES):
            self._stages.stop()
        self._requests_wanted = self._requests_wanted and reads(wanted, ("service.",))
        if not self.phones_wanted:
            self._changed.clear()

    def _state_changed(self, driver, old: str, new: str) -> None:
        phone = driver.phone
        reboots = phone.reboots
        if reboots != self._reboots[phone]:
            self._reboots_total += reboots - self._reboots[phone]
            self._reboots[phone] = reboots
        if self.phones_wanted:
            self._changed[phone] = None

    def changes(self) -> int:
        """What a look compares with the last to see whether anything it reads moved: the
        phones' state changes, and their requests while a condition may read them."""
        run = self.run
        return run.state_changes + run.series.requests if self.counts_requests else run.state_changes

    def counts(self) -> dict[str, int]:
        """``observe.report.count_metrics`` of the shard's phones."""
        return counts_of(len(self.run.members), self.run.counter.counts, self._reboots_total)

    def fill(self, message: dict, changes: int) -> None:
        """Add to ``message`` what moved: counts and phones when a phone changed state,
        the stage timings added since the last meeting."""
        if changes != self.sent_changes:
            self.sent_changes = changes
            message["counts"] = self.counts()
            if self._changed:
                message["phones"] = [[phone.mac, phone.reboots, time_to_ready(phone)] for phone in self._changed]
                self._changed.clear()
        if self._stages is not None:
            samples, outcomes = self._stages.since_last(), self._stages.outcomes_since_last()
            if samples:
                message["stages"] = samples
            if outcomes:
                message["outcomes"] = outcomes
        if self._requests_wanted:
            message["now"] = self.run.elapsed_s()
            requests = self._requests.since_last()
            if requests:
                message["requests"] = requests


class RequestsOutbox:
    """A shard's requests, told as they come (a ``when:`` on ``service.*``): per service,
    the requests per second since it last told, from the last second it told again (more
    may have come in it since)."""

    def __init__(self, run):
        self.run = run
        self._told = -1  # the series' request count when it last told
        self._from_second = 0  # where the requests not yet told begin

    def since_last(self) -> dict[str, list]:
        """``{service: [first second, [its count, the next second's, ...]]}`` up to now's
        second; empty when no request came since the last time."""
        run = self.run
        series, now = run.series, run.elapsed_s()
        if series.requests == self._told:
            return {}
        self._told = series.requests
        last = int(now) if now > 0 else 0  # a request is counted in the second it is made: none is later
        first = self._from_second  # a service new since the last time made all its requests since
        self._from_second = last
        return {service: [first, counts[first:last + 1].tolist()] for service, counts in series.per_second.items()}


class FleetRequests:
    """Every shard's requests per second as they tell them (``RequestsOutbox``), added up
    over the fleet, with the series' ``service.*`` metrics kept as they come. It reads as
    a run's ``observe.series.TimeSeries`` does for a judgement (``metrics``,
    ``window_metrics``): a dashboard's check judges an expectation on it."""

    def __init__(self):
        self._requests: dict[str, RunningRequests] = {}
        self._told_last: dict[tuple[int, str], tuple[int, int]] = {}  # (shard, service) -> its last second told, and count

    def take(self, index: int, requests: dict[str, list]) -> None:
        for service, (first, counts) in requests.items():
            running = self._requests.get(service)
            if running is None:
                running = self._requests[service] = RunningRequests()
            told_second, told_count = self._told_last.get((index, service), (-1, 0))
            for second, count in enumerate(counts, first):
                added = count - told_count if second == told_second else count
                if added:
                    running.add(second, added)
            if counts:
                self._told_last[index, service] = (first + len(counts) - 1, counts[-1])

    def metrics(self, now: float) -> dict[str, float]:
        """``observe.series.TimeSeries.metrics`` of the fleet's requests, ``now`` into the run
        (a service no phone asked yet has none)."""
        metrics: dict[str, float] = {}
        for service in sorted(self._requests):
            metrics.update(self._requests[service].metrics(service, now))
        return metrics

    def window_metrics(self, now: float, calendar_from: float, window) -> dict[str, float]:
        """``observe.series.window_metrics`` of the fleet's requests so far."""
        per_second = {service: running.per_second for service, running in self._requests.items()}
        return window_metrics(per_second, now, calendar_from, window)


class FleetMetrics:
    """The parent's side: the fleet's counts, phones and stage latencies from every
    shard's messages, and the metrics a judgement reads."""

    def __init__(self, count: int):
        self._counts: list[dict] = [{} for _ in range(count)]
        self._phones: dict[str, tuple[int, float | None]] = {}  # MAC -> (reboots, time to ready)
        self._ready_times: list[float] = []  # sorted
        self._reboots: dict[int, dict[str, None]] = {}  # reboot count -> the phones with it (ordered)
        self._stages = FleetStages()  # counted by value: a look sorts no list
        self._requests = FleetRequests()
        self._now = 0.0  # where the run is, as far as the shards said

    def take(self, index: int, message: dict) -> None:
        if "counts" in message:
            self._counts[index] = message["counts"]
        for mac, reboots, ready in message.get("phones", ()):
            self._phone(mac, reboots, ready)
        self._stages.take(message.get("stages", {}), message.get("outcomes"))
        self._now = max(self._now, message.get("now", 0.0))
        self._requests.take(index, message.get("requests", {}))

    def _phone(self, mac: str, reboots: int, ready: float | None) -> None:
        old = self._phones.get(mac)
        if old is not None:
            old_reboots, old_ready = old
            if old_ready is not None:
                del self._ready_times[bisect.bisect_left(self._ready_times, old_ready)]
            same = self._reboots[old_reboots]
            del same[mac]
            if not same:
                del self._reboots[old_reboots]
        self._phones[mac] = (reboots, ready)
        if ready is not None:
            bisect.insort(self._ready_times, ready)
        self._reboots.setdefault(reboots, {})[mac] = None

    def metrics(self, wanted) -> tuple[dict, dict]:
        """(metrics, per-phone metrics) as ``observe.report.phone_metrics`` gives them for
        ``wanted``, over the whole fleet."""
        metrics: dict = {}
        for counts in self._counts:
            for key, value in counts.items():
                metrics[key] = metrics.get(key, 0) + value
        per_phone = {}
        for name in sorted(wanted):
            parts = name.split(".")
            if parts[0] == "time_to_ready":
                metrics[name] = statistic(self._ready_times, parts[1])
            elif parts[0] == "stage" and parts[1] in self._stages.latencies:  # one process has no key for a stage never seen
                metrics[name] = self._stages.latencies[parts[1]].statistic(parts[2])
            elif name == "phone.reboots":
                per_phone[name] = [(next(iter(phones)), reboots) for reboots, phones in sorted(self._reboots.items())]
        if reads(wanted, ("service.",)):
            metrics.update(self._requests.metrics(self._now))
        if reads(wanted, ("downloads.",)):
            metrics.update(download_metrics(self._stages.server_status))
        return metrics, per_phone


class RunMetrics:
    """One process's metrics for the ``when:`` conditions it was made for, kept as its
    phones change: its outbox handed to a fleet of one shard at each look. Counting over
    every phone at each look (``observe.report.phone_metrics``) cost a 1,000-phone day
    with a pending condition 3 s (a count) to 6 s (a percentile) of CPU on top of 4 s,
    and grows with the fleet times the looks. Made before any phone has run."""

    def __init__(self, run, wanted: set[str]):
        self.wanted = frozenset(wanted)
        self.outbox = MetricsOutbox(run, set(wanted))
        self.fleet = FleetMetrics(1)

    def covers(self, wanted) -> bool:
        return wanted is not None and self.wanted.issuperset(wanted)

    def metrics(self, wanted) -> tuple[dict, dict]:
        """``observe.report.phone_metrics``' answer for ``wanted`` (which ``covers``), with
        the series' ``service.*`` metrics so far."""
        message: dict = {}
        self.outbox.fill(message, self.outbox.changes())
        self.fleet.take(0, message)
        return self.fleet.metrics(wanted)

"""``when:`` across virtual-time shards: the timeline's conditions judged on the whole fleet.

One process looks at its conditions on a tick every ``timeline.CONDITION_INTERVAL_S`` of
simulated time while one is pending, and judges them when some phone changed state since
the last look. Under ``--clock virtual --workers N`` every shard runs the same timeline,
so every shard comes to that tick at the same simulated instant. There it stops (its
clock does not move while it waits) and sends the parent its state-change count and
what moved since its last meeting (``fleet_metrics``: its counts and the phones that
changed state, if some did; the stage timings its phones added, if a condition reads
them). Once every shard still running has come to the tick, the parent answers each
with the fleet's change count and, when that moved (the shards judge then), the metrics
the pending conditions read, computed over the whole fleet; each shard judges the
conditions on them, all alike, and fires the same entries in the same order (phones
picked over the whole fleet with the random stream every shard shares,
``shard_run._ShardControl``). Each shard also says when its next call is due; until the
earliest of those no phone anywhere can change state, so every shard skips the ticks
before it alike (one process sees no change at them and judges nothing either); an
entry that fires may start calls before then, so every shard meets at the next tick
again. When no condition is pending, the timeline stops its tick in every shard at the
same instant and the shards run free again.

A run without a duration is refused: one process also judges its conditions at the
instant its last phone settles, and may end the run there (an instant no shard sees on
its own).

The channel is a pair of pipes per shard, named to the shard by ``ENVIRONMENT``; a line of
JSON each way per tick.
"""

from __future__ import annotations

import json
import os
import select
import time

from labsim.scale.fleet_metrics import FleetMetrics, MetricsOutbox
from labsim.scale.shard_run import _ShardControl
from labsim.scenario.expectations import parse_expectation

ENVIRONMENT = "LABSIM_FLEET_CONDITIONS"  # "READ_FD,WRITE_FD": a --workers shard's pipes to its parent


def condition_problem(entry, duration) -> str | None:
    """Why a timeline entry's ``when:`` cannot be judged across shards, or None."""
    if duration is None:
        return (f"'{entry.when}' across shards needs a duration (duration: in the scenario or --duration): without "
                "one, one process also judges it when the last phone settles, an instant no shard sees alone")
    return None


def _condition_metric(entry) -> str:
    return parse_expectation(entry.when).metric


class FleetConditions(_ShardControl):
    """A ``--workers`` shard's timeline control whose conditions see the whole fleet: at
    each condition tick, ``changes`` meets the other shards through the parent."""

    def __init__(self, run, read_fd: int, write_fd: int):
        super().__init__(run)
        self._replies = os.fdopen(read_fd, "rb")
        self._write_fd = write_fd
        self._metrics_read = {index: _condition_metric(entry) for index, entry in enumerate(run.scenario.timeline)
                              if entry.when is not None}
        self._wanted = sorted(set(self._metrics_read.values()))
        self._wanted_sent = None
        self.outbox = MetricsOutbox(run, set(self._wanted))
        self._sums = None  # the parent's last answer: the fleet's change count
        self._metrics = None  # the fleet's metrics at the last answer that judged
        self._quiet_until = float("-inf")  # before then no shard has anything due: nothing can change

    def changes(self) -> int:
        run = self.run
        now = run.reactor.seconds() - run._epoch
        if self._sums is not None and now < self._quiet_until:
            return self._sums["changes"]  # every shard skips this tick alike: one process sees no change here
        own = run.state_changes
        due = run.reactor.next_time()  # the tick running now is not in the heap: what else comes next
        message = {"changes": own, "next": None if due is None else due - run._epoch}
        self.outbox.fill(message, own)
        if self._wanted != self._wanted_sent:
            self._wanted_sent = message["wanted"] = self._wanted
        try:
            os.write(self._write_fd, json.dumps(message).encode() + b"\n")
            line = self._replies.readline()
        except BrokenPipeError:
            line = b""
        if not line:  # the parent is gone (the run is being torn down): this shard's own view
            self._sums = self._metrics = None
            return own
        self._sums = json.loads(line)
        if "metrics" in self._sums:  # the fleet's changes moved: the timeline judges now
            self._metrics = self._sums["metrics"], self._sums["per_phone"]
        quiet = self._sums["quiet_until"]
        self._quiet_until = float("inf") if quiet is None else quiet
        return self._sums["changes"]

    def metrics(self, wanted=None):
        if self._sums is None or self._metrics is None:
            return super().metrics(wanted)
        metrics, per_phone = self._metrics
        return dict(metrics), per_phone, metrics["phones.total"]

    def timeline_changed(self) -> None:
        # An entry fired: its actions may start calls earlier than the quiet time the
        # shards agreed on before it (every shard fires alike, so every shard meets again).
        self._quiet_until = float("-inf")
        timeline = self.run.timeline
        if timeline is not None:
            self._wanted = sorted({self._metrics_read[item.index] for item in timeline.pending
                                   if not item.done and item.index in self._metrics_read})
            self.outbox.want(set(self._wanted))
        super().timeline_changed()


class ConditionsBarrier:
    """The parent's side: every shard's tick, answered with the fleet's sums once every
    shard still running has come to it. A shard that ended counts with its last counts
    (its phones stay as they ended)."""

    def __init__(self, count: int):
        self.pipes = [(os.pipe(), os.pipe()) for _ in range(count)]  # (to the parent, to the shard)
        self._buffers = [b""] * count
        self._waiting: list[dict | None] = [None] * count
        self._open = [True] * count
        self._changes = [0] * count
        self._next: list[float | None] = [None] * count  # each shard's next call due (None: none)
        self.fleet = FleetMetrics(count)
        self._wanted: list[str] = []  # what the pending conditions read (every shard has the same)
        self._judged_changes = None  # the fleet's change count at the last answer the shards judged on
        self.ticks = 0  # answered
        self._last_answer = float("-inf")  # when (monotonic) the last tick was answered

    def environment(self, index: int) -> tuple[dict, tuple[int, int]]:
        """The shard's environment entry and the fds it inherits."""
        (_, to_parent), (from_parent, _) = self.pipes[index]
        return {ENVIRONMENT: f"{from_parent},{to_parent}"}, (from_parent, to_parent)

    def started(self) -> None:
        """The shards have their ends: close the parent's copies of them."""
        for (_, to_parent), (from_parent, _) in self.pipes:
            os.close(to_parent)
            os.close(from_parent)

    def serve(self, timeout: float) -> bool:
        """Read what the shards sent (waiting up to ``timeout``) and answer a tick every
        shard has come to; True if anything was read."""
        readable = [self.pipes[i][0][0] for i in range(len(self.pipes)) if self._open[i]]
        if not readable:
            return False
        ready, _, _ = select.select(readable, [], [], timeout)
        for index, ((from_shard, _), _) in enumerate(self.pipes):
            if from_shard not in ready:
                continue
            data = os.read(from_shard, 1 << 16)
            if not data:
                self._open[index] = False
                self._waiting[index] = None
                continue
            self._buffers[index] += data
            while b"\n" in self._buffers[index]:
                line, self._buffers[index] = self._buffers[index].split(b"\n", 1)
                message = json.loads(line)
                self._changes[index] = message["changes"]
                self._next[index] = message["next"]
                self._wanted = message.get("wanted", self._wanted)
                self.fleet.take(index, message)
                self._waiting[index] = message
        self._answer()
        return bool(ready)

    def _answer(self) -> None:
        live = [index for index in range(len(self.pipes)) if self._open[index]]
        if not live or any(self._waiting[index] is None for index in live):
            return
        upcoming = [self._next[index] for index in live if self._next[index] is not None]
        answer = {"changes": sum(self._changes), "quiet_until": min(upcoming) if upcoming else None}
        if answer["changes"] != self._judged_changes:  # the shards judge their conditions now: what they read
            self._judged_changes = answer["changes"]
            answer["metrics"], answer["per_phone"] = self.fleet.metrics(self._wanted)
        reply = json.dumps(answer).encode() + b"\n"
        for index in live:
            self._waiting[index] = None
            try:
                os.write(self.pipes[index][1][1], reply)
            except BrokenPipeError:
                self._open[index] = False
        self.ticks += 1
        self._last_answer = time.monotonic()

    def in_step(self, now: float) -> bool:
        """Whether the shards are meeting at ticks now (answered within the last second):
        then the parent only answers them, as a merge step would keep them waiting."""
        return now - self._last_answer < 1.0

    def close(self) -> None:
        for (from_shard, _), (_, to_shard) in self.pipes:
            for fd in (from_shard, to_shard):
                try:
                    os.close(fd)
                except OSError:
                    pass


def fleet_conditions_from_environment():
    """The pipes a ``--workers`` parent gave this shard, or None."""
    value = os.environ.get(ENVIRONMENT)
    if not value:
        return None
    read_fd, write_fd = (int(part) for part in value.split(","))
    return read_fd, write_fd

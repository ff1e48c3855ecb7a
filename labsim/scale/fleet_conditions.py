"""``when:`` across virtual-time shards: the timeline's conditions judged on the whole fleet.

One process looks at its conditions on a tick every ``timeline.CONDITION_INTERVAL_S`` of
simulated time while one is pending, and judges them when some phone changed state since
the last look. Under ``--clock virtual --workers N`` every shard runs the same timeline,
so every shard comes to that tick at the same simulated instant. There it stops (its
clock does not move while it waits) and sends the parent its state-change count and, if
that moved since its last tick, its counts (phones per state, reboots). Once every shard
still running has come to the tick, the parent answers each with the fleet's sums; each
shard judges the conditions on them, all alike, and fires the same entries in the same
order (phones picked over the whole fleet with the random stream every shard shares,
``shard_run._ShardControl``). Each shard also says when its next call is due; until the
earliest of those no phone anywhere can change state, so every shard skips the ticks
before it alike (one process sees no change at them and judges nothing either). When no
condition is pending, the timeline stops its tick in every shard at the same instant and
the shards run free again.

Only counts add up across shards: a condition on ``time_to_ready.*`` or ``stage.*`` (over
every sample) or ``phone.reboots`` (every phone) is refused, and so is a run without a
duration (one process also judges its conditions at the instant its last phone settles,
and may end the run there: an instant no shard sees on its own).

The channel is a pair of pipes per shard, named to the shard by ``ENVIRONMENT``; a line of
JSON each way per tick.
"""

from __future__ import annotations

import json
import os
import select
import time

from labsim.observe.report import count_metrics
from labsim.scale.shard_run import _ShardControl
from labsim.scenario.expectations import parse_expectation

ENVIRONMENT = "LABSIM_FLEET_CONDITIONS"  # "READ_FD,WRITE_FD": a --workers shard's pipes to its parent


def condition_problem(entry, duration) -> str | None:
    """Why a timeline entry's ``when:`` cannot be judged across shards, or None."""
    metric = parse_expectation(entry.when).metric
    if not (metric.startswith("phones.") or metric == "reboots.total"):
        return (f"'{entry.when}' reads {metric}, which is not a count the shards can add up (only phones.<state>, "
                "phones.total and reboots.total are); use one of those, or run without --workers")
    if duration is None:
        return (f"'{entry.when}' across shards needs a duration (duration: in the scenario or --duration): without "
                "one, one process also judges it when the last phone settles, an instant no shard sees alone")
    return None


class FleetConditions(_ShardControl):
    """A ``--workers`` shard's timeline control whose conditions see the whole fleet: at
    each condition tick, ``changes`` meets the other shards through the parent."""

    def __init__(self, run, read_fd: int, write_fd: int):
        super().__init__(run)
        self._replies = os.fdopen(read_fd, "rb")
        self._write_fd = write_fd
        self._sent = None  # this shard's change count at its last counts sent
        self._sums = None  # the parent's last answer: the fleet's sums
        self._quiet_until = float("-inf")  # before then no shard has anything due: nothing can change

    def changes(self) -> int:
        run = self.run
        now = run.reactor.seconds() - run._epoch
        if self._sums is not None and now < self._quiet_until:
            return self._sums["changes"]  # every shard skips this tick alike: one process sees no change here
        own = run.state_changes
        due = run.reactor.next_time()  # the tick running now is not in the heap: what else comes next
        message = {"changes": own, "next": None if due is None else due - run._epoch}
        if own != self._sent:
            self._sent = own
            message["counts"] = count_metrics(run.members)
        try:
            os.write(self._write_fd, json.dumps(message).encode() + b"\n")
            line = self._replies.readline()
        except BrokenPipeError:
            line = b""
        if not line:  # the parent is gone (the run is being torn down): this shard's own view
            self._sums = None
            return own
        self._sums = json.loads(line)
        quiet = self._sums["quiet_until"]
        self._quiet_until = float("inf") if quiet is None else quiet
        return self._sums["changes"]

    def metrics(self, wanted=None):
        if self._sums is None:
            return super().metrics(wanted)
        return dict(self._sums["metrics"]), {}, self._sums["metrics"]["phones.total"]


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
        self._counts: list[dict] = [{} for _ in range(count)]
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
                if "counts" in message:
                    self._counts[index] = message["counts"]
                self._waiting[index] = message
        self._answer()
        return bool(ready)

    def _answer(self) -> None:
        live = [index for index in range(len(self.pipes)) if self._open[index]]
        if not live or any(self._waiting[index] is None for index in live):
            return
        metrics: dict[str, int] = {}
        for counts in self._counts:
            for key, value in counts.items():
                metrics[key] = metrics.get(key, 0) + value
        upcoming = [self._next[index] for index in live if self._next[index] is not None]
        reply = json.dumps({"changes": sum(self._changes), "metrics": metrics,
                            "quiet_until": min(upcoming) if upcoming else None}).encode() + b"\n"
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

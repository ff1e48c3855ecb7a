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

A run without a duration ends, in one process, at the instant every phone has settled,
after judging its conditions there (they may fire entries that start phones again: then
it goes on). Across shards that instant is the fleet's: a shard whose own phones have
all settled asks the parent whether the others' have (a *check*), and until the fleet
settles it keeps meeting the others before each of its instants (a *hold*) rather than
running ahead of an instant where the fleet settles (``fleet_barrier`` orders them).
When it does, every shard judges there on the fleet's metrics, fires the same entries,
and ends, or goes on, alike. (A run without a duration meets so even with no ``when:``:
the run's end is the fleet's.)

The channel is a pair of pipes per shard, named to the shard by ``ENVIRONMENT``; a line of
JSON each way per meeting.
"""

from __future__ import annotations

import json
import math
import os

from labsim.scale.fleet_metrics import MetricsOutbox
from labsim.scale.shard_run import _ShardControl
from labsim.timeline import condition_metric

ENVIRONMENT = "LABSIM_FLEET_CONDITIONS"  # "READ_FD,WRITE_FD": a --workers shard's pipes to its parent
NOTHING_LEFT = "nothing left to happen (no timer, no message in flight)"  # as virtual.run.drive says it


class FleetConditions(_ShardControl):
    """A ``--workers`` shard's timeline control whose conditions see the whole fleet: at
    each condition tick, ``changes`` meets the other shards through the parent; in a run
    without a duration, ``settle_check`` and ``before_instant`` find the fleet's end."""

    def __init__(self, run, read_fd: int, write_fd: int):
        super().__init__(run)
        self._replies = os.fdopen(read_fd, "rb")
        self._write_fd = write_fd
        self._metrics_read = {index: condition_metric(entry) for index, entry in enumerate(run.scenario.timeline)
                              if entry.when is not None}
        self._wanted = sorted(set(self._metrics_read.values()))
        self._wanted_sent = None
        self.outbox = MetricsOutbox(run, set(self._wanted))
        self.alone = False  # the parent is gone (the run is being torn down): this shard's own view
        self._changes = None  # the fleet's change count at the last tick met
        self._metrics = None  # the fleet's metrics at the last answer that judged
        self._quiet_until = -math.inf  # before then no shard has anything due: nothing can change
        self._quiet_at = None  # the same instant on this shard's clock
        self._horizon = -math.inf  # before then no other shard has anything due (a settled shard runs on)
        self.fired = 0  # entries fired (a settled judgement that fired some asks what they left unsettled)

    # --- meeting the others ---------------------------------------------------------

    def _meet(self, kind: str, at: float | None) -> dict | None:
        """Tell the parent where this shard waits and what moved; its answer (None: the
        parent is gone)."""
        if self.alone:
            return None
        run = self.run
        own = self.outbox.changes()
        due = run.reactor.next_time()  # what comes next, the call running now aside
        message = {"kind": kind, "at": at, "due": due, "u": run.unsettled, "changes": own,
                   "next": None if due is None else due - run._epoch}
        self.outbox.fill(message, own)
        if self._wanted != self._wanted_sent:
            self._wanted_sent = message["wanted"] = self._wanted
        try:
            os.write(self._write_fd, json.dumps(message).encode() + b"\n")
            line = self._replies.readline()
        except BrokenPipeError:
            line = b""
        if not line:
            self.alone, self._changes, self._metrics = True, None, None
            return None
        answer = json.loads(line)
        if "metrics" in answer:  # the shards judge now
            self._metrics = answer["metrics"], answer["per_phone"]
        self._horizon = math.inf if answer["horizon"] is None else answer["horizon"]
        return answer

    def changes(self) -> int:
        run = self.run
        now = run.reactor.seconds() - run._epoch
        if self._changes is not None and now < self._quiet_until:
            return self._changes  # every shard skips this tick alike: one process sees no change here
        answer = self._meet("tick", run.reactor.seconds())
        if answer is None:
            return self.outbox.changes()
        quiet = answer["quiet_until"]
        self._quiet_until = math.inf if quiet is None else quiet
        self._quiet_at = answer["quiet_at"]
        self._changes = answer["changes"]
        return self._changes

    def nothing_due_before(self) -> float | None:
        """When the next call is due in any shard, as the shards last agreed (the timeline
        runs no tick before the last one ahead of it: none could see a change)."""
        return None if self._changes is None or self.alone else self._quiet_at

    def watch_conditions(self, entries) -> None:
        """Nothing to keep here: the parent keeps the fleet's metrics from what this shard's
        outbox sends at each meeting."""

    def metrics(self, wanted=None):
        if self._metrics is None:
            return super().metrics(wanted)
        metrics, per_phone = self._metrics
        return dict(metrics), per_phone, metrics["phones.total"]

    def timeline_changed(self) -> None:
        # An entry fired: its actions may start calls earlier than the quiet time and the
        # horizons the shards agreed on before it (every shard fires alike, so every
        # shard meets again).
        self._quiet_until = self._horizon = -math.inf
        self._quiet_at = None
        self.fired += 1
        timeline = self.run.timeline
        if timeline is not None:
            self._wanted = sorted({self._metrics_read[item.index] for item in timeline.pending
                                   if not item.done and item.index in self._metrics_read})
            self.outbox.want(set(self._wanted))
        super().timeline_changed()

    # --- the end of a run without a duration --------------------------------------------

    def settle_check(self) -> None:
        """This shard's phones have all settled, now: one process would look whether the
        whole fleet has (``ScenarioRun._end_if_settled``); the parent says."""
        answer = self._meet("check", self.run.reactor.seconds())
        if answer is None:
            self.run.end_if_own_settled()
        elif answer["settled"] is not None:
            self._judge_settled()

    def before_instant(self, due: float | None) -> bool:
        """Before the shard's clock runs its calls at ``due`` (None: it has none left).
        A shard whose phones are not all settled runs on (the fleet is not settled while
        they are not); a settled one, from its horizon on, first waits for the others.
        True when it did something else than run on (judged the fleet settled, ended)."""
        run = self.run
        if due is not None and (run.unsettled or due < self._horizon) or self.alone:
            return False
        answer = self._meet("hold", due)
        if answer is None or answer.get("go"):
            return False
        if answer.get("nothing_left"):
            run._end(NOTHING_LEFT)
            return True
        if answer["settled"] is not None:
            run.reactor.run_until(answer["settled"])  # nothing is due here before it: the clock moves there
            self._judge_settled()
            return True
        return False

    def _judge_settled(self) -> None:
        """The whole fleet settled at this instant: judge as one process does there, on
        the fleet's metrics; end the run if every phone is still settled after what fired
        and no timed action is left."""
        run, timeline = self.run, self.run.timeline
        fired = self.fired
        if timeline is not None:
            timeline.check_conditions_now()
        unsettled = 0
        if self.fired != fired:  # what the entries did: every shard fired the same
            answer = self._meet("after", run.reactor.seconds())
            unsettled = run.unsettled if answer is None else answer["unsettled"]
        if unsettled == 0 and not (timeline is not None and timeline.timed_actions_left):
            run._end(run.SETTLED)

def fleet_conditions_from_environment():
    """The pipes a ``--workers`` parent gave this shard, or None."""
    value = os.environ.get(ENVIRONMENT)
    if not value:
        return None
    read_fd, write_fd = (int(part) for part in value.split(","))
    return read_fd, write_fd

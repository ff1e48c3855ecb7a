"""The --workers parent's answers to virtual-time shards meeting over ``when:`` and the
end of a run without a duration (labsim.scale.fleet_barrier): the fleet settles where
one process would see every phone settled, and no shard runs past that instant."""

from __future__ import annotations

import math
import random

import pytest

from labsim.scale.fleet_barrier import horizon, next_step, position


def tick(at, due=None):
    return {"kind": "tick", "at": at, "due": due, "u": 1}


def check(at, due=None):
    return {"kind": "check", "at": at, "due": due, "u": 0}


def hold(at, u=0):
    return {"kind": "hold", "at": at, "due": at, "u": u}


def test_every_shard_at_the_tick_is_answered_together():
    assert next_step({0: tick(1.5), 1: tick(1.5), 2: tick(1.5)}) == ("tick", [0, 1, 2])


def test_a_check_is_the_fleet_settling_only_if_every_other_shard_is_settled_there():
    assert next_step({0: check(10.0), 1: hold(12.0)}) == ("settled", [0, 1])
    assert next_step({0: check(10.0), 1: check(10.0)}) == ("settled", [0, 1])
    assert next_step({0: check(10.0), 1: hold(None)}) == ("settled", [0, 1])  # nothing left, settled for good
    assert next_step({0: check(10.0), 1: tick(10.5)}) == ("unsettled", [0])  # 1 ran on: its phones were not
    assert next_step({0: check(10.0), 1: check(11.0), 2: hold(20.0)}) == ("unsettled", [0])
    assert next_step({0: check(10.0), 1: hold(None, u=3)}) == ("unsettled", [0])  # stuck unsettled
    assert next_step({0: check(10.0), 1: hold(20.0)}, ended_settled=False) == ("unsettled", [0])


def test_a_hold_runs_its_instant_first_the_earliest_ones_together():
    assert next_step({0: check(10.0), 1: hold(10.0)}) == ("go", [1])  # its calls at 10.0 come first
    assert next_step({0: hold(5.0), 1: hold(7.0), 2: hold(5.0)}) == ("go", [0, 2])
    assert next_step({0: hold(None), 1: hold(None, u=2)}) == ("nothing left", [0, 1])


def test_a_tick_not_every_shard_came_to_is_an_error_not_a_wait():
    assert next_step({0: {"kind": "after", "at": 3.0, "due": None, "u": 0},
                      1: {"kind": "after", "at": 3.0, "due": 4.0, "u": 2}}) == ("after", [0, 1])
    with pytest.raises(ValueError, match="a tick the others did not come to"):
        next_step({0: tick(1.0), 1: check(1.5)})


def test_the_horizon_is_the_earliest_instant_another_shard_may_do_something():
    waiting = {0: check(10.0, due=10.5), 1: hold(12.0), 2: check(11.0, due=None)}
    # 0 and 2 run on from their checks (their next calls are due at 10.5 and never); 1 waits at its hold.
    assert [horizon(waiting, index, [0, 2]) for index in range(3)] == [12.0, 10.5, 10.5]
    # 0 runs on; 2 still waits at its check at 11.0, where the fleet may settle: 0 must not pass it.
    assert horizon(waiting, 0, [0]) == 11.0
    assert horizon({0: check(1.0, due=2.0), 1: hold(None)}, 0, [0]) is None


class Shard:
    """A shard as the barrier sees it: instants where its count of unsettled phones
    changes (``events``: instant -> the count after it), met as fleet_conditions meets."""

    def __init__(self, events: dict[float, int]):
        self.events = sorted(events.items())
        self.u = 1  # every phone starts off
        self.horizon = -math.inf
        self.ran: list[float] = []

    def due(self):
        return self.events[0][0] if self.events else None

    def run(self):
        """Run until the shard meets the others: its message."""
        while True:
            due = self.due()
            if due is None:
                return hold(None, self.u)
            if self.u == 0 and due >= self.horizon:
                return hold(due)
            self.run_instant()
            if self.u == 0:
                return {**check(self.ran[-1]), "due": self.due()}

    def run_instant(self):
        at, self.u = self.events.pop(0)
        self.ran.append(at)


@pytest.mark.parametrize("seed", range(40))
def test_the_fleet_settles_where_one_process_sees_every_phone_settled(seed):
    """Random shards (instants on a coarse grid, so shards share many): the barrier finds
    the first instant where, after every shard's calls there, no phone anywhere is
    unsettled, and no shard ran a call after it."""
    rng = random.Random(seed)
    shards = [Shard({rng.randrange(0, 400) / 4: rng.choice([0, 0, 1, 2]) for _ in range(rng.randrange(1, 30))})
              for _ in range(rng.randrange(2, 5))]
    timeline: dict[float, list[int]] = {}
    for index, shard in enumerate(shards):
        for at, u in shard.events:
            timeline.setdefault(at, []).append((index, u))
    counts, expected = [1] * len(shards), None
    for at in sorted(timeline):  # one process: every shard's calls at an instant, then the look
        for index, u in timeline[at]:
            counts[index] = u
        if sum(counts) == 0:
            expected = at
            break
    waiting = {index: shard.run() for index, shard in enumerate(shards)}
    settled, answers = None, 0
    while answers < 10_000:
        answers += 1
        what, whom = next_step(waiting)
        if what in ("settled", "nothing left"):
            settled = min(position(message) for message in waiting.values())[0] if what == "settled" else None
            break
        for index in whom:
            edge = horizon(waiting, index, whom)
            shards[index].horizon = math.inf if edge is None else edge
            if what == "go":
                shards[index].run_instant()
                waiting[index] = {**check(shards[index].ran[-1]), "due": shards[index].due()} \
                    if shards[index].u == 0 else shards[index].run()
            else:
                waiting[index] = shards[index].run()
    assert answers < 10_000 and settled == expected
    if expected is not None:
        assert all(at <= expected for shard in shards for at in shard.ran)

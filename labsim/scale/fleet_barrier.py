"""The ``--workers`` parent's side of ``when:`` across virtual-time shards
(``fleet_conditions`` is the shards' side): where every shard waits, and what to answer.

A shard writes a line of JSON when it stops to meet the others, and waits for the
answer. It stops at

- a **tick** (``kind`` absent or "tick"): the timeline's condition tick, which every
  shard comes to at the same instant (``fleet_conditions``);

and, in a run without a duration, where the fleet's end is decided (one process ends
at the instant every phone has settled, after judging its conditions there):

- a **check** at instant ``at``: its own phones have all settled (one process would look
  whether the whole fleet has, here);
- a **hold** before its next instant ``at`` (None: it has nothing left to do): its
  phones are settled and stay so until then, but another shard's may settle first;
- an **after**: its part of the fleet's unsettled phones after the entries a settled
  judgement fired (one process ends the run if none is).

The parent answers only when every shard still running waits, and answers the earliest
(instant, then hold < tick < check < after): so no shard passes an instant where the
fleet settles. A check at ``c`` is the fleet settling when every other shard waits at a
check at ``c`` too or holds after ``c`` with its phones settled (and every shard that
ended, ended settled): then every shard judges at ``c`` (a holding one moves its clock
there first, it has nothing due before). A shard whose phones are not all settled runs
on without meeting (the fleet cannot settle while they are not); one whose phones are
settled runs on without meeting up to its *horizon*: the earliest instant another shard
has anything due, before which nothing can settle or start elsewhere.
"""

from __future__ import annotations

import json
import math
import os
import select
import time

from labsim.scale.fleet_metrics import FleetMetrics

RANK = {"hold": 0, "tick": 1, "check": 2, "after": 3}  # at one instant: before its calls, the tick, after a change


def position(message: dict) -> tuple[float, int]:
    """Where a waiting shard is in the fleet's order of events (a hold at None: never)."""
    at = message["at"]
    return (math.inf if at is None else at), RANK[message.get("kind", "tick")]


def next_step(waiting: dict[int, dict], ended_settled: bool = True) -> tuple[str, list[int]]:
    """What to answer when every running shard waits (``waiting``: shard -> its message):
    (what, the shards answered). ``ended_settled``: every shard that ended had its phones
    settled. "tick", "after": all of them, met at one instant; "go": the holds at the
    earliest instant may run it; "settled": the fleet settled at the earliest check, every
    shard judges there; "unsettled": not (the checks at that instant run on); "nothing
    left": no shard has anything to do."""
    first = min(waiting.values(), key=position)
    kind, at = first.get("kind", "tick"), first.get("at")
    if kind in ("tick", "after"):
        if any(message.get("kind", "tick") != kind for message in waiting.values()):
            where = ", ".join(f"shard {index} at a {message.get('kind', 'tick')} at {message['at']}"
                              for index, message in sorted(waiting.items()))
            raise ValueError(f"a shard waits at a {kind} the others did not come to ({where})")
        return kind, sorted(waiting)
    if kind == "hold":
        if at is None:
            return "nothing left", sorted(waiting)
        return "go", sorted(index for index, message in waiting.items()
                            if message["kind"] == "hold" and message["at"] == at)
    checks = sorted(index for index, message in waiting.items() if message["kind"] == "check" and message["at"] == at)
    settled = ended_settled and all(
        (message["kind"] == "check" and message["at"] == at)
        or (message["kind"] == "hold" and message["u"] == 0 and (message["at"] is None or message["at"] > at))
        for message in waiting.values())
    return ("settled", sorted(waiting)) if settled else ("unsettled", checks)


def horizon(waiting: dict[int, dict], index: int, released) -> float | None:
    """Before when shard ``index`` may run without meeting while its phones are settled:
    the earliest instant another shard may do something, i.e. the call it has due next if
    it is ``released`` by the same answer, else where it waits (a check there may be the
    fleet settling). None: never."""
    instants = [message["due"] if other in released else position(message)[0]
                for other, message in waiting.items() if other != index]
    instants = [instant for instant in instants if instant is not None and instant != math.inf]
    return min(instants) if instants else None


class ConditionsBarrier:
    """Every shard's meetings, answered once every shard still running waits. A shard
    that ended counts with its last counts (its phones stay as they ended)."""

    def __init__(self, count: int):
        self.pipes = [(os.pipe(), os.pipe()) for _ in range(count)]  # (to the parent, to the shard)
        self._buffers = [b""] * count
        self._waiting: list[dict | None] = [None] * count
        self._open = [True] * count
        self._changes = [0] * count
        self._next: list[float | None] = [None] * count  # each shard's next call due (None: none)
        self._unsettled = [0] * count  # each shard's phones not settled, as it last said
        self.fleet = FleetMetrics(count)
        self._wanted: list[str] = []  # what the pending conditions read (every shard has the same)
        self._judged_changes = None  # the fleet's change count at the last answer the shards judged on
        self.ticks = 0  # ticks answered
        self.meetings = 0  # answers of any kind
        self._last_answer = float("-inf")  # when (monotonic) the shards were last answered

    def environment(self, index: int) -> tuple[dict, tuple[int, int]]:
        """The shard's environment entry and the fds it inherits."""
        from labsim.scale.fleet_conditions import ENVIRONMENT

        (_, to_parent), (from_parent, _) = self.pipes[index]
        return {ENVIRONMENT: f"{from_parent},{to_parent}"}, (from_parent, to_parent)

    def started(self) -> None:
        """The shards have their ends: close the parent's copies of them."""
        for (_, to_parent), (from_parent, _) in self.pipes:
            os.close(to_parent)
            os.close(from_parent)

    def serve(self, timeout: float) -> bool:
        """Read what the shards sent (waiting up to ``timeout``) and answer what can be;
        True if anything was read."""
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
                self._unsettled[index] = message.get("u", 0)
                self._wanted = message.get("wanted", self._wanted)
                self.fleet.take(index, message)
                self._waiting[index] = message
        while self._answer():
            pass
        return bool(ready)

    def _answer(self) -> bool:
        live = [index for index in range(len(self.pipes)) if self._open[index]]
        if not live or any(self._waiting[index] is None for index in live):
            return False
        waiting = {index: self._waiting[index] for index in live}
        ended_settled = all(self._unsettled[index] == 0 for index in range(len(self.pipes)) if not self._open[index])
        what, whom = next_step(waiting, ended_settled)
        answer: dict = {"changes": sum(self._changes)}
        if what == "tick":
            upcoming = [self._next[index] for index in live if self._next[index] is not None]
            answer["quiet_until"] = min(upcoming) if upcoming else None
            dues = [waiting[index]["due"] for index in live if waiting[index].get("due") is not None]
            answer["quiet_at"] = min(dues) if dues else None  # the same, on the shards' clocks
            self.ticks += 1
        if what == "settled" or (what == "tick" and answer["changes"] != self._judged_changes):
            # The shards judge their conditions now: what they read, over the whole fleet.
            self._judged_changes = answer["changes"]
            answer["metrics"], answer["per_phone"] = self.fleet.metrics(self._wanted)
        if what in ("settled", "unsettled"):  # the instant of the earliest check, or None: not settled there
            answer["settled"] = min(position(message) for message in waiting.values())[0] if what == "settled" else None
        elif what == "after":
            answer["unsettled"] = sum(self._unsettled)
        elif what == "go":
            answer["go"] = True
        elif what == "nothing left":
            answer["nothing_left"] = True
        for index in whom:
            self._waiting[index] = None
            try:
                os.write(self.pipes[index][1][1], json.dumps({**answer, "horizon": horizon(waiting, index, whom)}).encode()
                         + b"\n")
            except BrokenPipeError:
                self._open[index] = False
        self.meetings += 1
        self._last_answer = time.monotonic()
        return True

    def in_step(self, now: float) -> bool:
        """Whether the shards are meeting now (answered within the last second): then the
        parent only answers them, as a merge step would keep them waiting."""
        return now - self._last_answer < 1.0

    def close(self) -> None:
        for (from_shard, _), (_, to_shard) in self.pipes:
            for fd in (from_shard, to_shard):
                try:
                    os.close(fd)
                except OSError:
                    pass

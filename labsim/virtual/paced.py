"""A virtual-time run paced for people watching (``labsim run --clock virtual --ui``).

Without a dashboard a virtual run goes as fast as the CPU does (``virtual.run.drive``):
a week is over in a minute. With one, a class should see the week go by: the same lab
on the same simulated clock, run by ``Pacer`` from the real reactor, ``speed``
simulated seconds each wall second (600: a day in 2 min 24 s), while the reactor
answers the page between steps. A step runs the lab's calls in time order up to where
the pace says, as ``drive`` would, so the lab does exactly what it does unpaced, only
later on the wall clock; a step that takes too long stops early and the lab catches up
at the next (the page stays answered; a storm slows the pace, never the lab's order).
The time limit stays wall-clock, and the run's end (its duration, or every phone
settled) writes the report and leaves the lab running for the dashboard, as on sockets,
until Ctrl-C.
"""

from __future__ import annotations

import time

from twisted.internet import task

from labsim.virtual.run import PROGRESS_EVERY_S, progress_line

DEFAULT_SPEED = 600.0  # simulated seconds a wall second: a day in 2 min 24 s
STEP_S = 0.05  # wall seconds between steps
STEP_BUDGET_S = 0.04  # wall time a step may run the lab for before the reactor answers the page again


class Pacer:
    def __init__(self, reactor, clock, run, speed: float, stream):
        self.reactor, self.clock, self.run, self.speed, self.stream = reactor, clock, run, speed, stream
        self._loop = task.LoopingCall(self.step)
        self._loop.clock = reactor
        self._wall_start = self._simulated_start = 0.0
        self._deadline = self._next_line = 0.0
        self._timed_out = False

    def start(self) -> None:
        self._wall_start, self._simulated_start = self.reactor.seconds(), self.clock.seconds()
        self._deadline = self._wall_start + self.run.scenario.time_limit_s
        self._next_line = self._wall_start + PROGRESS_EVERY_S
        self._loop.start(STEP_S, now=True)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    @property
    def behind_s(self) -> float:
        """How far the lab's clock is behind the pace (simulated seconds)."""
        return max(0.0, self._target(self.reactor.seconds()) - self.clock.seconds())

    def _target(self, wall: float) -> float:
        return self._simulated_start + self.speed * (wall - self._wall_start)

    def step(self) -> None:
        run, clock = self.run, self.clock
        if run.closed:
            self.stop()
            return
        wall = self.reactor.seconds()
        target = self._target(wall)
        budget = time.monotonic() + STEP_BUDGET_S
        while not run.closed:
            due = clock.next_time()
            if due is None or due > target:
                if target > clock.seconds():
                    clock.run_until(target)  # nothing due before it: the lab's time moves on
                break
            clock.run_until(due)
            if time.monotonic() > budget:
                break  # the lab is busy: it catches up at the next step
        if wall >= self._deadline and not self._timed_out and not run.closed:
            self._timed_out = True
            run._time_up()  # the report, the lab left open (stay_open), as on sockets
        if wall >= self._next_line and not run.closed:
            self._next_line = wall + PROGRESS_EVERY_S
            behind = self.behind_s
            line = progress_line(run.counter, clock.seconds() - run._epoch, wall - self._wall_start)
            self.stream.write(line + (f"  (behind the pace by {behind:.0f}s)" if behind > self.speed else "") + "\n")
            self.stream.flush()

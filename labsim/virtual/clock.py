"""A simulated clock over a heap: ``IReactorTime`` like ``twisted.internet.task.Clock``,
at O(log n) per call instead of a sort of every pending call.

``task.Clock`` re-sorts its whole list on every ``callLater`` and after every call it
runs, so a fleet with one timer per phone pays O(n log n) per event: 1,000 phones x 7
days took 177 s in the test harness. Here each ``callLater`` pushes one heap entry;
``cancel`` and ``reset`` leave the old entry in place and it is skipped when it reaches
the top (a cancelled or already-run call, or one whose time moved earlier and was pushed
again). A call ``reset``/``delay``ed later keeps its entry until it reaches the top,
then goes back in at its new time, as the reactor itself does (``DelayedCall.delayed_time``).

Calls due at the same moment run in the order they were scheduled, as with
``task.Clock`` (whose sort is stable). A call ``reset`` or ``delay``ed to a moment other
calls are due at too may run before or after them: ``task.Clock`` keeps it where its old
time put it, the reactor's own heap promises nothing, and neither does this clock.

Most of a run's events need none of that: the in-memory network's answers to downloads
are never cancelled or moved. ``schedule`` puts such a call on the
heap as it is, without a ``ScheduledCall`` to make (~0.2 µs against ~0.65 for
``callLater``; a week of 1,000 phones schedules ~700,000 answers). It runs in its turn
like any other call (same time and order rules); it is not an ``IDelayedCall``, so
``getDelayedCalls`` does not list it, but it keeps the run going like one (``len``).

Some timers keep nothing going: the DHCP server's lease-file writer ticks whenever a
lease will run out, for as long as the server runs. They are scheduled through ``background()``, a view of
the clock, so a run can tell "only those are left" (``only_background``) from work still
to do, and end instead of ticking on by itself.
"""

from __future__ import annotations

import heapq
from itertools import count
from typing import Callable

from twisted.internet import error
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer


@implementer(IDelayedCall)
class ScheduledCall:
    """What ``HeapClock.callLater`` returns: ``IDelayedCall`` as Twisted's ``DelayedCall``
    has it (the same errors, ``reset`` and ``delay`` rules), with slots and one reference
    to its clock instead of three bound methods: a week of a fleet schedules millions."""

    __slots__ = ("time", "func", "args", "kw", "clock", "cancelled", "called", "delayed_time", "order", "background")

    def __init__(self, time: float, func: Callable[..., object], args: tuple, kw: dict, clock: "HeapClock",
                 order: int):
        self.time, self.func, self.args, self.kw, self.clock, self.order = time, func, args, kw, clock, order
        self.cancelled = self.called = 0
        self.delayed_time = 0.0
        self.background = False  # scheduled through HeapClock.background()

    def getTime(self) -> float:
        return self.time + self.delayed_time

    def cancel(self) -> None:
        if self.cancelled:
            raise error.AlreadyCancelled
        if self.called:
            raise error.AlreadyCalled
        self.clock._cancelled(self)
        self.cancelled = 1
        self.func = self.args = self.kw = None  # let go of what it would have run

    def reset(self, secondsFromNow: float) -> None:
        if self.cancelled:
            raise error.AlreadyCancelled
        if self.called:
            raise error.AlreadyCalled
        new_time = self.clock.rightNow + secondsFromNow
        if new_time < self.time:
            self.delayed_time = 0.0
            self.time = new_time
            self.clock._push(self)
        else:
            self.delayed_time = new_time - self.time

    def delay(self, secondsLater: float) -> None:
        if self.cancelled:
            raise error.AlreadyCancelled
        if self.called:
            raise error.AlreadyCalled
        self.delayed_time += secondsLater
        if self.delayed_time < 0.0:
            self.activate_delay()
            self.clock._push(self)

    def activate_delay(self) -> None:
        self.time += self.delayed_time
        self.delayed_time = 0.0

    def active(self) -> bool:
        return not (self.cancelled or self.called)

    def __lt__(self, other: "ScheduledCall") -> bool:
        return self.time < other.time

    def __le__(self, other: "ScheduledCall") -> bool:
        return self.time <= other.time

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else "called" if self.called else "pending"
        name = getattr(self.func, "__qualname__", None) or repr(self.func)
        return f"<ScheduledCall {name} at {self.getTime()} ({state})>"


@implementer(IReactorTime)
class HeapClock:
    def __init__(self, start: float = 0.0):
        self.rightNow = start
        # (time, order, call, None) for a ScheduledCall; (time, order, function, args) for
        # a call made with ``schedule``. ``order`` (a call's place among calls due at the
        # same moment) is unique to a call: two entries tie only when they are one
        # ScheduledCall's, pushed again at the same time, and then either may go first.
        self._heap: list[tuple] = []
        self._order = count()
        self._live = 0  # scheduled and neither run nor cancelled
        self._background = 0  # of those, scheduled through background()

    def seconds(self) -> float:
        return self.rightNow

    def callLater(self, delay: float, callable: Callable[..., object], *args: object, **kw: object) -> ScheduledCall:
        when = self.rightNow + delay
        call = ScheduledCall(when, callable, args, kw, self, next(self._order))
        self._live += 1
        heapq.heappush(self._heap, (when, call.order, call, None))  # _push, inlined
        return call

    def schedule(self, delay: float, callable: Callable[..., object], *args: object) -> None:
        """``callLater`` for a call nobody will cancel, move or ask about (see the module's
        docstring): it runs ``delay`` seconds from now, in its turn."""
        self._live += 1
        heapq.heappush(self._heap, (self.rightNow + delay, next(self._order), callable, args))

    def _push(self, call: ScheduledCall) -> None:
        heapq.heappush(self._heap, (call.time + call.delayed_time, call.order, call, None))  # getTime()

    def _cancelled(self, call: ScheduledCall) -> None:
        self._live -= 1
        if call.background:
            self._background -= 1

    def background(self) -> "BackgroundTimers":
        """This clock, for timers a run should not wait on (see the module's docstring)."""
        return BackgroundTimers(self)

    def only_background(self) -> bool:
        """Whether every pending call is a background one (none pending: True)."""
        return self._live == self._background

    def getDelayedCalls(self) -> list[ScheduledCall]:
        """The pending ScheduledCalls, earliest first (O(n): for tests and the end of a
        run); calls made with ``schedule`` are not among them."""
        seen, calls = set(), []
        for entry in sorted(self._heap, key=lambda entry: entry[:2]):
            call = entry[2]
            if entry[3] is not None:
                continue
            if not (call.cancelled or call.called) and id(call) not in seen:
                seen.add(id(call))
                calls.append(call)
        return calls

    def __len__(self) -> int:
        return self._live

    def next_time(self) -> float | None:
        """When the earliest pending call is due, or None when nothing is pending."""
        heap = self._heap
        while heap:
            when, _, call, args = heap[0]
            if args is not None:  # made with schedule(): nothing moves or cancels it
                return when
            if call.cancelled or call.called:
                heapq.heappop(heap)
                continue
            due = call.time + call.delayed_time  # getTime(), without the method call
            if due == when:
                return when
            heapq.heappop(heap)
            if due > when:  # delayed: back in at its new time
                call.activate_delay()
                self._push(call)
            # earlier: a newer entry for it is already in the heap
        return None

    def advance(self, amount: float) -> None:
        """Move time forward by ``amount`` and run every call due by then, in time order
        (calls they schedule for no later than the new time run too)."""
        self.run_until(self.rightNow + amount)

    def run_until(self, moment: float) -> None:
        """Run every call due up to ``moment``, the clock stepping to each call's time;
        then the clock reads ``moment``."""
        heap = self._heap
        pop = heapq.heappop
        while heap:
            when, _, call, args = heap[0]  # next_time(), inlined: once per event of a run
            if args is not None:  # made with schedule(): due as pushed, never cancelled
                if when > moment:
                    break
                pop(heap)
                if when > self.rightNow:
                    self.rightNow = when
                self._live -= 1
                call(*args)
                continue
            if call.cancelled or call.called:
                pop(heap)
                continue
            due = call.time + call.delayed_time
            if due != when:
                pop(heap)
                if due > when:  # delayed: back in at its new time
                    call.activate_delay()
                    self._push(call)
                continue  # earlier: a newer entry for it is already in the heap
            if due > moment:
                break
            pop(heap)
            if due > self.rightNow:
                self.rightNow = due
            call.called = 1
            self._live -= 1
            call.func(*call.args, **call.kw)
        if moment > self.rightNow:
            self.rightNow = moment

    def pump(self, timings) -> None:
        for amount in timings:
            self.advance(amount)


@implementer(IReactorTime)
class BackgroundTimers:
    """``IReactorTime`` over a HeapClock whose calls are counted as background ones."""

    def __init__(self, clock: HeapClock):
        self.clock = clock

    def seconds(self) -> float:
        return self.clock.rightNow

    def callLater(self, delay: float, callable: Callable[..., object], *args: object, **kw: object) -> ScheduledCall:
        clock = self.clock
        call = clock.callLater(delay, self._run, callable, args, kw)
        call.background = True
        clock._background += 1
        return call

    def _run(self, callable, args, kw) -> None:
        self.clock._background -= 1
        callable(*args, **kw)

    def getDelayedCalls(self) -> list[ScheduledCall]:
        return [call for call in self.clock.getDelayedCalls() if call.background]

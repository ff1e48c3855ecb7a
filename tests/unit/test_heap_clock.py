"""labsim's simulated clock behaves like twisted's task.Clock, over a heap."""

import random

import pytest
from twisted.internet import error
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface.verify import verifyObject
from twisted.internet.task import Clock

from labsim.virtual.clock import HeapClock


def test_provides_ireactortime():
    assert IReactorTime.providedBy(HeapClock())


def test_a_scheduled_call_keeps_twisteds_delayedcall_rules():
    """callLater returns labsim's slotted ScheduledCall: IDelayedCall with the errors and
    reset/delay rules of Twisted's DelayedCall, side by side with task.Clock's."""
    for clock in (HeapClock(), Clock()):
        ran = []
        call = clock.callLater(5, ran.append, "a")
        verifyObject(IDelayedCall, call)
        assert call.active() and call.getTime() == 5
        call.delay(2)
        assert call.getTime() == 7
        call.delay(-4)  # earlier than first set: moved at once
        assert call.getTime() == 3
        clock.advance(1)
        call.reset(1)  # from now: 2
        assert call.getTime() == 2
        clock.advance(1)
        assert ran == ["a"] and not call.active()
        for change in (call.cancel, lambda: call.reset(1), lambda: call.delay(1)):
            with pytest.raises(error.AlreadyCalled):
                change()
        other = clock.callLater(1, ran.append, "b")
        other.cancel()
        for change in (other.cancel, lambda: other.reset(1), lambda: other.delay(1)):
            with pytest.raises(error.AlreadyCancelled):
                change()
        clock.advance(5)
        assert ran == ["a"] and clock.getDelayedCalls() == []
        assert "ScheduledCall" in repr(call) or "DelayedCall" in repr(call)


def test_calls_run_in_time_order_and_equal_times_in_scheduling_order():
    clock, ran = HeapClock(), []
    for label, delay in [("c", 3), ("a", 1), ("b1", 2), ("b2", 2), ("b3", 2)]:
        clock.callLater(delay, ran.append, label)
    clock.advance(2)
    assert ran == ["a", "b1", "b2", "b3"] and clock.seconds() == 2
    clock.advance(5)
    assert ran[-1] == "c" and clock.seconds() == 7 and clock.getDelayedCalls() == []


def test_cancel_reset_delay_active_and_the_errors_of_task_clock():
    clock, ran = HeapClock(), []
    first = clock.callLater(5, ran.append, "first")
    second = clock.callLater(5, ran.append, "second")
    moved = clock.callLater(1, ran.append, "moved")
    assert [c.getTime() for c in clock.getDelayedCalls()] == [1, 5, 5] and len(clock) == 3
    first.cancel()
    assert not first.active() and len(clock) == 2
    with pytest.raises(error.AlreadyCancelled):
        first.cancel()
    moved.reset(9)  # later: it leaves its place and goes back in at 9
    second.delay(1)  # now 6
    clock.advance(5.5)
    assert ran == []
    clock.advance(0.5)
    assert ran == ["second"] and not second.active()
    with pytest.raises(error.AlreadyCalled):
        second.reset(1)
    moved.reset(1)  # earlier than 9: now 7
    clock.advance(1)
    assert ran == ["second", "moved"] and clock.getDelayedCalls() == []


def test_a_call_scheduled_during_a_run_for_now_runs_in_the_same_advance():
    clock, ran = HeapClock(), []
    clock.callLater(1, lambda: clock.callLater(0, ran.append, clock.seconds()))
    clock.advance(1)
    assert ran == [1]


def test_time_during_a_call_is_the_calls_own_moment():
    # task.Clock shows the end of the advance; here time jumps from event to event.
    clock, seen = HeapClock(), []
    clock.callLater(3, lambda: seen.append(clock.seconds()))
    clock.advance(10)
    assert seen == [3] and clock.seconds() == 10


def test_a_call_made_with_schedule_runs_in_its_turn_among_callLaters_and_keeps_the_run_going():
    """schedule() (the in-memory network's answers): the same time and order rules as
    callLater, no IDelayedCall to cancel, counted as pending until it runs."""
    clock, ran = HeapClock(), []
    clock.callLater(2, ran.append, "call 1")
    clock.schedule(2, ran.append, "scheduled 2")
    moved = clock.callLater(5, ran.append, "moved to 1.5")
    clock.schedule(1, ran.append, "scheduled 1")
    clock.callLater(2, ran.append, "call 3")
    moved.reset(1.5)
    clock.callLater(0, lambda: clock.schedule(0, ran.append, f"scheduled at {clock.seconds()} for now"))
    assert len(clock) == 6 and len(clock.getDelayedCalls()) == 4 and clock.next_time() == 0
    clock.advance(1)
    assert ran == ["scheduled at 0.0 for now", "scheduled 1"] and clock.next_time() == 1.5
    assert not clock.only_background()
    clock.advance(0.5)
    assert ran[-1] == "moved to 1.5" and clock.seconds() == 1.5 and len(clock) == 3
    clock.advance(10)
    assert ran[3:] == ["call 1", "scheduled 2", "call 3"] and len(clock) == 0 and clock.next_time() is None


def _scenario(clock, rng: random.Random, log: list, advance, moves: bool):
    """Random callLater/cancel/reset/delay with calls scheduling calls; the same ops on
    either clock. Delays are integers so both clocks see exactly the same times."""
    pending = []

    def fire(label):  # no randomness here: the order among equals must not change the rest
        log.append((clock.seconds(), label))
        number = int(label[1:].rstrip("'"))
        if number % 3 == 0 and label.count("'") < 3:
            pending.append((label + "'", clock.callLater(number % 4, fire, label + "'")))

    for step in range(250):
        choice = rng.random()
        live = [call for _, call in sorted(pending, key=lambda pair: pair[0]) if call.active()]
        if choice < 0.5 or not live:
            pending.append((f"c{step:03d}", clock.callLater(rng.randint(0, 20), fire, f"c{step:03d}")))
        elif choice < 0.65:
            rng.choice(live).cancel()
        elif choice < 0.8 and moves:
            rng.choice(live).reset(rng.randint(0, 20))
        elif choice < 0.9 and moves:
            rng.choice(live).delay(rng.randint(-3, 5))
        else:
            advance(rng.randint(0, 4))
        log.append(("active", clock.seconds(), sorted(c.getTime() for c in clock.getDelayedCalls())))
    advance(100)


def _in_time_order_of_equals(log):
    """The log with the calls run at one moment sorted: the order among equals a reset
    call takes is not promised (see the module)."""
    grouped, out = {}, []
    for entry in log:
        if entry[0] == "active":
            out.append(entry)
        else:
            out.append(("run", entry[0]))
            grouped.setdefault(entry[0], []).append(entry[1])
    return out, {t: sorted(labels) for t, labels in grouped.items()}


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("moves", [False, True], ids=["callLater-cancel", "with-reset-delay"])
def test_the_same_operations_give_the_same_calls_at_the_same_times_as_task_clock(seed, moves):
    reference, reference_log = Clock(), []

    def step_reference(amount):  # task.Clock moved from one due call to the next
        end = reference.seconds() + amount
        while reference.calls and min(c.getTime() for c in reference.calls) <= end:  # (unsorted after a reset)
            reference.advance(max(0, min(c.getTime() for c in reference.calls) - reference.seconds()))
        reference.advance(end - reference.seconds())

    _scenario(reference, random.Random(seed), reference_log, step_reference, moves)
    heap, heap_log = HeapClock(), []
    _scenario(heap, random.Random(seed), heap_log, heap.advance, moves)
    if moves:
        assert _in_time_order_of_equals(heap_log) == _in_time_order_of_equals(reference_log)
    else:  # exactly, equal times in scheduling order included
        assert heap_log == reference_log
    assert len([entry for entry in heap_log if entry[0] != "active"]) > 60  # the scenario did run calls


def test_background_timers_run_on_the_clock_but_a_run_can_tell_they_are_all_that_is_left():
    from twisted.internet.task import LoopingCall

    clock, ticks, ran = HeapClock(), [], []
    assert clock.only_background()  # nothing pending at all
    loop = LoopingCall(lambda: ticks.append(clock.seconds()))
    loop.clock = clock.background()
    loop.start(1.0, now=False)
    work = clock.callLater(2.5, ran.append, "work")
    assert not clock.only_background()
    clock.advance(3)
    assert ticks == [1, 2, 3] and ran == ["work"] and clock.only_background()
    other = clock.callLater(1, ran.append, "other")
    assert not clock.only_background()
    other.cancel()
    assert clock.only_background() and len(clock) == 1
    assert [c.getTime() for c in clock.background().getDelayedCalls()] == [4]
    loop.stop()  # cancels its pending background call
    assert len(clock) == 0 and clock._background == 0 and clock.only_background()
    assert work.called and not work.active()

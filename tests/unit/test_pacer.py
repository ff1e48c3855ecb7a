"""The power-on pacer: one timer for a whole arrival schedule, lateness measured per phone."""

from twisted.internet.task import Clock

from labsim.fleet.pacer import LATENESS_CAP_MS, Pacer, lateness_percentile


def paced(moments):
    clock = Clock()
    released = []
    pacer = Pacer(clock)
    pacer.schedule([(when, lambda i=i: released.append((i, clock.seconds()))) for i, when in enumerate(moments)])
    pacer.start()
    return clock, pacer, released


def test_a_rate_is_released_on_time_with_one_timer_pending():
    moments = [i / 5000 for i in range(5000)]  # 5,000 phones/s for a second
    clock, pacer, released = paced(moments)
    while pacer.pending:
        assert len(clock.getDelayedCalls()) == 1
        clock.advance(0.0002)
    assert [i for i, _ in released] == list(range(5000))
    assert all(at - moments[i] < 0.0002 + 1e-9 for i, at in released)
    assert pacer.lateness_ms == {"0": 5000}
    assert clock.getDelayedCalls() == []


def test_after_a_stall_every_due_phone_goes_and_its_lateness_is_counted():
    clock, pacer, released = paced([0.0, 0.1, 0.2, 0.3, 5.0])
    clock.advance(0.25)  # the reactor was busy for 250 ms
    assert [i for i, _ in released] == [0, 1, 2]
    assert pacer.lateness_ms == {"250": 1, "150": 1, "50": 1}
    clock.advance(0.05)
    clock.advance(10)
    assert [i for i, _ in released] == [0, 1, 2, 3, 4]
    assert pacer.lateness_ms[str(LATENESS_CAP_MS)] == 1  # 5 s late: the last bucket
    assert lateness_percentile(pacer.lateness_ms, 0.5) == 150 and lateness_percentile({}, 0.99) is None


def test_ties_keep_the_given_order_and_stop_leaves_the_rest_off():
    clock, pacer, released = paced([1.0, 0.5, 1.0, 1.0, 2.0])
    clock.advance(1.0)
    assert [i for i, _ in released] == [1, 0, 2, 3]
    pacer.stop()
    clock.advance(5)
    assert len(released) == 4 and clock.getDelayedCalls() == []


def test_on_done_is_called_once_after_the_last_phone_or_on_stop():
    clock, done = Clock(), []
    pacer = Pacer(clock, on_done=lambda: done.append(clock.seconds()))
    pacer.schedule([(0.1, lambda: None), (0.2, lambda: None)])
    pacer.start()
    clock.advance(0.15)
    assert done == []
    clock.advance(0.1)
    assert done == [0.25]
    pacer.stop()
    assert done == [0.25]  # once
    stopped = Pacer(clock, on_done=lambda: done.append("stopped"))
    stopped.schedule([(10.0, lambda: None)])
    stopped.start()
    stopped.stop()  # the run ended before its last phone: done all the same
    assert done == [0.25, "stopped"]

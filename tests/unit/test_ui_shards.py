"""The request rates a --workers dashboard draws: taken over a window, so counters that
reach the parent in a bunch (a worker's reactor stalled) are not drawn as a spike."""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet import task

from labsim.ui.shards import RATE_WINDOW_S, ShardedDashboard


def dashboard(clock):
    run = SimpleNamespace(scenario=None, members=[], counter=SimpleNamespace(listeners=[]), before_report=[],
                          shard_counters={})
    return ShardedDashboard(clock, run=run), run


def test_rates_add_the_shards_and_spread_a_late_bunch_over_the_window():
    clock = task.Clock()
    hub, run = dashboard(clock)
    rates = []
    for step in range(1, 25):  # 6 s of 0.25 s frames; 200 requests/s in each of 2 shards
        clock.advance(0.25)
        sent = 200 * clock.seconds()
        # Shard 1's counters arrive only every 2 s (its reactor stalls), in one bunch.
        late = 200 * (clock.seconds() // 2 * 2)
        run.shard_counters = {0: {"requests": {"http": sent}}, 1: {"requests": {"http": late}}}
        rates.append(hub._rates().get("http", 0.0))
    steady = rates[8:]
    # Frame by frame a 2 s bunch would be drawn as 200 + 400 / 0.25 = 1,800/s for one frame;
    # over the 1 s window it is 600/s for a second, then 200/s: the same requests in all.
    assert max(steady) <= 200 + 400 / RATE_WINDOW_S
    assert 350 <= sum(steady) / len(steady) <= 450
    assert hub.request_totals() == {"http": 200 * 6 + 200 * 6}

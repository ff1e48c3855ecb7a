"""The request totals a --workers dashboard's chart points carry: every shard's requests,
added up as their counters reach the parent. (How the page turns them into rates, and
spreads a shard's late bunch over a second: tests/e2e/test_dashboard_browser.py.)"""

from __future__ import annotations

import json
from types import SimpleNamespace

from twisted.internet import task

from labsim.ui.shards import ShardedDashboard


def dashboard(clock):
    run = SimpleNamespace(scenario=None, members=[], counter=SimpleNamespace(listeners=[]), before_report=[],
                          shard_counters={})
    return ShardedDashboard(clock, run=run), run


def test_chart_points_carry_every_shards_requests_so_far():
    clock = task.Clock()
    hub, run = dashboard(clock)
    run.shard_counters = {0: {"requests": {"http": 120, "dhcp": 4}}, 1: {"requests": {"http": 80}}}
    frame = hub.feed.flush(0.25)
    data = json.loads(frame.decode().split("data: ", 1)[1])
    assert data["point"] and data["totals"] == {"http": 200, "dhcp": 4}
    run.shard_counters[1] = {"requests": {"http": 480, "tftp": 3}}  # shard 1's late bunch
    hub.feed.flush(0.5)
    assert hub.feed.series_totals == [{"http": 200, "dhcp": 4}, {"http": 600, "dhcp": 4, "tftp": 3}]

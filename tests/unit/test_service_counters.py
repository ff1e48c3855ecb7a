"""A service's counters in the report are the whole run's: the timeline may stop a
service, or restart it (a new server, counting from zero); what every start counted is
added up, on sockets and in memory alike."""

from __future__ import annotations

import os

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from labsim.scenario.loader import load_scenario
from labsim.services.counters import add_counters
from labsim.services.lab import LabServices
from labsim.virtual.clock import HeapClock
from labsim.virtual.lab import VirtualServices

SCENARIO = """\
name: counters
network: {dhcp_server: 127.0.0.1}
services:
  tftp: {port: 0}
  http: {port: 0}
  dns: {port: 0}
provisioning:
  files: {a.cfg: "x"}
fleets:
  - {vendor: yealink, models: {T46S: 1}, first_mac: "00:15:65:00:00:01"}
"""


def count(services, name: str, times: int) -> None:
    """``times`` more requests on the running server ``name`` (its own counter)."""
    stats = services.running[name].stats
    if name == "http":
        stats.requests += times
        stats.status[200] = stats.status.get(200, 0) + times
    elif name == "dns":
        stats.queries += times
    else:
        stats["rrq"] += times


def counted(stats: dict) -> dict:
    return {"tftp": stats["tftp"]["rrq"], "http": (stats["http"]["requests"], stats["http"]["status"]["200"]),
            "dns": stats["dns"]["queries"]}


def spec(test):
    path = test.mktemp()
    with open(path, "w") as handle:
        handle.write(SCENARIO)
    root = test.mktemp()
    os.makedirs(root)
    return load_scenario(path).scenario.services, root


def count_and_restart(services) -> None:
    for name in ("tftp", "http", "dns"):
        count(services, name, 3)
        services.control("restart", name)


def count_and_stop(services) -> None:
    for name in ("tftp", "http", "dns"):
        count(services, name, 2)
    services.control("stop", "dns")  # stopped for good: still in the report


class RunCountersTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_on_sockets_every_start_counts(self):
        services = LabServices(reactor, *spec(self))
        yield services.start()
        self.addCleanup(services.stop)
        count_and_restart(services)
        yield task.deferLater(reactor, 0.2, lambda: None)  # a restart binds again once the old port is closed
        count_and_stop(services)
        yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(counted(services.stats()), {"tftp": 5, "http": (5, 5), "dns": 5})
        self.assertEqual(list(services.stats()), ["tftp", "http", "dns"])

    def test_in_memory_every_start_counts(self):
        services = VirtualServices(HeapClock(), *spec(self))
        services.start()
        count_and_restart(services)
        count_and_stop(services)
        self.assertEqual(counted(services.stats()), {"tftp": 5, "http": (5, 5), "dns": 5})
        services.stop()


def test_add_counters_adds_nested_counts_and_keeps_the_first_text():
    total = add_counters([{"a": 1, "status": {"200": 2}, "name": "x"}, {"a": 2, "status": {"200": 1, "404": 4},
                                                                         "name": "y"}, None])
    assert total == {"a": 3, "status": {"200": 3, "404": 4}, "name": "x"}

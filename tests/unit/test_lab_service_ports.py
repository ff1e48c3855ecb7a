"""A service asked for port 0 keeps the port it got when the timeline restarts it: the
phones were told that port (by DHCP options, files) and the ports file says it."""

from __future__ import annotations

import json
import os

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from labsim.scenario.loader import load_scenario
from labsim.services.lab import LabServices

SCENARIO = """\
name: ports
network: {dhcp_server: 127.0.0.1}
services:
  tftp: {port: 0}
  http: {port: 0}
provisioning:
  files: {a.cfg: "x"}
fleets:
  - {vendor: yealink, models: {T46S: 1}, first_mac: "00:15:65:00:00:01"}
"""


class PortZeroTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_restart_keeps_the_port_the_kernel_gave(self):
        path = self.mktemp()
        with open(path, "w") as handle:
            handle.write(SCENARIO)
        root = self.mktemp()
        os.makedirs(root)
        services = LabServices(reactor, load_scenario(path).scenario.services, root)
        yield services.start()
        self.addCleanup(services.stop)
        first = services.ports()
        self.assertTrue(all(first.values()), first)
        for name in ("tftp", "http"):
            services.control("restart", name)
        yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(services.ports(), first)
        ports_file = self.mktemp()
        services.write_ports_file(ports_file)
        with open(ports_file) as handle:
            self.assertEqual(json.load(handle), first)

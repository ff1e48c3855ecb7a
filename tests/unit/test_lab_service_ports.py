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


FTP_LAB = """\
name: limits
network: {dhcp_server: 127.0.0.1}
services:
  ftp: {port: 0, anonymous: true}
  dns: {port: 0}
provisioning:
  files: {a.cfg: "x"}
fleets:
  - {vendor: yealink, models: {T46S: 1}, first_mac: "00:15:65:00:00:01"}
"""


class PerAddressLimitTests(unittest.TestCase):
    """The per-client-address limits keep one real client from locking others out of
    `labsim serve`; under `labsim run` every phone comes from 127.0.0.1, so unset they
    must not throttle the run's own fleet."""

    @defer.inlineCallbacks
    def _ftp_limit(self, text: str, own_fleet: bool):
        path = self.mktemp()
        with open(path, "w") as handle:
            handle.write(text)
        root = self.mktemp()
        os.makedirs(root)
        services = LabServices(reactor, load_scenario(path).scenario.services, root, own_fleet=own_fleet)
        yield services.start()
        self.addCleanup(services.stop)
        return services.ftp._server.max_cons_per_ip  # pyftpdlib's own per-address limit

    @defer.inlineCallbacks
    def test_serve_limits_each_address_and_run_does_not(self):
        self.assertEqual((yield self._ftp_limit(FTP_LAB, own_fleet=False)), 256)
        self.assertEqual((yield self._ftp_limit(FTP_LAB, own_fleet=True)), 0)

    @defer.inlineCallbacks
    def test_a_limit_the_scenario_sets_holds_for_both(self):
        text = FTP_LAB.replace("anonymous: true}", "anonymous: true, max_connections_per_address: 7}")
        self.assertEqual((yield self._ftp_limit(text, own_fleet=False)), 7)
        self.assertEqual((yield self._ftp_limit(text, own_fleet=True)), 7)

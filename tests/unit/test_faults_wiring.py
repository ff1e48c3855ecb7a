"""``LabServices.attach_faults``: every service with a fault link gets one at start, and
again when the timeline restarts it (real loopback sockets, free ports)."""

from __future__ import annotations

import os
import random

from twisted.internet import defer, reactor, task
from twisted.trial import unittest as trial

from labsim.faults import FaultSet, FaultyLink
from labsim.scenario.loader import parse_scenario_text
from labsim.services.lab import LINKED_SERVICES, LabServices
from tests.peers import free_port_udp_and_tcp, free_tcp_port, free_udp_port


def services_spec():
    text = f"""\
name: wiring
services:
  dhcp: {{port: {free_udp_port()}, subnet: 10.9.0.0/16, pool: {{start: 10.9.0.10, end: 10.9.0.250}}}}
  tftp: {{port: {free_udp_port()}}}
  http: {{port: {free_tcp_port()}}}
  ftp: {{port: {free_tcp_port()}, anonymous: true}}
  dns: {{port: {free_port_udp_and_tcp()}, records: [{{name: prov.lab, type: A, value: 127.0.0.1}}]}}
  pnp: {{port: {free_udp_port()}, url: "http://127.0.0.1/"}}
fleets:
  - {{name: desk, vendor: yealink, models: {{T46S: 1}}, first_mac: "00:15:65:00:00:01"}}
"""
    return parse_scenario_text(text).services


@defer.inlineCallbacks
def restarted(lab, name, before):
    """The new handle once the restart is done (it waits for the old port to close)."""
    for _ in range(100):
        handle = lab.running.get(name)
        if handle is not None and handle is not before:
            return handle
        yield task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError(f"{name} did not come back")


class AttachFaultsTests(trial.TestCase):
    @defer.inlineCallbacks
    def test_every_linked_service_gets_a_link_at_start_and_after_a_restart(self):
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        faults = FaultSet(random.Random(1))
        lab = LabServices(reactor, services_spec(), root, cert_dir=root, faults=faults)
        yield lab.start()
        try:
            self.assertEqual(set(LINKED_SERVICES), {"tftp", "dns", "pnp", "ftp"})
            for name in LINKED_SERVICES:
                link = lab.running[name].link
                self.assertIsInstance(link, FaultyLink, name)
                self.assertEqual((link.service, link.faults), (name, faults))
            self.assertIs(lab.http.site.resource.faults, faults)
            # The PnP link is on each of its sockets; the DNS one on UDP and TCP alike.
            self.assertTrue(all(p.link is lab.pnp.link for p in lab.pnp.protocols))
            self.assertIs(lab.dns._tcp_factory.link, lab.dns.link)

            for name in LINKED_SERVICES:
                before = lab.running[name]
                lab.control("restart", name)
                after = yield restarted(lab, name, before)
                self.assertIsNot(after, before, name)
                self.assertIsInstance(after.link, FaultyLink, f"{name} after a restart")
                self.assertEqual(after.link.service, name)
        finally:
            yield lab.stop()

    @defer.inlineCallbacks
    def test_restart_brings_tcp_services_back_on_the_same_port(self):
        # A TCP port is closed on the reactor's next turn: the restart waits for it.
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        lab = LabServices(reactor, services_spec(), root, cert_dir=root)
        yield lab.start()
        try:
            for name in ("http", "dns", "ftp"):
                before = lab.running[name]
                port = before.port
                self.assertEqual(lab.control("restart", name), f"restart {name}")
                after = yield restarted(lab, name, before)
                self.assertEqual(after.port, port)
        finally:
            yield lab.stop()

    @defer.inlineCallbacks
    def test_without_a_fault_set_nothing_is_attached(self):
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        lab = LabServices(reactor, services_spec(), root, cert_dir=root)
        yield lab.start()
        try:
            for name in LINKED_SERVICES:
                self.assertIsNone(lab.running[name].link, name)
        finally:
            yield lab.stop()

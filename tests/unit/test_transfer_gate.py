"""The fleet's TFTP transfers to one server, at most so many at once (transport.transfer_gate)."""

from __future__ import annotations

import os

import pytest
from twisted.internet import defer, reactor
from twisted.internet.task import Clock, deferLater
from twisted.trial import unittest as trial

from labsim.phones.events import Fetch
from labsim.services.tftp import TftpServerConfig
from labsim.services.tftp_udp import start_tftp_server
from labsim.transport import loopback
from labsim.transport.loopback import LoopbackNetwork
from labsim.transport.transfer_gate import TRANSFERS_PER_SERVER, TransferGate
from tests.peers import free_udp_port
from tests.udp_socket import settle


def test_transfers_over_the_limit_wait_and_start_in_order_as_others_end():
    gate = TransferGate(limit=2)
    transfers, started = {}, []

    def transfer(name):
        def start():
            started.append(name)
            transfers[name] = defer.Deferred()
            return transfers[name]
        return start

    results = {name: [] for name in "abcd"}
    for name in "abcd":
        gate.run(transfer(name)).addBoth(results[name].append)
    assert started == ["a", "b"] and gate.running == 2 and gate.queued == 2 and gate.waited == 2
    transfers["b"].callback("B")
    assert started == ["a", "b", "c"] and results["b"] == ["B"]
    transfers["a"].errback(RuntimeError("a failed"))
    assert started == ["a", "b", "c", "d"]
    assert results["a"][0].check(RuntimeError)  # each caller gets its own transfer's outcome
    transfers["c"].callback("C")
    transfers["d"].callback("D")
    assert results["c"] == ["C"] and results["d"] == ["D"]
    assert gate.running == 0 and gate.queued == 0


def test_a_waiting_transfers_clock_starts_when_it_leaves_the_queue():
    """The phone's 31 s of TFTP back-off must not be spent waiting behind the fleet's others."""
    clock, gate = Clock(), TransferGate(limit=1)
    began = []

    def transfer(seconds):
        def start():
            began.append(clock.seconds())
            return deferLater(clock, seconds, lambda: seconds)
        return start

    first, second = gate.run(transfer(40.0)), gate.run(transfer(5.0))
    clock.advance(40.0)
    assert began == [0.0, 40.0] and first.result == 40.0 and not second.called
    clock.advance(5.0)
    assert second.result == 5.0


def test_transfers_that_end_at_once_do_not_recurse_through_the_queue():
    gate = TransferGate(limit=1)
    held = defer.Deferred()
    gate.run(lambda: held)
    outcomes = [gate.run(lambda n=n: defer.succeed(n)) for n in range(5000)]
    held.callback(None)  # all 5,000 run and end, one after the other, without a deep stack
    assert [d.result for d in outcomes] == list(range(5000)) and gate.running == 0


def test_a_start_that_raises_is_that_transfers_failure_and_frees_its_place():
    gate = TransferGate(limit=1)

    def broken():
        raise OSError("no port to bind")

    failed = gate.run(broken)
    assert failed.result.check(OSError) and gate.running == 0
    failed.addErrback(lambda _: None)
    assert gate.run(lambda: defer.succeed("next")).result == "next"
    with pytest.raises(ValueError):
        TransferGate(limit=0)


class LoopbackTftpGateTests(trial.TestCase):
    @defer.inlineCallbacks
    def test_a_storm_of_downloads_to_one_server_goes_through_its_gate(self):
        self.patch(loopback, "TFTP_LINGER_S", 0.0)
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        for index in range(20):
            with open(os.path.join(root, f"file{index}.cfg"), "wb") as handle:
                handle.write(b"x" * (100 + index))
        server = start_tftp_server(reactor, TftpServerConfig(root), "127.0.0.1", 0)
        self.addCleanup(server.stop)
        network = LoopbackNetwork(reactor, dhcp_server=("127.0.0.1", free_udp_port()), relay_address="127.0.0.2")
        self.addCleanup(network.close)
        gate = network.tftp_gates[("127.0.0.1", server.port)] = TransferGate(limit=3)
        most = []
        results = yield defer.gatherResults([
            network.fetch(Fetch(index, f"tftp://127.0.0.1:{server.port}/file{index}.cfg"))
            .addCallback(lambda result: most.append(gate.running) or result) for index in range(20)])
        self.assertEqual([(r.status, len(r.body)) for r in results], [("ok", 100 + i) for i in range(20)])
        self.assertEqual((gate.waited, gate.running, gate.queued), (17, 0, 0))
        self.assertLessEqual(max(most), 3)
        self.assertEqual(TRANSFERS_PER_SERVER, network._tftp_gate("127.0.0.2", 69).limit)  # one gate per server
        yield deferLater(reactor, 0, lambda: None)
        yield settle()

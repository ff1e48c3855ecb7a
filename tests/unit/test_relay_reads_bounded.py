"""The relay reads its socket for a bounded time per readiness event, so a storm's replies
do not hold the reactor's timers (the power-on pacer) back for tens of ms; what is left
waiting is read in the next turns. While replies keep waiting the budget grows (the
fleet is behind: its replies first). A DHCP timer's read of what waits is not bounded so."""

from __future__ import annotations

import socket

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest as trial

from labsim.transport.loopback import BoundedReads, LoopbackNetwork, read_datagrams
from labsim.wire import dhcp
from tests.peers import free_udp_port

MAC = bytes.fromhex("001565000001")


class Phone:
    """A driver as the relay sees one: what it was handed."""

    def __init__(self):
        self.phone = self
        self.mac_bytes = MAC
        self.xids: list[int] = []

    def dhcp_received(self, message):
        self.xids.append(message.xid)


class SteppingClock:
    """Each reading is ``step`` seconds after the one before."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class RelayReads(trial.TestCase):
    def setUp(self):
        self.port = free_udp_port()
        self.network = LoopbackNetwork(reactor, dhcp_server=("127.0.0.1", self.port), relay_address="127.0.0.2")
        self.addCleanup(self.network.close)
        self.phone = Phone()
        self.network.attach(self.phone)
        self.server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(self.server.close)
        self.server.bind(("127.0.0.1", 0))

    def send_replies(self, count: int) -> None:
        for xid in range(count):
            offer = dhcp.DhcpMessage(op=dhcp.BOOTREPLY, xid=xid, chaddr=MAC, options={53: bytes([dhcp.OFFER])})
            self.server.sendto(dhcp.encode(offer), ("127.0.0.2", self.port))

    def test_a_read_stops_at_its_time_budget_and_the_next_one_goes_on(self):
        self.send_replies(10)
        # The deadline is read once, then once after each reply: 0.4 ms a reading, 1 ms budget.
        self.assertFalse(read_datagrams(self.network.relay_port, 0.001, SteppingClock(0.0004), 1))
        self.assertEqual(self.phone.xids, [0, 1, 2])
        self.assertFalse(read_datagrams(self.network.relay_port, 0.001, SteppingClock(0.0004), 1))
        self.assertEqual(len(self.phone.xids), 6)
        self.assertTrue(read_datagrams(self.network.relay_port, 1.0, SteppingClock(0.0), 1))  # the rest
        self.assertEqual(self.phone.xids, list(range(10)))
        self.assertTrue(read_datagrams(self.network.relay_port, 1.0, SteppingClock(0.0), 1))  # nothing left

    def test_the_clock_is_read_every_few_replies(self):
        self.send_replies(10)
        self.assertFalse(read_datagrams(self.network.relay_port, 0.0, SteppingClock(1.0), 4))
        self.assertEqual(self.phone.xids, [0, 1, 2, 3])

    def test_a_spent_budget_still_reads_one_reply(self):
        self.send_replies(2)
        self.assertFalse(read_datagrams(self.network.relay_port, 0.0, SteppingClock(1.0), 1))
        self.assertEqual(self.phone.xids, [0])

    def test_the_budget_doubles_while_replies_keep_waiting_and_resets_once_they_are_read(self):
        tick = 2.0 ** -10  # each clock reading a tick later: a read of budget n ticks reads n replies
        reads = BoundedReads(self.network.relay_port, tick, 4 * tick, SteppingClock(tick), every=1)
        self.send_replies(12)
        read, budgets = [], []
        while len(self.phone.xids) < 12:
            budgets.append(reads.budget_s / tick)
            before = len(self.phone.xids)
            reads()
            read.append(len(self.phone.xids) - before)
        self.assertEqual(read, [1, 2, 4, 4, 1])
        self.assertEqual(budgets, [1, 2, 4, 4, 4])  # doubled while cut short, up to the most
        self.assertEqual(reads.budget_s, tick)  # the last read emptied the socket

    @defer.inlineCallbacks
    def test_the_reactor_reads_what_a_bounded_read_left_in_later_turns(self):
        """One reply a readiness event: the socket stays readable and the port registered
        (a doRead returning anything but None would make the reactor drop the port)."""
        self.network.relay_port.doRead.max_s = 0.0  # one reply a readiness event
        self.network.relay_port.doRead.budget_s = 0.0
        self.network.relay_port.doRead.first = 0.0
        turns = []
        self.send_replies(30)
        for _ in range(200):
            if len(self.phone.xids) == 30:
                break
            turns.append(len(self.phone.xids))
            yield deferLater(reactor, 0, lambda: None)
        self.assertEqual(self.phone.xids, list(range(30)))
        self.assertGreater(len(turns), 5)  # spread over turns, not read at once
        self.assertIsNone(self.network.relay_port.doRead())

    def test_a_dhcp_timer_reads_everything_waiting_whatever_the_budget(self):
        self.network.relay_port.doRead.budget_s = 0.0
        self.send_replies(25)
        self.network.read_waiting()
        self.assertEqual(self.phone.xids, list(range(25)))

"""A phone's timer that fires late, with the reply it waits for already arrived but not
yet read (a busy reactor runs timers before it reads sockets), must not be taken for
silence: the driver has the network read what waits first."""

import random

from twisted.internet.task import Clock

from labsim.phones import yealink
from labsim.phones.phone import Phone
from labsim.services.dhcp import DhcpServer, DhcpServerConfig
from labsim.transport.driver import PhoneDriver
from labsim.wire import dhcp


class SocketLikeNetwork:
    """DHCP replies wait in a queue, as in a socket, until ``read_waiting`` reads them."""

    pnp_reachable = False

    def __init__(self, server: DhcpServer, clock):
        self.server, self.clock = server, clock
        self.waiting, self.sent = [], []
        self.driver = None

    def attach(self, driver):
        self.driver = driver

    def send_dhcp(self, driver, message):
        self.sent.append(message.message_type)
        relayed = dhcp.decode(dhcp.encode(message))
        for reply in self.server.handle(relayed, self.clock.seconds()):
            self.waiting.append(reply.message)

    def read_waiting(self):
        while self.waiting:
            self.driver.dhcp_received(self.waiting.pop(0))


def booted(network_class=SocketLikeNetwork):
    clock = Clock()
    server = DhcpServer(DhcpServerConfig(server_id="127.0.0.1", options={}))
    network = network_class(server, clock)
    phone = Phone("00:15:65:13:ae:0b", "T46S", yealink, rng=random.Random(1), boot_time_s=0, until="dhcp")
    PhoneDriver(phone, clock, network).power_on()
    return clock, network, phone


def test_a_waiting_offer_and_ack_are_read_before_the_retransmission_timer_counts():
    clock, network, phone = booted()
    clock.advance(0)  # booted: DISCOVER sent; the OFFER waits unread
    assert network.sent == [dhcp.DISCOVER] and network.waiting
    clock.advance(30)  # every timer fires late, the reactor never read the socket itself
    assert phone.state == "ready"
    assert network.sent == [dhcp.DISCOVER, dhcp.REQUEST]  # no retransmission of either
    assert phone.dhcp.stats["retransmit"] == 0


def test_without_anything_waiting_the_timer_still_retransmits():
    class Silent(SocketLikeNetwork):
        def send_dhcp(self, driver, message):
            self.sent.append(message.message_type)

    clock, network, phone = booted(Silent)
    clock.advance(0)
    clock.advance(10)
    assert network.sent.count(dhcp.DISCOVER) >= 2 and phone.state == "dhcp"


def test_only_the_dhcp_clients_timers_read_first():
    """A boot timer cannot be made stale by a reply, so it reads nothing: a storm's boot
    timers, one per phone, would each drain the relay's socket and undo its per-read bound."""

    class CountingReads(SocketLikeNetwork):
        reads = 0

        def read_waiting(self):
            self.reads += 1
            super().read_waiting()

    clock, network, phone = booted(CountingReads)
    clock.advance(0)  # the boot timer fires: DISCOVER sent, nothing read for it
    assert network.sent == [dhcp.DISCOVER] and network.reads == 0
    clock.advance(10)  # the DHCP retransmission timer fires: the waiting OFFER is read first
    assert network.reads >= 1 and phone.state == "ready" and phone.dhcp.stats["retransmit"] == 0

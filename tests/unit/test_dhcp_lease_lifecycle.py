"""A phone's DHCP lease over time (RFC 2131 4.4): renew at T1, rebind at T2, lose the
address at expiry, INIT-REBOOT after a reboot. On task.Clock with labsim's own I/O-free
DHCP server behind an in-memory relay."""

import random

import pytest
from twisted.internet.task import Clock

from labsim.phones import yealink
from labsim.phones.dhcp_client import LEASE_TIMER, DhcpClient, DhcpIdentity, lease_from_ack
from labsim.phones.events import CheckSync, FactoryReset, PowerCycle, SendDhcp, StartTimer
from labsim.phones.phone import Phone
from labsim.services.dhcp import DhcpServer, DhcpServerConfig
from labsim.transport.driver import PhoneDriver
from labsim.transport.memory import InMemoryNetwork
from labsim.wire import dhcp

MAC = "00:15:65:13:ae:0b"
COMMON = b"#!version:1.0.0.1\nstatic.network.lldp.enable = 1\n"
FILES = {"y000000000066.cfg": COMMON, "00156513ae0b.cfg": b"#!version:1.0.0.1\naccount.1.user_name = 1001\n"}


def server(lease_time_s=1000, options=None, subnet="10.1.0.0/16", pool=("10.1.0.10", "10.1.0.250")):
    return DhcpServer(DhcpServerConfig(server_id="127.0.0.1", lease_time_s=lease_time_s, subnet=subnet,
                                       pool_start=pool[0], pool_end=pool[1],
                                       options={66: b"http://127.0.0.1:8080/", **(options or {})}))


class Lab:
    def __init__(self, dhcp_server):
        self.clock = Clock()
        self.network = InMemoryNetwork(self.clock, dhcp_server=dhcp_server, files=dict(FILES))
        self.phone = Phone(MAC, "T46S", yealink, rng=random.Random(1), boot_time_s=1.0)
        self.driver = PhoneDriver(self.phone, self.clock, self.network)

    def until(self, t: float) -> None:
        """Let time pass up to ``t``, jumping from one scheduled call to the next."""
        while True:
            due = [call.getTime() for call in self.clock.getDelayedCalls() if call.getTime() <= t]
            if not due:
                self.clock.advance(t - self.clock.seconds())
                return
            self.clock.advance(max(0.0, min(due) - self.clock.seconds()))

    def sent(self, kind=None, since=0):
        return [m for m in self.network.dhcp_sent[since:] if kind is None or m.message_type == kind]

    def lease_upkeep(self) -> list[tuple]:
        """The renewals' and rebindings' timings: (stage, started, latency, status, server)."""
        return [(t.stage, round(t.started, 3), round(t.ended - t.started, 3), t.status, t.server)
                for t in self.phone.stages if t.stage in ("dhcp_renew", "dhcp_rebind")]

    def booted_and_ready(self) -> float:
        self.driver.power_on()
        self.until(60)
        assert self.phone.state == "ready" and self.phone.reboots == 1
        return self.phone.lease.acquired_at  # the second boot's lease


def test_renews_at_t1_by_unicast_request_with_ciaddr_through_the_relay():
    lab = Lab(server(lease_time_s=1000))
    acquired = lab.booted_and_ready()
    before = len(lab.network.dhcp_sent)
    lab.until(acquired + 499.9)
    assert len(lab.network.dhcp_sent) == before  # nothing before T1 = 0.5 x 1000
    lab.until(acquired + 500.1)
    (renewal,) = lab.sent(since=before)
    address = lab.phone.lease.address
    assert renewal.message_type == dhcp.REQUEST and renewal.ciaddr == address
    assert 50 not in renewal.options and 54 not in renewal.options  # RFC 2131 table 5: RENEWING
    assert renewal.giaddr == "127.0.0.2"  # carried by the fleet's relay
    assert lab.network.dhcp_server.stats["ack"] >= 3
    # The ACK made a new lease: renewed from now, same address, the phone never left ready.
    assert lab.phone.lease.acquired_at == pytest.approx(acquired + 500, abs=0.01)
    assert lab.phone.lease.address == address and lab.phone.state == "ready"
    assert any("renewed" in detail for _, _, detail, kind in lab.phone.events if kind == "step")
    lab.until(acquired + 1000.2)  # and again at the new T1
    assert len(lab.sent(dhcp.REQUEST, since=before)) == 2
    # Each renewal is an exchange with the server, timed like the first lease's, so the
    # report's line for dhcp://127.0.0.1 counts it (a load test's renewals).
    upkeep = lab.lease_upkeep()
    assert [(stage, status, server) for stage, _, _, status, server in upkeep] == [
        ("dhcp_renew", "ok", "dhcp://127.0.0.1")] * 2
    assert upkeep[0][1] == pytest.approx(acquired + 500, abs=0.01) and 0 < upkeep[0][2] < 0.01


def test_the_renewal_goes_to_the_server_that_gave_the_lease_and_rebinding_broadcasts():
    client = DhcpClient(b"\x00\x15\x65\x00\x00\x01", DhcpIdentity(None, b"\x01\x03"), random.Random(2))
    client.start(0.0)
    ack = dhcp.DhcpMessage(dhcp.BOOTREPLY, client.xid, client.mac, {
        53: bytes([dhcp.ACK]), 54: bytes([198, 18, 0, 1]), 51: (1000).to_bytes(4, "big")}, yiaddr="198.18.5.5")
    client.state = "REQUESTING"
    (_, timer) = client.on_message(ack, 0.0)
    assert timer == StartTimer(LEASE_TIMER, 500.0)
    # Each REQUEST of the bound phases and when the next one is due: half the time left to
    # T2 (then to expiry), at least 60 s, never past T2 (expiry) itself.
    moments, sent, now = [], [], 500.0
    while client.state != "INIT":
        actions = client.on_timer(LEASE_TIMER, now)
        sends = [a for a in actions if isinstance(a, SendDhcp)]
        sent += [(now, client.state, s.to, s.message.ciaddr) for s in sends]
        timers = [a for a in actions if isinstance(a, StartTimer)]
        if not timers:
            break
        now += timers[0].delay_s
        moments.append(now)
    assert moments == pytest.approx([687.5, 781.25, 841.25, 875.0, 937.5, 997.5, 1000.0])
    assert [(t, state, to) for t, state, to, _ in sent] == [
        (500.0, "RENEWING", "198.18.0.1"), (687.5, "RENEWING", "198.18.0.1"), (781.25, "RENEWING", "198.18.0.1"),
        (841.25, "RENEWING", "198.18.0.1"),
        (875.0, "REBINDING", None), (937.5, "REBINDING", None), (997.5, "REBINDING", None)]
    assert {ciaddr for *_, ciaddr in sent} == {"198.18.5.5"}
    assert client.lease is None and client.remembered is None and "expired" in client.lost_reason


def test_t1_and_t2_from_options_58_and_59_else_half_and_seven_eighths():
    def ack(**options):
        codes = {"lease": 51, "t1": 58, "t2": 59}
        raw = {53: bytes([dhcp.ACK])} | {codes[k]: v.to_bytes(4, "big") for k, v in options.items()}
        return dhcp.DhcpMessage(dhcp.BOOTREPLY, 1, b"\0" * 6, raw, yiaddr="10.1.0.9")

    lease = lease_from_ack(ack(lease=3600), now=100.0)
    assert (lease.renew_s, lease.rebind_s) == (1800.0, 3150.0) and lease.times() == (1900.0, 3250.0, 3700.0)
    lease = lease_from_ack(ack(lease=3600, t1=600, t2=900), now=0.0)
    assert (lease.renew_s, lease.rebind_s) == (600.0, 900.0)
    lease = lease_from_ack(ack(lease=3600, t1=5000, t2=4000), now=0.0)  # nonsense kept in order
    assert (lease.renew_s, lease.rebind_s) == (3600.0, 3600.0)
    assert not lease_from_ack(ack(lease=0xFFFFFFFF), 0.0).expires and not lease_from_ack(ack(), 0.0).expires


def test_leases_with_the_same_options_share_them_read_only():
    """A server sends a class of phones the same options: a fleet keeps them once."""
    def ack(yiaddr: str, boot_file: bytes) -> dhcp.DhcpMessage:
        raw = {53: bytes([dhcp.ACK]), 54: bytes([198, 18, 0, 1]), 51: (3600).to_bytes(4, "big"), 67: boot_file}
        return dhcp.DhcpMessage(dhcp.BOOTREPLY, 1, b"\0" * 6, raw, yiaddr=yiaddr)

    first, second = lease_from_ack(ack("10.1.0.9", b"a.cfg"), 0.0), lease_from_ack(ack("10.1.0.10", b"a.cfg"), 1.0)
    other = lease_from_ack(ack("10.1.0.11", b"b.cfg"), 2.0)
    assert first.options is second.options and first.options[67] == b"a.cfg" and other.options[67] == b"b.cfg"
    assert (first.address, second.address, first.server_id) == ("10.1.0.9", "10.1.0.10", "198.18.0.1")
    with pytest.raises(TypeError):
        first.options[67] = b"changed"


def test_phones_of_one_model_share_one_dhcp_identity():
    phones = [Phone(f"00:15:65:00:00:0{n}", "T46S", yealink, rng=random.Random(n)) for n in range(3)]
    other = Phone("00:15:65:00:00:09", "T48S", yealink, rng=random.Random(9))
    assert phones[0].dhcp.identity is phones[1].dhcp.identity is phones[2].dhcp.identity
    assert other.dhcp.identity is not phones[0].dhcp.identity and other.dhcp.identity.hostname == b"SIP-T48S"


def test_renewal_at_the_servers_t1_option():
    lab = Lab(server(lease_time_s=1000, options={58: (100).to_bytes(4, "big"), 59: (200).to_bytes(4, "big")}))
    acquired = lab.booted_and_ready()
    before = len(lab.network.dhcp_sent)
    lab.until(acquired + 99.9)
    assert lab.sent(since=before) == []
    lab.until(acquired + 100.1)
    assert [m.ciaddr for m in lab.sent(dhcp.REQUEST, since=before)] == [lab.phone.lease.address]


def test_server_gone_rebinds_at_t2_and_loses_the_address_at_expiry_then_starts_over():
    lab = Lab(server(lease_time_s=1000))
    acquired = lab.booted_and_ready()
    address = lab.phone.lease.address
    dhcp_server, lab.network.dhcp_server = lab.network.dhcp_server, None  # nobody answers now
    lab.until(acquired + 874.9)
    assert lab.phone.dhcp.state == "RENEWING" and lab.phone.state == "ready"
    lab.until(acquired + 875.1)
    assert lab.phone.dhcp.state == "REBINDING"
    assert any("rebinding" in detail for _, _, detail, _ in lab.phone.events)
    lab.until(acquired + 999.9)
    assert lab.phone.state == "ready" and lab.phone.lease.address == address
    lab.until(acquired + 1000.1)
    # The address is gone: back to DHCP from INIT, a DISCOVER, no address held.
    assert lab.phone.state == "dhcp" and lab.phone.lease is None
    assert lab.network.dhcp_sent[-1].message_type == dhcp.DISCOVER
    assert "expired" in lab.phone.events[-1][2]
    lab.network.dhcp_server = dhcp_server  # back: the phone gets a lease and provisions again
    lab.until(acquired + 1200)
    assert lab.phone.state == "ready" and lab.phone.lease is not None and lab.phone.reboots == 1
    assert lab.phone.trigger == "new_lease"
    # The renewal went unanswered from T1 to T2, the rebinding from T2 to expiry: both
    # timed out at their deadline, against the server that gave the lease.
    start = round(acquired, 3)
    assert lab.lease_upkeep() == [
        ("dhcp_renew", pytest.approx(start + 500), pytest.approx(375), "timeout", "dhcp://127.0.0.1"),
        ("dhcp_rebind", pytest.approx(start + 875), pytest.approx(125), "timeout", "dhcp://127.0.0.1")]


def test_expiry_in_the_middle_of_a_download_fails_it_and_the_late_result_is_ignored():
    lab = Lab(server(lease_time_s=1000))
    acquired = lab.booted_and_ready()
    lab.network.dhcp_server = None
    lab.network.latency_s = 5.0  # each download takes 5 s now
    lab.until(acquired + 997.0)
    fetches, stages = len(lab.network.fetches), len(lab.phone.stages)
    lab.driver.deliver(CheckSync())  # a resync starts 3 s before the lease runs out
    lab.clock.advance(0)
    assert lab.phone.state == "provisioning" and len(lab.network.fetches) == fetches + 1
    lab.until(acquired + 1010.0)  # expiry at 1000; the download's answer at 1002
    assert lab.phone.state == "dhcp" and lab.phone._pending == {}
    late = list(lab.phone.stages)[stages:]  # the late answer was not taken; the rebinding timed out
    assert [(t.stage, t.status, round(t.ended - acquired, 3)) for t in late] == [("dhcp_rebind", "timeout", 1000.0)]
    assert len(lab.network.fetches) == fetches + 1  # and nothing else was asked without an address


def test_reboot_asks_for_the_same_address_with_init_reboot():
    lab = Lab(server(lease_time_s=1000))
    lab.driver.power_on()
    lab.until(60)
    # The first boot found the address by DISCOVER; after the reboot the phone asked for it back.
    kinds = [m.message_type for m in lab.network.dhcp_sent]
    assert kinds == [dhcp.DISCOVER, dhcp.REQUEST, dhcp.REQUEST]
    first_lease_request, init_reboot = lab.network.dhcp_sent[1:]
    assert 54 in first_lease_request.options and 54 not in init_reboot.options
    assert init_reboot.options[50] == first_lease_request.options[50] and init_reboot.ciaddr == "0.0.0.0"
    assert lab.phone.state == "ready" and lab.phone.dhcp.stats["init_reboot"] == 1


def test_nak_on_init_reboot_goes_back_to_init():
    lab = Lab(server(lease_time_s=1000))
    lab.booted_and_ready()
    old = lab.phone.lease.address
    # The network moved while the phone was off: the server NAKs the old address.
    lab.network.dhcp_server = server(subnet="10.9.0.0/16", pool=("10.9.0.10", "10.9.0.250"))
    sent = len(lab.network.dhcp_sent)
    lab.driver.deliver(PowerCycle())
    lab.until(lab.clock.seconds() + 60)
    kinds = [m.message_type for m in lab.sent(since=sent)]
    assert kinds[:2] == [dhcp.REQUEST, dhcp.DISCOVER]  # INIT-REBOOT, NAK, then INIT
    assert lab.network.dhcp_server.stats["nak"] == 1
    assert lab.phone.state == "ready" and lab.phone.lease.address.startswith("10.9.") and old.startswith("10.1.")


def test_nak_while_renewing_loses_the_address():
    lab = Lab(server(lease_time_s=1000))
    acquired = lab.booted_and_ready()
    lab.network.dhcp_server = server(subnet="10.9.0.0/16", pool=("10.9.0.10", "10.9.0.250"))
    lab.until(acquired + 500.1)
    assert any("NAK" in detail for _, state, detail, _ in lab.phone.events if state == "dhcp")
    lab.until(acquired + 600)
    assert lab.phone.state == "ready" and lab.phone.lease.address.startswith("10.9.")
    [(stage, started, _, status, asked)] = lab.lease_upkeep()  # the NAK: the server said no
    assert (stage, status, asked) == ("dhcp_renew", "denied", "dhcp://127.0.0.1")
    assert started == pytest.approx(acquired + 500, abs=0.01)


def test_a_renewal_unanswered_until_t2_then_rebound_is_a_timeout_then_an_answered_rebinding():
    lab = Lab(server(lease_time_s=1000))
    acquired = lab.booted_and_ready()
    dhcp_server, lab.network.dhcp_server = lab.network.dhcp_server, None
    lab.until(acquired + 900)  # rebinding since T2 (875)
    lab.network.dhcp_server = dhcp_server
    lab.until(acquired + 940)  # its next broadcast REQUEST, at 937.5, is answered
    assert lab.phone.dhcp.state == "BOUND" and lab.phone.state == "ready"
    start = round(acquired, 3)
    assert lab.lease_upkeep() == [
        ("dhcp_renew", pytest.approx(start + 500), pytest.approx(375), "timeout", "dhcp://127.0.0.1"),
        ("dhcp_rebind", pytest.approx(start + 875), pytest.approx(62.5, abs=0.01), "ok", "dhcp://127.0.0.1")]
    assert any("rebound" in detail for _, _, detail, _ in lab.phone.events)


def test_factory_reset_forgets_the_address():
    lab = Lab(server(lease_time_s=1000))
    lab.booted_and_ready()
    sent = len(lab.network.dhcp_sent)
    lab.driver.deliver(FactoryReset())
    lab.until(lab.clock.seconds() + 30)
    assert lab.sent(since=sent)[0].message_type == dhcp.DISCOVER


def test_a_day_without_a_server_keeps_discovering_every_64_s():
    client = DhcpClient(b"\x00\x15\x65\x00\x00\x02", DhcpIdentity(None, b"\x01"), random.Random(3))
    actions = client.start(0.0)
    for _ in range(2000):  # ~36 h of retransmissions: the back-off stays capped, never overflows
        timer = next(a for a in actions if isinstance(a, StartTimer))
        actions = client.on_timer("dhcp", 0.0)
    assert 63.0 <= timer.delay_s <= 65.0 and client.stats["discover"] == 2001

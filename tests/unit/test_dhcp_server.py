"""The I/O-free DHCP server's state machine (RFC 2131), driven with a made-up clock; then
its Twisted edge, with a recording transport and over real loopback UDP."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.trial import unittest as trial

from labsim.services.dhcp import BOUND, DECLINED, OFFERED, DhcpServer, DhcpServerConfig, Reply
from labsim.services.dhcp_udp import DhcpServerProtocol, start_dhcp_server
from labsim.net.udp import bind_udp
from labsim.wire import dhcp
from labsim.wire.dhcp import ACK, DECLINE, DISCOVER, INFORM, NAK, OFFER, RELEASE, REQUEST, DhcpMessage
from tests.peers import free_udp_port

SERVER_ID = "127.0.0.1"
OTHER_SERVER = "127.0.0.9"
MAC_A = bytes.fromhex("001565000001")
MAC_B = bytes.fromhex("001565000002")
MAC_C = bytes.fromhex("001565000003")


def ip(text: str) -> bytes:
    return dhcp.encode_ip_list([text])


def make_server(**overrides) -> DhcpServer:
    settings_ = dict(server_id=SERVER_ID, subnet="10.1.0.0/24", pool_start="10.1.0.10", pool_end="10.1.0.20")
    settings_.update(overrides)
    return DhcpServer(DhcpServerConfig(**settings_))


def client(
    mtype: int,
    mac: bytes = MAC_A,
    *,
    xid: int = 0x1000,
    ciaddr: str = "0.0.0.0",
    giaddr: str = "0.0.0.0",
    hops: int = 0,
    flags: int = 0,
    requested: str | None = None,
    server_id: str | None = None,
    prl: list[int] | None = None,
    extra: dict[int, bytes] | None = None,
) -> DhcpMessage:
    options = {53: bytes([mtype])}
    if requested:
        options[50] = ip(requested)
    if server_id:
        options[54] = ip(server_id)
    if prl is not None:
        options[55] = bytes(prl)
    options.update(extra or {})
    return DhcpMessage(dhcp.BOOTREQUEST, xid, mac, options, ciaddr=ciaddr, giaddr=giaddr, hops=hops, flags=flags)


def one(replies: list[Reply]) -> Reply:
    assert len(replies) == 1, replies
    # every reply must survive the wire
    assert dhcp.decode(dhcp.encode(replies[0].message)) == replies[0].message
    return replies[0]


def dora(server: DhcpServer, mac: bytes, now: float = 0.0, **kw) -> str:
    offer = one(server.handle(client(DISCOVER, mac, **kw), now)).message
    assert offer.message_type == OFFER
    ack = one(server.handle(client(REQUEST, mac, requested=offer.yiaddr, server_id=server.server_id, **kw), now)).message
    assert ack.message_type == ACK and ack.yiaddr == offer.yiaddr
    return ack.yiaddr


# -- the normal exchange ---------------------------------------------------------------


def test_dora_direct():
    server = make_server(lease_time_s=1000)
    reply = one(server.handle(client(DISCOVER, xid=77, flags=0x8000), 5.0))
    offer = reply.message
    assert (reply.to_addr, reply.to_port) == ("255.255.255.255", 68)
    assert offer.op == dhcp.BOOTREPLY and offer.xid == 77 and offer.chaddr == MAC_A and offer.flags == 0x8000
    assert offer.message_type == OFFER and offer.yiaddr == "10.1.0.10"
    assert offer.option_ip(54) == SERVER_ID
    assert offer.option_u32(51) == 1000 and offer.option_u32(58) == 500 and offer.option_u32(59) == 875
    assert offer.option_ip(1) == "255.255.255.0"  # from the subnet when not configured
    assert server.leases.by_mac(MAC_A).state == OFFERED

    reply = one(server.handle(client(REQUEST, xid=78, requested="10.1.0.10", server_id=SERVER_ID), 6.0))
    ack = reply.message
    assert ack.message_type == ACK and ack.yiaddr == "10.1.0.10" and ack.xid == 78
    lease = server.leases.by_ip("10.1.0.10")
    assert lease is server.leases.by_mac(MAC_A)
    assert lease.state == BOUND and lease.expires == 1006.0
    assert [lease.ip for lease in server.leases.bound()] == ["10.1.0.10"]
    assert {k: server.stats[k] for k in ("discover", "offer", "request", "ack", "nak")} == {
        "discover": 1, "offer": 1, "request": 1, "ack": 1, "nak": 0,
    }  # fmt: skip


def test_every_configured_option_is_sent_parameter_list_order_first():
    options = {
        3: ip("10.1.0.1"),
        6: ip("10.1.0.1") + ip("10.1.0.2"),
        66: b"http://10.1.0.5/",
        43: b"\x01\x03abc",
        160: b"http://p/",
    }
    server = make_server(options=options)
    offer = one(server.handle(client(DISCOVER, prl=[6, 66, 1, 121, 3]), 0)).message
    # 53, 54, lease times, then the client's order (121 is not configured), then the rest
    assert list(offer.options) == [53, 54, 51, 58, 59, 6, 66, 1, 3, 43, 160]
    assert all(offer.options[code] == payload for code, payload in options.items())
    # without option 55, everything configured in config order
    offer = one(server.handle(client(DISCOVER, MAC_B), 0)).message
    assert list(offer.options) == [53, 54, 51, 58, 59, 3, 6, 66, 43, 160, 1]


def test_configured_t1_t2_override_and_subnet_mask_may_be_configured():
    server = make_server(options={58: (100).to_bytes(4, "big"), 1: ip("255.255.0.0")})
    offer = one(server.handle(client(DISCOVER), 0)).message
    assert offer.option_u32(58) == 100 and offer.option_u32(59) == 3150
    assert offer.option_ip(1) == "255.255.0.0"


def test_next_server_is_siaddr():
    server = make_server(next_server="10.1.0.5")
    assert one(server.handle(client(DISCOVER), 0)).message.siaddr == "10.1.0.5"


# -- address choice ----------------------------------------------------------------------


def test_returning_client_gets_the_same_address_others_get_new_ones():
    server = make_server()
    first = one(server.handle(client(DISCOVER, MAC_A), 0)).message.yiaddr
    assert one(server.handle(client(DISCOVER, MAC_A), 1)).message.yiaddr == first
    other = one(server.handle(client(DISCOVER, MAC_B), 1)).message.yiaddr
    assert other != first
    # after a release, the client is still given its old address while it is free
    a_ip = dora(server, MAC_A, 2)
    assert a_ip == first
    server.handle(client(RELEASE, MAC_A, ciaddr=a_ip), 3)
    assert server.leases.by_ip(a_ip) is None
    assert one(server.handle(client(DISCOVER, MAC_A), 4)).message.yiaddr == a_ip


def test_a_previous_address_taken_by_someone_else_is_not_offered_again():
    server = make_server()
    addr = dora(server, MAC_A, 0)
    server.handle(client(RELEASE, MAC_A, ciaddr=addr), 1)
    assert one(server.handle(client(DISCOVER, MAC_B, requested=addr), 2)).message.yiaddr == addr
    assert one(server.handle(client(REQUEST, MAC_B, requested=addr, server_id=SERVER_ID), 2)).message.yiaddr == addr
    offer = one(server.handle(client(DISCOVER, MAC_A), 3)).message
    assert offer.yiaddr != addr
    assert server.leases.by_ip(addr).mac == MAC_B


def test_requested_address_in_discover_is_honoured_when_free():
    server = make_server()
    assert one(server.handle(client(DISCOVER, MAC_A, requested="10.1.0.15"), 0)).message.yiaddr == "10.1.0.15"
    # taken by A now, so B gets a pool address instead; outside the pool is never given
    assert one(server.handle(client(DISCOVER, MAC_B, requested="10.1.0.15"), 0)).message.yiaddr == "10.1.0.10"
    assert one(server.handle(client(DISCOVER, MAC_C, requested="10.1.0.99"), 0)).message.yiaddr == "10.1.0.11"


def test_reservations():
    server = make_server(
        pool_start="10.1.0.10",
        pool_end="10.1.0.12",
        reservations={MAC_A: "10.1.0.11", "00:15:65:00:00:02": "10.1.0.200"},  # inside and outside the pool
    )
    assert dora(server, MAC_A) == "10.1.0.11"
    assert dora(server, MAC_B) == "10.1.0.200"
    # the rest of the pool goes to others, never a reserved address
    got = {dora(server, bytes([2, 0, 0, 0, 0, n])) for n in range(2)}
    assert got == {"10.1.0.10", "10.1.0.12"}
    assert server.handle(client(DISCOVER, bytes([2, 0, 0, 0, 0, 9])), 0) == []
    # a reserved client asking for another address is refused
    nak = one(server.handle(client(REQUEST, MAC_A, requested="10.1.0.10"), 1)).message
    assert nak.message_type == NAK


def test_server_address_is_never_handed_out():
    server = make_server(server_id="10.1.0.10", pool_start="10.1.0.10", pool_end="10.1.0.11")
    assert dora(server, MAC_A) == "10.1.0.11"
    assert server.handle(client(DISCOVER, MAC_B), 0) == []


def test_pool_exhaustion_then_offer_hold_expiry():
    server = make_server(pool_start="10.1.0.10", pool_end="10.1.0.11", offer_hold_s=60)
    one(server.handle(client(DISCOVER, MAC_A), 0))
    one(server.handle(client(DISCOVER, MAC_B), 0))
    assert server.handle(client(DISCOVER, MAC_C), 1) == []
    assert server.stats["pool_exhausted"] == 1
    # A's offer runs out (B's too), so C is served
    assert one(server.handle(client(DISCOVER, MAC_C), 61)).message.yiaddr in {"10.1.0.10", "10.1.0.11"}
    assert server.stats["expired"] == 2


def test_lease_expiry_frees_the_address():
    server = make_server(pool_start="10.1.0.10", pool_end="10.1.0.10", lease_time_s=100)
    assert dora(server, MAC_A, 0) == "10.1.0.10"
    assert server.handle(client(DISCOVER, MAC_B), 99) == []
    assert server.expire(100) == 1
    assert server.leases.by_mac(MAC_A) is None and len(server.leases) == 0
    assert dora(server, MAC_B, 101) == "10.1.0.10"


def test_renewal_postpones_expiry():
    server = make_server(lease_time_s=100)
    addr = dora(server, MAC_A, 0)
    for now in (50, 120, 190):
        reply = one(server.handle(client(REQUEST, MAC_A, ciaddr=addr), now))
        assert reply.message.message_type == ACK
    assert server.expire(289) == 0
    assert server.leases.by_mac(MAC_A).expires == 290
    assert server.expire(290) == 1


def test_big_pool_is_not_walked_per_request():
    started = time.perf_counter()
    server = make_server(subnet="10.0.0.0/8", pool_start="10.0.0.10", pool_end="10.255.255.250")
    for n in range(2000):
        dora(server, n.to_bytes(6, "big"), n * 0.001)
    assert time.perf_counter() - started < 2.0  # 16 M addresses; O(pool) work would take minutes
    assert len({lease.ip for lease in server.leases.bound()}) == 2000


# -- REQUEST in each client state ---------------------------------------------------------


def test_selecting_another_server_releases_our_offer():
    server = make_server(pool_start="10.1.0.10", pool_end="10.1.0.10")
    one(server.handle(client(DISCOVER, MAC_A), 0))
    assert server.handle(client(REQUEST, MAC_A, requested="10.1.0.77", server_id=OTHER_SERVER), 0) == []
    assert server.stats["request_other_server"] == 1
    assert server.leases.by_mac(MAC_A) is None
    assert one(server.handle(client(DISCOVER, MAC_B), 0)).message.yiaddr == "10.1.0.10"


def test_selecting_wrong_address_or_stale_offer_is_naked():
    server = make_server(offer_hold_s=10)
    offered = one(server.handle(client(DISCOVER, MAC_A), 0)).message.yiaddr
    nak = one(server.handle(client(REQUEST, MAC_A, requested="10.1.0.19", server_id=SERVER_ID), 1))
    assert nak.message.message_type == NAK and (nak.to_addr, nak.to_port) == ("255.255.255.255", 68)
    assert nak.message.yiaddr == "0.0.0.0" and 51 not in nak.message.options and 56 in nak.message.options
    # the offer expires; requesting it afterwards is refused
    nak = one(server.handle(client(REQUEST, MAC_A, requested=offered, server_id=SERVER_ID), 11)).message
    assert nak.message_type == NAK
    assert server.stats["nak"] == 2


def test_init_reboot():
    server = make_server()
    # unknown client: RFC 2131 says remain silent
    assert server.handle(client(REQUEST, MAC_A, requested="10.1.0.12"), 0) == []
    assert server.stats["request_unknown_client"] == 1
    addr = dora(server, MAC_A, 0)
    # wrong network -> NAK
    assert one(server.handle(client(REQUEST, MAC_A, requested="192.168.1.5"), 1)).message.message_type == NAK
    # wrong address for this client -> NAK
    assert one(server.handle(client(REQUEST, MAC_A, requested="10.1.0.19"), 1)).message.message_type == NAK
    # its own address -> ACK
    ack = one(server.handle(client(REQUEST, MAC_A, requested=addr), 2)).message
    assert ack.message_type == ACK and ack.yiaddr == addr
    # the lease ran out here but nobody took the address: the client may keep it
    server.expire(10_000)
    assert server.leases.by_mac(MAC_A) is None
    assert one(server.handle(client(REQUEST, MAC_A, requested=addr), 10_001)).message.message_type == ACK
    # an address another client holds -> NAK
    b_addr = dora(server, MAC_B, 10_002)
    server.handle(client(RELEASE, MAC_A, ciaddr=addr), 10_003)
    assert one(server.handle(client(REQUEST, MAC_A, requested=b_addr), 10_004)).message.message_type == NAK


def test_renewing_and_rebinding():
    server = make_server()
    addr = dora(server, MAC_A, 0)
    reply = one(server.handle(client(REQUEST, MAC_A, ciaddr=addr), 1800))
    assert (reply.to_addr, reply.to_port) == (addr, 68)  # unicast to the client
    assert reply.message.message_type == ACK and reply.message.ciaddr == addr and reply.message.yiaddr == addr
    # another client's address -> NAK, broadcast (the client may not hear unicast)
    b_addr = dora(server, MAC_B, 1800)
    nak = one(server.handle(client(REQUEST, MAC_A, ciaddr=b_addr), 1801))
    assert nak.message.message_type == NAK and nak.to_addr == "255.255.255.255"
    # other network -> NAK
    assert one(server.handle(client(REQUEST, MAC_A, ciaddr="192.168.0.7"), 1802)).message.message_type == NAK
    # a client this server has no record of, renewing a free pool address: binding recreated
    ack = one(server.handle(client(REQUEST, MAC_C, ciaddr="10.1.0.18"), 1803)).message
    assert ack.message_type == ACK and server.leases.by_ip("10.1.0.18").mac == MAC_C
    # ...but not an address outside the pool
    assert one(server.handle(client(REQUEST, MAC_C, ciaddr="10.1.0.99"), 1804)).message.message_type == NAK


def test_request_without_any_address_is_ignored():
    server = make_server()
    assert server.handle(client(REQUEST), 0) == []
    assert server.stats["ignored"] == 1


# -- DECLINE, RELEASE, INFORM --------------------------------------------------------------


def test_decline_sets_the_address_aside():
    server = make_server(pool_start="10.1.0.10", pool_end="10.1.0.11", decline_hold_s=500)
    addr = dora(server, MAC_A, 0)
    assert server.handle(client(DECLINE, MAC_A, requested=addr, server_id=SERVER_ID), 1) == []
    assert server.stats["declined"] == 1
    assert server.leases.by_ip(addr).state == DECLINED and server.leases.by_mac(MAC_A) is None
    # the client starts over and gets the other address; nobody gets the declined one
    other = dora(server, MAC_A, 2)
    assert other != addr
    assert server.handle(client(DISCOVER, MAC_B), 3) == []
    # until the hold ends
    assert dora(server, MAC_B, 501) == addr


def test_decline_or_release_of_something_not_held_is_ignored():
    server = make_server()
    addr = dora(server, MAC_A, 0)
    server.handle(client(DECLINE, MAC_A, requested="10.1.0.19", server_id=SERVER_ID), 1)
    server.handle(client(RELEASE, MAC_A, ciaddr="10.1.0.19", server_id=SERVER_ID), 1)
    server.handle(client(RELEASE, MAC_B, ciaddr=addr, server_id=SERVER_ID), 1)
    server.handle(client(RELEASE, MAC_A, ciaddr=addr, server_id=OTHER_SERVER), 1)
    assert server.leases.by_mac(MAC_A).state == BOUND
    assert server.stats["ignored"] == 4
    server.handle(client(RELEASE, MAC_A, ciaddr=addr, server_id=SERVER_ID), 2)
    assert server.leases.by_mac(MAC_A) is None and server.leases.by_ip(addr) is None


def test_inform_acks_options_without_a_lease():
    server = make_server(options={66: b"tftp.example"})
    reply = one(server.handle(client(INFORM, ciaddr="10.1.0.50", prl=[66]), 0))
    ack = reply.message
    assert (reply.to_addr, reply.to_port) == ("10.1.0.50", 68)
    assert ack.message_type == ACK and ack.yiaddr == "0.0.0.0" and ack.ciaddr == "10.1.0.50"
    assert not {51, 58, 59} & set(ack.options) and ack.options[66] == b"tftp.example"
    assert len(server.leases) == 0 and server.stats["inform"] == 1


# -- relays ------------------------------------------------------------------------------------


def test_relayed_exchange_goes_back_to_the_relay_with_option_82_echoed():
    server = make_server()
    agent_info = b"\x01\x04port\x05\x04" + ip("10.1.0.0")
    relayed = dict(giaddr="127.0.0.2", hops=1, extra={82: agent_info})
    reply = one(server.handle(client(DISCOVER, prl=[3, 1], **relayed), 0))
    assert (reply.to_addr, reply.to_port) == ("127.0.0.2", None)  # None: the server's own port
    offer = reply.message
    assert offer.giaddr == "127.0.0.2" and offer.hops == 1
    assert list(offer.options)[-1] == 82 and offer.options[82] == agent_info
    reply = one(server.handle(client(REQUEST, requested=offer.yiaddr, server_id=SERVER_ID, **relayed), 0))
    assert reply.message.message_type == ACK and reply.to_addr == "127.0.0.2" and reply.to_port is None
    assert reply.message.options[82] == agent_info
    # a NAK through a relay: the broadcast bit set, 82 still echoed
    reply = one(server.handle(client(REQUEST, requested="10.9.9.9", **relayed), 1))
    assert reply.message.message_type == NAK and reply.message.flags & 0x8000
    assert reply.to_addr == "127.0.0.2" and reply.message.options[82] == agent_info


def test_relayed_inform_goes_to_the_relay():
    reply = one(make_server().handle(client(INFORM, ciaddr="10.1.0.50", giaddr="127.0.0.2", hops=2), 0))
    assert (reply.to_addr, reply.to_port) == ("127.0.0.2", None) and reply.message.hops == 2


# -- ignored input and configuration errors --------------------------------------------------


def test_things_a_server_ignores():
    server = make_server()
    bootreply = client(DISCOVER)
    bootreply.op = dhcp.BOOTREPLY
    bootp = DhcpMessage(dhcp.BOOTREQUEST, 1, MAC_A, {})
    assert server.handle(bootreply, 0) == []
    assert server.handle(bootp, 0) == []
    assert server.handle(client(OFFER), 0) == []
    assert server.handle(client(dhcp.NAK), 0) == []
    assert server.stats["ignored"] == 4 and len(server.leases) == 0


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(subnet="10.1.0.1/24"), "subnet"),
        (dict(pool_start="10.2.0.1"), "outside the subnet"),
        (dict(pool_start="10.1.0.30"), "after pool_end"),
        (dict(pool_start="10.1.0.0"), "network or broadcast"),
        (dict(server_id="nope"), "server_id"),
        (dict(options={54: ip("1.2.3.4")}), "set by the server"),
        (dict(options={66: "text"}), "bytes"),
        (dict(reservations={MAC_A: "10.2.0.1"}), "outside the subnet"),
        (dict(reservations={MAC_A: "10.1.0.5", MAC_B: "10.1.0.5"}), "reserved for both"),
        (dict(reservations={b"\x01": "10.1.0.5"}), "6 bytes"),
        (dict(lease_time_s=0), "lease_time_s"),
    ],
)
def test_config_errors_are_explained(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_server(**overrides)


# -- invariants under arbitrary client behaviour ------------------------------------------------

MACS = [bytes([0, 0x15, 0x65, 0, 0, n]) for n in range(6)]
POOL = {f"10.1.0.{n}" for n in range(10, 13)}
ADDRS = sorted(POOL) + ["10.1.0.99", "192.168.0.1"]

actions = st.tuples(
    st.sampled_from(["discover", "discover_asking", "select", "select_other", "init_reboot", "renew", "decline", "release", "inform"]),
    st.integers(0, len(MACS) - 1),
    st.sampled_from(ADDRS),
    st.floats(0, 400),  # time step
)


@settings(max_examples=300, deadline=None)
@given(st.lists(actions, max_size=60))
def test_no_address_is_ever_given_to_two_clients(steps):
    server = make_server(pool_start="10.1.0.10", pool_end="10.1.0.12", lease_time_s=300, offer_hold_s=30)
    now = 0.0
    last_offer: dict[bytes, str] = {}
    for kind, mac_index, addr, step in steps:
        now += step
        mac = MACS[mac_index]
        if kind == "discover":
            msg = client(DISCOVER, mac)
        elif kind == "discover_asking":
            msg = client(DISCOVER, mac, requested=addr)
        elif kind == "select":
            msg = client(REQUEST, mac, requested=last_offer.get(mac, addr), server_id=SERVER_ID)
        elif kind == "select_other":
            msg = client(REQUEST, mac, requested=addr, server_id=OTHER_SERVER)
        elif kind == "init_reboot":
            msg = client(REQUEST, mac, requested=addr)
        elif kind == "renew":
            msg = client(REQUEST, mac, ciaddr=addr)
        elif kind == "decline":
            msg = client(DECLINE, mac, requested=addr, server_id=SERVER_ID)
        elif kind == "release":
            msg = client(RELEASE, mac, ciaddr=addr, server_id=SERVER_ID)
        else:
            msg = client(INFORM, mac, ciaddr=addr)
        for reply in server.handle(msg, now):
            out = reply.message
            assert out.xid == msg.xid and out.chaddr == mac
            if out.message_type == OFFER:
                last_offer[mac] = out.yiaddr
            if out.message_type in (OFFER, ACK) and kind != "inform":
                assert out.yiaddr in POOL
                holder = server.leases.by_ip(out.yiaddr)
                assert holder is not None and holder.mac == mac
        # the two indexes agree, and each held address has one holder
        server.expire(now)
        held = [lease for lease in (server.leases.by_mac(m) for m in MACS) if lease is not None]
        assert len({lease.ip for lease in held}) == len(held)
        for lease in held:
            assert server.leases.by_ip(lease.ip) is lease and lease.ip in POOL
            assert lease.expires > now


# -- the Twisted edge: DhcpServerProtocol ---------------------------------------------------



class RecordingTransport:
    """Stands in for a UDP port: records what would be sent."""

    def __init__(self, port: int = 6767):
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self._port = port

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def getHost(self):
        return IPv4Address("UDP", "127.0.0.1", self._port)


def edge(clock: Clock | None = None, port: int = 6767, **config) -> tuple[DhcpServerProtocol, RecordingTransport]:
    protocol = DhcpServerProtocol(make_server(**config), clock or Clock())
    transport = RecordingTransport(port)
    protocol.makeConnection(transport)
    return protocol, transport


def test_edge_answers_relays_on_its_own_port_with_the_clocks_time():
    clock = Clock()
    clock.advance(1000)
    protocol, transport = edge(clock, port=6767)
    protocol.datagramReceived(dhcp.encode(client(DISCOVER, giaddr="127.0.0.2", hops=1)), ("127.0.0.2", 6767))
    [(data, addr)] = transport.sent
    assert addr == ("127.0.0.2", 6767)
    offer = dhcp.decode(data)
    assert offer.message_type == OFFER
    assert protocol.server.leases.by_ip(offer.yiaddr).expires == 1000 + 60  # the clock's now + offer hold
    assert protocol.stats["sent"] == 1 and protocol.stats["received"] == 1


def test_edge_counts_and_drops_malformed_datagrams():
    protocol, transport = edge()
    for junk in (b"", b"\x01" * 10, b"\x01" * 300, dhcp.encode(client(DISCOVER))[:243] + b"\x35\x09"):
        protocol.datagramReceived(junk, ("127.0.0.2", 6767))
    assert protocol.stats["malformed"] == 4 and transport.sent == []


def test_edge_sends_nothing_off_loopback():
    protocol, transport = edge()
    protocol.datagramReceived(dhcp.encode(client(DISCOVER, giaddr="10.0.0.1")), ("127.0.0.2", 6767))
    protocol.datagramReceived(dhcp.encode(client(DISCOVER, MAC_B)), ("127.0.0.2", 6767))  # -> broadcast
    assert transport.sent == [] and protocol.stats["unroutable"] == 2
    assert protocol.server.stats["offer"] == 2


def test_edge_survives_a_failing_server(monkeypatch):
    protocol, transport = edge()

    def broken(msg, now):
        raise RuntimeError("bug")

    monkeypatch.setattr(protocol.server, "handle", broken)
    monkeypatch.setattr("labsim.services.dhcp_udp.log.err", lambda *a, **k: None)
    protocol.datagramReceived(dhcp.encode(client(DISCOVER, giaddr="127.0.0.2")), ("127.0.0.2", 6767))
    assert protocol.stats["internal_errors"] == 1 and transport.sent == []


class _Relay(DatagramProtocol):
    def __init__(self):
        self.received: defer.DeferredQueue = defer.DeferredQueue()

    def datagramReceived(self, data, addr):
        self.received.put((data, addr))


class DhcpOverLoopbackTest(trial.TestCase):
    """The server on 127.0.0.1:P, a relay agent on 127.0.0.2:P, real UDP in between."""

    timeout = 10

    @defer.inlineCallbacks
    def test_dora_through_a_relay_after_junk(self):
        port = free_udp_port()
        config = DhcpServerConfig(
            server_id="127.0.0.1", subnet="10.1.0.0/24", pool_start="10.1.0.10", pool_end="10.1.0.20",
            options={66: b"http://10.1.0.5/"},
        )  # fmt: skip
        protocol, listening = start_dhcp_server(reactor, config, "127.0.0.1", port)
        self.addCleanup(listening.stopListening)
        relay = _Relay()
        relay_port = bind_udp(reactor, relay, "127.0.0.2", port)
        self.addCleanup(relay_port.stopListening)
        server_addr = ("127.0.0.1", port)

        relay_port.write(b"\x01\x01\x06junk" * 20, server_addr)
        relay_port.write(dhcp.encode(client(DISCOVER, xid=1, giaddr="127.0.0.2", hops=1)), server_addr)
        data, source = yield relay.received.get()
        offer = dhcp.decode(data)
        self.assertEqual(source, server_addr)
        self.assertEqual((offer.message_type, offer.xid, offer.hops), (OFFER, 1, 1))
        self.assertEqual(offer.options[66], b"http://10.1.0.5/")

        request = client(REQUEST, xid=2, giaddr="127.0.0.2", hops=1, requested=offer.yiaddr, server_id="127.0.0.1")
        relay_port.write(dhcp.encode(request), server_addr)
        data, _ = yield relay.received.get()
        ack = dhcp.decode(data)
        self.assertEqual((ack.message_type, ack.xid, ack.yiaddr), (ACK, 2, offer.yiaddr))
        self.assertEqual(protocol.server.leases.by_mac(MAC_A).state, BOUND)
        self.assertEqual(protocol.stats["malformed"], 1)
        self.assertEqual((protocol.stats["offer"], protocol.stats["ack"], protocol.stats["sent"]), (1, 1, 2))

    def test_bind_udp_raises_the_datagram_size_limit(self):
        port = bind_udp(reactor, DatagramProtocol(), "127.0.0.1", 0, max_packet=65535)
        self.addCleanup(port.stopListening)
        self.assertEqual(port.maxPacketSize, 65535)

"""The DHCP lease file: its format, corrupt files, restoring leases, batched writes, and a
real restart over loopback keeping a client's address."""

from __future__ import annotations

import os

import pytest
from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.trial import unittest as trial

from labsim.services.dhcp import BOUND, DECLINED, FREE, DhcpServer, DhcpServerConfig
from labsim.services.dhcp_udp import LeaseFileKeeper, start_dhcp_server
from labsim.services.lease_file import (
    HEADER,
    LeaseFileError,
    LeaseRecord,
    format_leases,
    parse_leases,
    read_lease_file,
    resolve_lease_path,
    write_lease_file,
)
from labsim.net.udp import bind_udp
from labsim.wire import dhcp
from labsim.wire.dhcp import ACK, DECLINE, DISCOVER, OFFER, RELEASE, REQUEST, DhcpMessage
from tests.peers import free_udp_port

MAC_A, MAC_B, MAC_C = (bytes.fromhex(f"00156500000{n}") for n in (1, 2, 3))


def make_server(**overrides) -> DhcpServer:
    settings = dict(server_id="127.0.0.1", subnet="10.1.0.0/24", pool_start="10.1.0.10", pool_end="10.1.0.20",
                    lease_time_s=1000)
    settings.update(overrides)
    return DhcpServer(DhcpServerConfig(**settings))


def msg(mtype: int, mac: bytes, *, requested: str | None = None, ciaddr: str = "0.0.0.0") -> DhcpMessage:
    options = {53: bytes([mtype])}
    if requested:
        options[50] = dhcp.encode_ip_list([requested])
    if mtype in (REQUEST, DECLINE, RELEASE):
        options[54] = dhcp.encode_ip_list(["127.0.0.1"])
    return DhcpMessage(dhcp.BOOTREQUEST, 1, mac, options, ciaddr=ciaddr)


def dora(server: DhcpServer, mac: bytes, now: float) -> str:
    [offer] = server.handle(msg(DISCOVER, mac), now)
    [ack] = server.handle(msg(REQUEST, mac, requested=offer.message.yiaddr), now)
    assert ack.message.message_type == ACK
    return ack.message.yiaddr


# -- the format ---------------------------------------------------------------------------------


def test_format_and_parse_round_trip():
    records = [
        LeaseRecord("bound", MAC_A, "10.1.0.10", 1767225600.25),
        LeaseRecord("free", MAC_B, "10.1.0.11", 0.0),
        LeaseRecord("declined", None, "10.1.0.12", 1767312000.0),
    ]
    text = format_leases(records)
    assert text.startswith(HEADER + "\n")
    assert "bound 00:15:65:00:00:01 10.1.0.10 1767225600.25\n" in text
    assert parse_leases(text) == records


@pytest.mark.parametrize(
    "line, message",
    [
        ("bound 00:15:65:00:00:01 10.1.0.10", "expected 4 fields"),
        ("leased 00:15:65:00:00:01 10.1.0.10 5", "state must be one of bound, free, declined"),
        ("bound 00:15:65:00:01 10.1.0.10 5", "is not a MAC address"),
        ("bound zz:15:65:00:00:01 10.1.0.10 5", "is not a MAC address"),
        ("bound - 10.1.0.10 5", "needs a MAC address"),
        ("bound 00:15:65:00:00:01 10.1.0.300 5", "'10.1.0.300' is not an IPv4 address"),
        ("bound 00:15:65:00:00:01 10.1.0 5", "is not an IPv4 address"),
        ("bound 00:15:65:00:00:01 10.1.0.10 soon", "'soon' is not a time"),
        ("bound 00:15:65:00:00:01 10.1.0.10 nan", "is not a time"),
        ("bound 00:15:65:00:00:01 10.1.0.10 -5", "is not a time"),
    ],
)
def test_a_corrupt_line_is_named_by_file_and_line(line, message):
    text = f"{HEADER}\n\nfree 00:15:65:00:00:09 10.1.0.19 0\n{line}\n"
    with pytest.raises(LeaseFileError) as caught:
        parse_leases(text, "/var/lab/leases.txt")
    assert str(caught.value).startswith("lease file /var/lab/leases.txt:4: ")
    assert message in str(caught.value) and caught.value.line == 4


def test_another_format_version_is_refused_and_non_text_is_explained(tmp_path):
    with pytest.raises(LeaseFileError, match=r"x:1: unsupported version"):
        parse_leases("# labsim DHCP leases v9\n", "x")
    binary = tmp_path / "leases.txt"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(LeaseFileError, match=r"leases.txt: not UTF-8"):
        read_lease_file(str(binary))


def test_missing_file_is_a_first_start_and_writes_are_atomic(tmp_path):
    path = str(tmp_path / "sub" / "leases.txt")
    assert read_lease_file(path) == []
    write_lease_file(path, [LeaseRecord("free", MAC_A, "10.1.0.10", 0.0)])
    assert read_lease_file(path) == [LeaseRecord("free", MAC_A, "10.1.0.10", 0.0)]
    assert os.listdir(tmp_path / "sub") == ["leases.txt"]  # no temporary left behind


def test_lease_path_is_relative_to_the_report_folder():
    assert resolve_lease_path(None, "/r") is None
    assert resolve_lease_path("leases.txt", "/r") == "/r/leases.txt"
    assert resolve_lease_path("/abs/leases.txt", "/r") == "/abs/leases.txt"
    assert resolve_lease_path("leases.txt", None) == "leases.txt"


# -- saving and restoring the server's state ----------------------------------------------------


def test_restore_gives_back_what_was_saved():
    before = make_server()
    a = dora(before, MAC_A, 0)
    b = dora(before, MAC_B, 0)
    before.handle(msg(RELEASE, MAC_B, ciaddr=b), 1)
    c = dora(before, MAC_C, 2)
    before.handle(msg(DECLINE, MAC_C, requested=c), 3)
    records = parse_leases(format_leases(before.lease_records()))

    after = make_server()
    after.restore(records, 10)
    assert after.leases.by_mac(MAC_A).state == BOUND and after.leases.by_mac(MAC_A).expires == 1000
    assert after.leases.record(MAC_B).state == FREE and after.leases.record(MAC_B).ip == b
    assert after.leases.by_ip(c).state == DECLINED
    assert after.stats["leases_restored"] == 3 and after.stats["leases_dropped"] == 0
    # the clients get their addresses back; the declined one is not handed out
    assert dora(after, MAC_A, 11) == a
    assert dora(after, MAC_B, 11) == b
    assert c not in {dora(after, bytes([2, 0, 0, 0, 0, n]), 11) for n in range(8)}


def test_restore_drops_what_the_configuration_no_longer_allows():
    server = make_server(reservations={MAC_C: "10.1.0.200"})
    server.restore([
        LeaseRecord("bound", MAC_A, "10.1.0.99", 5000),  # outside the pool now
        LeaseRecord("bound", MAC_B, "10.1.0.12", 5000),
        LeaseRecord("bound", MAC_A, "10.1.0.12", 5000),  # the address is taken by an earlier line
        LeaseRecord("bound", MAC_C, "10.1.0.13", 5000),  # this MAC is reserved elsewhere now
        LeaseRecord("bound", bytes.fromhex("001565000004"), "10.1.0.14", 5),  # ran out while down
        LeaseRecord("declined", None, "10.1.0.15", 5),  # ran out while down: nothing to do
    ], now=100)  # fmt: skip
    assert server.stats["leases_restored"] == 2 and server.stats["leases_dropped"] == 3
    assert server.leases.by_ip("10.1.0.12").mac == MAC_B
    assert server.leases.by_mac(bytes.fromhex("001565000004")) is None  # remembered, not held
    assert server.leases.record(bytes.fromhex("001565000004")).ip == "10.1.0.14"
    assert server.leases.is_free("10.1.0.15")


def test_writes_are_batched_not_per_packet(tmp_path):
    clock = Clock()
    clock.advance(1000)
    server = make_server()
    path = str(tmp_path / "leases.txt")
    keeper = LeaseFileKeeper(server, path, clock, interval_s=1.0)
    keeper.load()
    keeper.start()
    for n in range(8):  # 8 DORAs = 16 changes inside one second
        dora(server, bytes([0, 0x15, 0x65, 0, 1, n]), clock.seconds())
    assert server.stats["lease_file_writes"] == 0 and not os.path.exists(path)
    clock.advance(1.0)
    assert server.stats["lease_file_writes"] == 1
    assert sum(r.state == "bound" for r in read_lease_file(path)) == 8
    clock.advance(5.0)  # nothing changed: nothing written
    assert server.stats["lease_file_writes"] == 1
    dora(server, MAC_A, clock.seconds())
    keeper.stop()  # stop writes what changed since the last tick
    assert server.stats["lease_file_writes"] == 2
    assert any(r.mac == MAC_A for r in read_lease_file(path))
    clock.advance(10)
    assert server.stats["lease_file_writes"] == 2  # the timer is gone


def test_leases_that_run_out_while_idle_are_saved_as_free(tmp_path):
    clock = Clock()
    server = make_server(lease_time_s=60)
    keeper = LeaseFileKeeper(server, str(tmp_path / "l.txt"), clock)
    keeper.start()
    dora(server, MAC_A, 0)
    clock.advance(1)
    assert [r.state for r in read_lease_file(keeper.path)] == ["bound"]
    clock.advance(61)  # no packet at all: the keeper's tick expires the lease
    assert [r.state for r in read_lease_file(keeper.path)] == ["free"]
    keeper.stop()


def test_a_write_failure_is_counted_not_raised(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    clock = Clock()
    server = make_server()
    keeper = LeaseFileKeeper(server, str(blocker / "leases.txt"), clock)  # parent is a file
    keeper.start()
    dora(server, MAC_A, 0)
    clock.advance(1)
    clock.advance(1)
    assert server.stats["lease_file_errors"] == 2 and server.stats["lease_file_writes"] == 0
    keeper.stop()


def test_a_corrupt_lease_file_stops_the_start_before_any_socket(tmp_path):
    path = tmp_path / "leases.txt"
    path.write_text(f"{HEADER}\nbound 00:15:65:00:00:01 10.1.0.10 100\nbound 00:15:65:00:00:02 oops 100\n")
    port = free_udp_port()
    with pytest.raises(LeaseFileError, match=r"leases.txt:3: 'oops' is not an IPv4 address"):
        start_dhcp_server(reactor, make_server().config, "127.0.0.1", port, lease_file=str(path))
    probe = bind_udp(reactor, DatagramProtocol(), "127.0.0.1", port)  # nothing was left bound
    probe.stopListening()


class _Relay(DatagramProtocol):
    def __init__(self):
        self.received = defer.DeferredQueue()

    def datagramReceived(self, data, addr):
        self.received.put(dhcp.decode(data))


class LeaseFileRestartTest(trial.TestCase):
    """A real server over loopback, stopped and started again on the same lease file."""

    timeout = 10

    @defer.inlineCallbacks
    def test_a_restarted_server_keeps_the_binding(self):
        path = os.path.abspath(self.mktemp())
        port = free_udp_port()
        relay = _Relay()
        relay_port = bind_udp(reactor, relay, "127.0.0.2", port)
        self.addCleanup(relay_port.stopListening)
        server_addr = ("127.0.0.1", port)

        def relayed(mtype, xid, **kw):
            m = msg(mtype, MAC_A, **kw)
            m.giaddr, m.hops, m.xid = "127.0.0.2", 1, xid
            return dhcp.encode(m)

        # Skip the first address so a fresh server would not offer the same one by luck.
        config = make_server(pool_start="10.1.0.10", pool_end="10.1.0.20").config
        protocol, listening = start_dhcp_server(reactor, config, "127.0.0.1", port, lease_file=path)
        protocol.server.leases.hold(MAC_B, "10.1.0.10", BOUND, reactor.seconds() + 5)
        relay_port.write(relayed(DISCOVER, 1), server_addr)
        offer = yield relay.received.get()
        self.assertEqual((offer.message_type, offer.yiaddr), (OFFER, "10.1.0.11"))
        relay_port.write(relayed(REQUEST, 2, requested=offer.yiaddr), server_addr)
        ack = yield relay.received.get()
        self.assertEqual(ack.message_type, ACK)
        yield listening.stopListening()  # writes the file
        self.assertIn(LeaseRecord("bound", MAC_A, "10.1.0.11", protocol.server.leases.by_mac(MAC_A).expires),
                      read_lease_file(path))

        protocol, listening = start_dhcp_server(reactor, config, "127.0.0.1", port, lease_file=path)
        self.addCleanup(listening.stopListening)
        self.assertEqual(protocol.server.leases.by_mac(MAC_A).state, BOUND)
        relay_port.write(relayed(DISCOVER, 3), server_addr)
        offer = yield relay.received.get()
        self.assertEqual(offer.yiaddr, "10.1.0.11")
        self.assertEqual(protocol.stats["leases_restored"], 2)


def test_the_keeper_ticks_only_when_there_is_something_to_do(tmp_path):
    clock = Clock()
    server = make_server(lease_time_s=60)
    keeper = LeaseFileKeeper(server, str(tmp_path / "l.txt"), clock)
    keeper.start()
    assert [c.getTime() for c in clock.getDelayedCalls()] == [1]  # the first tick writes the file anyway
    clock.advance(1)
    assert server.stats["lease_file_writes"] == 1 and clock.getDelayedCalls() == []  # no lease: asleep
    clock.advance(3.5)
    dora(server, MAC_A, clock.seconds())  # at 4.5: the next tick on the grid, 5, writes it
    assert [c.getTime() for c in clock.getDelayedCalls()] == [5]
    clock.advance(0.5)
    assert server.stats["lease_file_writes"] == 2
    assert [c.getTime() for c in clock.getDelayedCalls()] == [65]  # the tick at which the lease runs out
    clock.advance(60)
    assert [r.state for r in read_lease_file(keeper.path)] == ["free"] and server.stats["lease_file_writes"] == 3
    clock.advance(10)
    assert clock.getDelayedCalls() == [] and server.stats["lease_file_writes"] == 3
    keeper.stop()
    assert server.on_leases_changed is None

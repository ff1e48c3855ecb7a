"""The DHCP server's sockets: bind_udp's defaults (SO_REUSEADDR, receive buffer), the
edge's choice between unicast and broadcast for clients without an address, and the
interface socket next to the relay socket."""

from __future__ import annotations

import os
import socket

import pytest
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial import unittest as trial

from labsim.services import dhcp_udp
from labsim.services.dhcp import DhcpServer, DhcpServerConfig
from labsim.services.dhcp_udp import DEFAULT_RECV_BUFFER, DhcpServerProtocol, start_dhcp_server
from labsim.net.udp import SO_BINDTODEVICE, bind_udp
from labsim.wire import dhcp
from labsim.wire.dhcp import DISCOVER, NAK, OFFER, REQUEST, DhcpMessage
from tests.peers import free_udp_port


class SocketKeepingReactor:
    """Just enough of a reactor for bind_udp: keeps a duplicate of each adopted socket."""

    def __init__(self):
        self.sockets: list[socket.socket] = []

    def adoptDatagramPort(self, fd, family, protocol, maxPacketSize):
        sock = socket.socket(family, socket.SOCK_DGRAM, fileno=os.dup(fd))
        self.sockets.append(sock)
        return sock

    def close(self):
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def fake_reactor():
    keeper = SocketKeepingReactor()
    try:
        yield keeper
    finally:
        keeper.close()


def test_reuse_addr_is_off_for_ephemeral_ports_and_no_port_is_handed_out_twice(fake_reactor):
    for _ in range(800):  # with SO_REUSEADDR on, 800 binds gave 13 duplicates here
        bind_udp(fake_reactor, None, "127.0.0.1", 0)
    ports = [sock.getsockname()[1] for sock in fake_reactor.sockets]
    assert len(set(ports)) == len(ports)
    assert fake_reactor.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0


def test_reuse_addr_is_on_for_a_fixed_port_unless_refused(fake_reactor):
    port = free_udp_port()
    fixed = bind_udp(fake_reactor, None, "127.0.0.1", port)
    assert fixed.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
    again = bind_udp(fake_reactor, None, "127.0.0.3", free_udp_port("127.0.0.3"), reuse_addr=False)
    assert again.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0


def test_receive_buffer_is_raised_when_asked(fake_reactor):
    plain = bind_udp(fake_reactor, None, "127.0.0.1", 0)
    big = bind_udp(fake_reactor, None, "127.0.0.1", 0, recv_buffer=DEFAULT_RECV_BUFFER)
    default = plain.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    granted = big.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    assert default < 1 << 20  # the kernel default (~208 KB) ...
    # ... and what we asked for: SO_RCVBUFFORCE as root, else capped at net.core.rmem_max
    # (Linux reports twice the request)
    with open("/proc/sys/net/core/rmem_max") as handle:
        cap = int(handle.read())
    expected = DEFAULT_RECV_BUFFER if os.geteuid() == 0 else min(DEFAULT_RECV_BUFFER, cap)
    assert granted >= expected * 2 - 4096 and granted > default


class DhcpServerSocketTest(trial.TestCase):
    timeout = 10

    def test_the_dhcp_server_socket_gets_the_big_buffer(self):
        protocol, listening = start_dhcp_server(reactor, config(), "127.0.0.1", 0)
        self.addCleanup(listening.stopListening)
        sock = listening.ports[0].socket
        self.assertGreater(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), 1 << 20)
        self.assertEqual(listening.getHost().port, protocol.transport.getHost().port)

    @defer.inlineCallbacks
    def test_an_interface_socket_is_bound_to_the_device_beside_the_relay_socket(self):
        if os.geteuid() != 0:
            raise trial.SkipTest("SO_BINDTODEVICE needs root (the namespace interop test covers it too)")
        relay_port, interface_port = free_udp_port(), free_udp_port()
        protocol, listening = start_dhcp_server(reactor, config(), "127.0.0.1", relay_port,
                                                interface="lo", interface_port=interface_port)
        relay_socket, device_socket = (port.socket for port in listening.ports)
        self.assertEqual(relay_socket.getsockname(), ("127.0.0.1", relay_port))
        self.assertEqual(device_socket.getsockname(), ("0.0.0.0", interface_port))
        self.assertEqual(device_socket.getsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, 16).rstrip(b"\0"), b"lo")
        self.assertEqual(device_socket.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST), 1)
        on_link = listening.protocols[1]
        self.assertIs(on_link.server, protocol.server)  # one lease table
        self.assertEqual((on_link.device, on_link.loopback_only), ("lo", False))
        yield listening.stopListening()
        # both ports are free again
        for port in (relay_port, interface_port):
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probe.bind(("127.0.0.1", port))
            probe.close()


def config() -> DhcpServerConfig:
    return DhcpServerConfig(server_id="10.1.0.1", subnet="10.1.0.0/24", pool_start="10.1.0.10", pool_end="10.1.0.20")


# -- unicast or broadcast to a client without an address (RFC 2131 4.1) ------------------------


class RecordingTransport:
    def __init__(self):
        self.sent = []

    def write(self, data, addr):
        self.sent.append((dhcp.decode(data), addr))

    def getHost(self):
        return IPv4Address("UDP", "0.0.0.0", 67)

    def getHandle(self):
        return None


def on_link_edge(device: str | None = "veth0"):
    protocol = DhcpServerProtocol(DhcpServer(config()), Clock(), loopback_only=False, device=device)
    transport = RecordingTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def discover(flags: int = 0, ciaddr: str = "0.0.0.0", mtype: int = DISCOVER) -> bytes:
    return dhcp.encode(DhcpMessage(dhcp.BOOTREQUEST, 1, bytes.fromhex("001565000001"), {53: bytes([mtype])},
                                   ciaddr=ciaddr, flags=flags))


def test_broadcast_bit_clear_unicasts_to_yiaddr_after_adding_a_neighbour_entry(monkeypatch):
    calls = []
    monkeypatch.setattr(dhcp_udp, "add_arp_entry", lambda sock, ip, mac, device: calls.append((ip, mac, device)))
    protocol, transport = on_link_edge()
    protocol.datagramReceived(discover(flags=0), ("0.0.0.0", 68))
    [(offer, addr)] = transport.sent
    assert offer.message_type == OFFER and addr == (offer.yiaddr, 68)
    assert calls == [(offer.yiaddr, bytes.fromhex("001565000001"), "veth0")]
    assert protocol.stats["arp_entries"] == 1


def test_broadcast_bit_set_or_a_nak_is_broadcast(monkeypatch):
    monkeypatch.setattr(dhcp_udp, "add_arp_entry", lambda *a: pytest.fail("no neighbour entry wanted"))
    protocol, transport = on_link_edge()
    protocol.datagramReceived(discover(flags=0x8000), ("0.0.0.0", 68))
    bad_request = DhcpMessage(dhcp.BOOTREQUEST, 2, bytes.fromhex("001565000002"),
                              {53: bytes([REQUEST]), 50: dhcp.encode_ip_list(["10.9.9.9"])})
    protocol.datagramReceived(dhcp.encode(bad_request), ("0.0.0.0", 68))
    assert [(m.message_type, addr) for m, addr in transport.sent] == [
        (OFFER, ("255.255.255.255", 68)), (NAK, ("255.255.255.255", 68)),
    ]  # fmt: skip


def test_a_client_with_an_address_gets_plain_unicast(monkeypatch):
    monkeypatch.setattr(dhcp_udp, "add_arp_entry", lambda *a: pytest.fail("no neighbour entry wanted"))
    protocol, transport = on_link_edge()
    inform = discover(ciaddr="10.1.0.77", mtype=8)
    protocol.datagramReceived(inform, ("10.1.0.77", 68))
    [(ack, addr)] = transport.sent
    assert addr == ("10.1.0.77", 68)


def test_when_no_neighbour_entry_can_be_made_the_reply_is_broadcast(monkeypatch):
    def refuse(*args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(dhcp_udp, "add_arp_entry", refuse)
    protocol, transport = on_link_edge()
    protocol.datagramReceived(discover(flags=0), ("0.0.0.0", 68))
    [(offer, addr)] = transport.sent
    assert addr == ("255.255.255.255", 68) and protocol.stats["arp_errors"] == 1


def test_without_an_interface_there_is_no_unicast_to_an_unheld_address(monkeypatch):
    monkeypatch.setattr(dhcp_udp, "add_arp_entry", lambda *a: pytest.fail("no neighbour entry without a device"))
    protocol, transport = on_link_edge(device=None)
    protocol.datagramReceived(discover(flags=0), ("0.0.0.0", 68))
    assert [addr for _, addr in transport.sent] == [("255.255.255.255", 68)]

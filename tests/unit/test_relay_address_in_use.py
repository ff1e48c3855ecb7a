"""A fleet's DHCP relay refuses a relay address another process already holds (another
labsim run against the same server would share its replies), and still shares the port
with a server bound to every address (dnsmasq without bind-interfaces)."""

from __future__ import annotations

import socket

import pytest
from twisted.internet import task

from labsim.transport.loopback import refuse_a_taken_relay_address
from tests.peers import free_udp_port


def bound(address: str, port: int, *, reuse: bool = True) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if reuse:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    return sock


def test_a_free_relay_address_passes():
    refuse_a_taken_relay_address("127.0.0.2", free_udp_port())


def test_another_relay_on_the_same_address_and_port_is_refused_by_name():
    port = free_udp_port()
    with bound("127.0.0.2", port):  # the other run's relay, SO_REUSEADDR as ours would be
        with pytest.raises(ValueError) as caught:
            refuse_a_taken_relay_address("127.0.0.2", port)
    assert f"127.0.0.2:{port} is already in use" in str(caught.value)
    assert "network.relay_address" in str(caught.value)


def test_the_same_port_on_another_relay_address_is_fine():
    port = free_udp_port()
    with bound("127.0.0.3", port):
        refuse_a_taken_relay_address("127.0.0.2", port)


def test_a_server_holding_the_port_on_every_address_is_shared_not_refused():
    port = free_udp_port("0.0.0.0")
    with bound("0.0.0.0", port):  # as dnsmasq binds without bind-interfaces
        refuse_a_taken_relay_address("127.0.0.2", port)


def test_a_second_fleet_network_on_the_same_relay_does_not_start():
    from labsim.transport.loopback import LoopbackNetwork

    clock = task.Clock()
    port = free_udp_port()
    with bound("127.0.0.2", port):
        with pytest.raises(ValueError, match="relay address"):
            LoopbackNetwork(clock, dhcp_server=("127.0.0.1", port), relay_address="127.0.0.2")

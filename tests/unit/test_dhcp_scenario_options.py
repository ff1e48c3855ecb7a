"""The scenario path end to end for DHCP: YAML text -> parse_scenario_text -> dhcp_config ->
the server's edge -> the exact bytes it writes to the socket."""

from __future__ import annotations

import socket

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

from labsim.scenario.loader import ScenarioError, parse_scenario_text
from labsim.services.dhcp import DhcpServer
from labsim.services.dhcp_udp import DhcpServerProtocol
from labsim.services.lab import dhcp_config
from labsim.wire import dhcp
from labsim.wire.dhcp import DISCOVER, OFFER, DhcpMessage

RELAY = "127.0.0.2"

SCENARIO = """\
name: options
services:
  dhcp:
    subnet: 10.7.0.0/24
    pool: {{start: 10.7.0.10, end: 10.7.0.12}}
{dhcp}
fleets:
  - {{vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}}
"""


def load(dhcp_yaml: str):
    return parse_scenario_text(SCENARIO.format(dhcp=dhcp_yaml), "s.yaml").services.dhcp


class RecordingTransport:
    def __init__(self):
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data, addr):
        self.sent.append((data, addr))

    def getHost(self):
        return IPv4Address("UDP", "127.0.0.1", 6767)


def edge_for(spec) -> tuple[DhcpServerProtocol, RecordingTransport]:
    protocol = DhcpServerProtocol(DhcpServer(dhcp_config(spec)), Clock())
    transport = RecordingTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def relayed_discover(mac: bytes, **options: bytes) -> bytes:
    opts = {53: bytes([DISCOVER]), **{int(k[1:]): v for k, v in options.items()}}
    return dhcp.encode(DhcpMessage(dhcp.BOOTREQUEST, 9, mac, opts, giaddr=RELAY, hops=1))


def wire_options(datagram: bytes) -> dict[int, bytes]:
    """The options of a reply read straight off the bytes (independently of the codec)."""
    assert datagram[236:240] == b"\x63\x82\x53\x63"
    found, i = {}, 240
    while datagram[i] != 255:
        if datagram[i] == 0:
            i += 1
            continue
        code, length = datagram[i], datagram[i + 1]
        found[code] = found.get(code, b"") + datagram[i + 2 : i + 2 + length]
        i += 2 + length
    return found


def offer_bytes(spec, mac=b"\x00\x15\x65\x00\x00\x01", **options) -> bytes:
    protocol, transport = edge_for(spec)
    protocol.datagramReceived(relayed_discover(mac, **options), (RELAY, 6767))
    [(data, addr)] = transport.sent
    assert addr == (RELAY, 6767)
    return data


def ip(text: str) -> bytes:
    return socket.inet_aton(text)


def test_vendor_options_by_number_and_name_reach_the_wire():
    spec = load("""\
    options:
      150: [10.7.0.5, 10.7.0.6]
      config_url: "http://10.7.0.5/cisco/$PSN.xml"
      160: "http://10.7.0.5/yealink/"
      125: [{enterprise: 3561, sub_options: [{code: 1, value: "ABC"}, {code: 2, value: {hex: "0a0b"}}]}]
      43: [{code: 1, value: "http://p/"}, {code: 2, value: {ip: 10.7.0.5}}]
      224: "free text"
      225: {ips: [10.7.0.8, 10.7.0.9]}
      226: {hex: "de:ad:be:ef"}
      227: {u16: 515}
      router: 10.7.0.1
""")
    data = offer_bytes(spec)
    assert dhcp.decode(data).message_type == OFFER
    options = wire_options(data)
    assert options[150] == ip("10.7.0.5") + ip("10.7.0.6")
    assert options[159] == b"http://10.7.0.5/cisco/$PSN.xml"
    assert options[160] == b"http://10.7.0.5/yealink/"
    # RFC 3925: enterprise (4 bytes), data length, then the sub-option TLVs
    assert options[125] == (3561).to_bytes(4, "big") + bytes([9]) + b"\x01\x03ABC" + b"\x02\x02\x0a\x0b"
    assert options[43] == b"\x01\x09http://p/" + b"\x02\x04" + ip("10.7.0.5")
    assert options[224] == b"free text"
    assert options[225] == ip("10.7.0.8") + ip("10.7.0.9")
    assert options[226] == b"\xde\xad\xbe\xef"
    assert options[227] == b"\x02\x03"
    assert options[3] == ip("10.7.0.1")
    assert options[1] == ip("255.255.255.0")  # from the subnet
    # and the raw TLV for 150 is on the wire as such
    assert b"\x96\x08" + ip("10.7.0.5") + ip("10.7.0.6") in data


def test_a_long_option_is_split_on_the_wire():
    spec = load(f'    options: {{160: "http://10.7.0.5/{"x" * 300}"}}\n')
    data = offer_bytes(spec)
    assert data.count(b"\xa0\xff") == 1  # a first instance of 255 bytes, then the rest (RFC 3396)
    assert wire_options(data)[160] == b"http://10.7.0.5/" + b"x" * 300


def test_reservation_from_the_scenario():
    spec = load("""\
    reservations: {"00-15-65-00-00-09": 10.7.0.200, "001565000008": 10.7.0.201}
""")
    assert dhcp.decode(offer_bytes(spec, mac=bytes.fromhex("001565000009"))).yiaddr == "10.7.0.200"
    assert dhcp.decode(offer_bytes(spec, mac=bytes.fromhex("001565000008"))).yiaddr == "10.7.0.201"
    assert dhcp.decode(offer_bytes(spec, mac=bytes.fromhex("001565000007"))).yiaddr == "10.7.0.10"


def test_pool_exhaustion_is_counted_and_reported_to_an_observer():
    protocol, transport = edge_for(load(""))
    seen = []
    protocol.on_event = lambda proto, request, replies, note: seen.append((request.chaddr[-1], len(replies), note))
    for n in range(4):  # a pool of 3
        protocol.datagramReceived(relayed_discover(bytes([0, 0x15, 0x65, 0, 0, n])), (RELAY, 6767))
    assert len(transport.sent) == 3
    assert protocol.stats["pool_exhausted"] == 1
    assert seen == [(0, 1, None), (1, 1, None), (2, 1, None), (3, 0, "pool exhausted")]


@pytest.mark.parametrize(
    "dhcp_yaml, where, message",
    [
        ("    options: {150: [10.7.0.5, nope]}\n", "services.dhcp.options", "'nope' is not an IPv4 address"),
        ("    options: {66: a, tftp_server_name: b}\n", "services.dhcp.options", "given twice"),
        ("    options: {51: 100}\n", "services.dhcp.options", "set by the server itself"),
        ("    options: {226: {hex: xyz}}\n", "services.dhcp.options", "not an even number of hex digits"),
        ("    reservations: {'00:15:65:00:00:09': 10.8.0.1}\n", "services.dhcp", "outside subnet"),
        ("    reservations: {'00:15:65:00:00:09': 10.7.0.1, '00:15:65:00:00:08': 10.7.0.1}\n", "services.dhcp",
         "reserved for both"),
        ("    reservations: {'00:15:65:00:00:09': 10.7.0.1, '00-15-65-00-00-09': 10.7.0.2}\n",
         "services.dhcp.reservations", "same MAC"),
        ("    interface: 'a/b'\n", "services.dhcp.interface", "not a network interface name"),
        ("    lease_time_s: 4294967296\n", "services.dhcp.lease_time_s", "less than or equal"),
    ],
)
def test_bad_dhcp_settings_are_validation_errors(dhcp_yaml, where, message):
    with pytest.raises(ScenarioError) as caught:
        load(dhcp_yaml)
    found = [str(p) for p in caught.value.problems if f": {where}: " in str(p)]
    assert found and message in found[0], [str(p) for p in caught.value.problems]
    assert found[0].startswith("s.yaml:")

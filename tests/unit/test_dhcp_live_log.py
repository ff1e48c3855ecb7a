"""labsim serve's live log: the lines for DHCP/TFTP/HTTP events, and the observer hooks."""

from __future__ import annotations

import io
import time

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

from labsim.observe.live_log import LiveLog, format_counters, format_dhcp, format_http, format_tftp
from labsim.services.dhcp import DhcpServer, DhcpServerConfig
from labsim.services.dhcp_classes import ClientClass, VendorClassMatch
from labsim.services.dhcp_udp import DhcpListening, DhcpServerProtocol
from labsim.services.tftp import Reject, ReadTransfer
from labsim.wire import dhcp
from labsim.wire import tftp as tftp_wire
from labsim.wire.dhcp import DECLINE, DISCOVER, INFORM, REQUEST, DhcpMessage

MAC = bytes.fromhex("001565aa0001")


def server(**config) -> DhcpServer:
    settings = dict(server_id="127.0.0.1", subnet="10.1.0.0/24", pool_start="10.1.0.10", pool_end="10.1.0.10")
    settings.update(config)
    return DhcpServer(DhcpServerConfig(**settings))


def request(mtype, mac=MAC, vendor=None, **kw) -> DhcpMessage:
    options = {53: bytes([mtype])}
    if vendor:
        options[60] = vendor
    options.update(kw.pop("options", {}))
    return DhcpMessage(dhcp.BOOTREQUEST, 1, mac, options, giaddr="127.0.0.2", **kw)


def test_dhcp_lines_say_what_happened_to_whom():
    srv = server()
    discover = request(DISCOVER, vendor=b"yealink")
    offer = srv.handle(discover, 0)
    assert format_dhcp(discover, offer, via="127.0.0.2") == []  # the exchange ends at the ACK
    assert format_dhcp(discover, offer, via="127.0.0.2", show_offers=True) == [
        "dhcp OFFER 10.1.0.10 to 00:15:65:aa:00:01 via 127.0.0.2 (vendor yealink)"
    ]
    req = request(REQUEST, vendor=b"Nortel-SIP-Phone-A\x00",
                  options={50: dhcp.encode_ip_list(["10.1.0.10"]), 54: dhcp.encode_ip_list(["127.0.0.1"])})
    ack = srv.handle(req, 0)
    assert format_dhcp(req, ack, via="127.0.0.2", class_name="avaya") == [
        "dhcp ACK 10.1.0.10 to 00:15:65:aa:00:01 via 127.0.0.2 (vendor Nortel-SIP-Phone-A, class avaya)"
    ]
    stranger = request(REQUEST, mac=bytes(6), options={50: dhcp.encode_ip_list(["10.1.0.10"]),
                                                      54: dhcp.encode_ip_list(["127.0.0.1"])})
    nak = srv.handle(stranger, 0)
    assert format_dhcp(stranger, nak, via="veth0") == [
        "dhcp NAK to 00:00:00:00:00:00 via veth0: no offer of that address is outstanding"
    ]
    full = request(DISCOVER, mac=bytes.fromhex("001565aa0002"))
    assert srv.handle(full, 0) == []
    assert format_dhcp(full, [], via="127.0.0.2", note="pool exhausted") == [
        "dhcp no address for 00:15:65:aa:00:02 via 127.0.0.2: pool exhausted"
    ]
    decline = request(DECLINE, options={50: dhcp.encode_ip_list(["10.1.0.10"])})
    assert format_dhcp(decline, [], via="x") == ["dhcp DECLINE 10.1.0.10 from 00:15:65:aa:00:01 via x (address in use)"]
    inform = request(INFORM, ciaddr="10.1.0.99")
    assert format_dhcp(inform, srv.handle(inform, 0), via="x") == [
        "dhcp ACK (inform, options only) to 10.1.0.99 00:15:65:aa:00:01 via x"
    ]
    odd = request(DISCOVER, vendor=b"bad\x01\nname")
    # Control characters escaped by the one rule every log uses (labsim.observe.log_text).
    assert "(vendor bad\\x01\\x0aname)" in format_dhcp(odd, [], via="x", note="n")[0]


def test_tftp_and_http_lines():
    rrq = tftp_wire.encode_rrq("y000000000066.cfg", {"blksize": "1468"})
    sending = ReadTransfer(("127.0.0.1", 4000), b"x" * 3000, blksize=1468)
    assert format_tftp(rrq, ("127.0.0.1", 4000), sending) == (
        "tftp RRQ y000000000066.cfg from 127.0.0.1:4000: sending 3000 bytes (blksize 1468)"
    )
    refused = Reject(tftp_wire.encode_error(1, "File not found"))
    assert format_tftp(rrq, ("127.0.0.1", 4000), refused) == (
        "tftp RRQ y000000000066.cfg from 127.0.0.1:4000: refused (1 File not found)"
    )
    assert format_tftp(b"\x00\x05junk", ("127.0.0.1", 1), None) is None  # not a request
    entry = {"method": "GET", "path": "/a.cfg", "status": 404, "client": "127.0.0.1", "mac": "00:15:65:aa:00:01"}
    assert format_http(entry) == "http GET /a.cfg 404 from 127.0.0.1 (mac 00:15:65:aa:00:01)"


class _Transport:
    def __init__(self):
        self.sent = []

    def write(self, data, addr):
        self.sent.append(addr)

    def getHost(self):
        return IPv4Address("UDP", "127.0.0.1", 6767)


def test_the_live_log_attaches_to_a_running_dhcp_server_and_detaches():
    clock = Clock()
    clock.advance(time.mktime((2026, 1, 2, 3, 4, 5, 0, 0, -1)))
    srv = server(classes=[ClientClass("yealink", VendorClassMatch("prefix", "yealink"))])
    protocol = DhcpServerProtocol(srv, clock)
    protocol.makeConnection(_Transport())
    assert protocol.on_event is None  # nobody listens by default
    out = io.StringIO()
    live = LiveLog(out, clock)
    live.attach_dhcp(DhcpListening([protocol.transport], [protocol]))
    protocol.datagramReceived(dhcp.encode(request(DISCOVER, vendor=b"yealink T46S")), ("127.0.0.2", 6767))
    req = request(REQUEST, vendor=b"yealink T46S",
                  options={50: dhcp.encode_ip_list(["10.1.0.10"]), 54: dhcp.encode_ip_list(["127.0.0.1"])})
    protocol.datagramReceived(dhcp.encode(req), ("127.0.0.2", 6767))
    assert out.getvalue() == (
        "03:04:05 dhcp ACK 10.1.0.10 to 00:15:65:aa:00:01 via 127.0.0.2 (vendor yealink T46S, class yealink)\n"
    )
    live.detach()
    assert protocol.on_event is None


def test_a_failing_observer_never_reaches_the_service():
    class Broken(io.StringIO):
        def write(self, text):
            raise OSError("stdout closed")

    live = LiveLog(Broken(), Clock())
    protocol = DhcpServerProtocol(server(), Clock())
    protocol.makeConnection(_Transport())
    live.attach_dhcp(DhcpListening([protocol.transport], [protocol]))
    protocol.datagramReceived(dhcp.encode(request(DISCOVER)), ("127.0.0.2", 6767))
    req = request(REQUEST, options={50: dhcp.encode_ip_list(["10.1.0.10"]), 54: dhcp.encode_ip_list(["127.0.0.1"])})
    protocol.datagramReceived(dhcp.encode(req), ("127.0.0.2", 6767))
    assert live.observer_errors == 1
    assert protocol.stats["internal_errors"] == 0 and protocol.stats["ack"] == 1


def test_counters_are_printed_per_service_without_zeros():
    text = format_counters({"dhcp": {"ack": 2, "nak": 0}, "http": {"requests": 1, "status": {"200": 1}}, "tftp": {}})
    assert text == "counters:\n  dhcp: ack=2\n  http: requests=1 status.200=1\n  tftp: (nothing)"

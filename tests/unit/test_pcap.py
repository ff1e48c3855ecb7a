"""The synthetic capture: struct-built frames checked against scapy's dissectors, TCP flows
whose sequence numbers add up, TFTP transfers, and the pcap file scapy reads back."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.all import BOOTP, DHCP, IP, TCP, UDP, Ether, Raw, rdpcap
from scapy.utils import checksum as scapy_checksum

from labsim.observe import pcap
from labsim.observe.pcap import (
    LAB_SERVER_MAC,
    PcapCapture,
    TCP_ACK,
    TCP_FIN,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    checksum,
    http_status_code,
    tcp_frame,
    udp_frame,
)
from labsim.phones.events import FetchResult
from labsim.wire import dhcp
from labsim.wire import tftp as tftp_wire

PHONE_MAC = bytes.fromhex("001565aa0001")


class ListSink:
    """Collects what a capture writes, in place of the pcap file."""

    def __init__(self):
        self.packets: list[tuple[bytes, int, int]] = []
        self.closed = False

    def write_packet(self, frame, sec=None, usec=None):
        self.packets.append((frame, sec, usec))

    def close(self):
        self.closed = True


def frames(sink: ListSink) -> list[Ether]:
    return [Ether(frame) for frame, _, _ in sink.packets]


@given(st.binary(max_size=300))
def test_checksum_matches_scapy(data):
    assert checksum(data) == scapy_checksum(data)


def test_checksum_of_a_known_header():
    # The IPv4 header worked through in the usual textbook example (checksum b861).
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert checksum(header) == 0xB861


def _scapy_checksums_agree(frame: bytes) -> None:
    """Scapy recomputes the IP and L4 checksums when the field is deleted: they must match ours."""
    packet = Ether(frame)
    ip = packet[IP]
    layer = packet[TCP] if TCP in packet else packet[UDP]
    ours = (ip.chksum, layer.chksum)
    del ip.chksum
    del layer.chksum
    again = Ether(bytes(packet))
    assert (again[IP].chksum, (again[TCP] if TCP in again else again[UDP]).chksum) == ours


def test_udp_frame_decodes_with_scapy_and_checksums_are_right():
    payload = b"hello phones"
    frame = udp_frame(PHONE_MAC, LAB_SERVER_MAC, "10.1.2.3", "127.0.0.1", 5000, 69, payload, ident=7)
    packet = Ether(frame)
    assert packet.src == "00:15:65:aa:00:01" and packet.dst == "02:6c:61:62:00:01"
    assert packet[IP].src == "10.1.2.3" and packet[IP].dst == "127.0.0.1" and packet[IP].id == 7
    assert packet[IP].len == 20 + 8 + len(payload) and packet[IP].ttl == 64
    assert packet[UDP].sport == 5000 and packet[UDP].dport == 69 and packet[UDP].len == 8 + len(payload)
    assert bytes(packet[UDP].payload) == payload
    _scapy_checksums_agree(frame)


def test_tcp_frame_decodes_with_scapy_and_checksums_are_right():
    frame = tcp_frame(PHONE_MAC, LAB_SERVER_MAC, "10.1.2.3", "127.0.0.1", 50000, 80, 0xFFFFFFF0 + 30, 17,
                      TCP_PSH | TCP_ACK, b"GET / HTTP/1.1\r\n\r\n")
    packet = Ether(frame)
    assert packet[TCP].seq == 14  # wrapped modulo 2**32
    assert packet[TCP].ack == 17 and packet[TCP].flags == "PA"
    assert bytes(packet[TCP].payload) == b"GET / HTTP/1.1\r\n\r\n"
    _scapy_checksums_agree(frame)


def test_dhcp_both_ways_carry_the_phone_mac():
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    discover = dhcp.DhcpMessage(op=1, xid=0xABCD1234, chaddr=PHONE_MAC, options={53: b"\x01"})
    offer = dhcp.DhcpMessage(op=2, xid=0xABCD1234, chaddr=PHONE_MAC, yiaddr="10.30.0.10",
                             options={53: b"\x02", 54: bytes([127, 0, 0, 1])})
    capture.dhcp_from_phone(100.25, PHONE_MAC, dhcp.encode(discover))
    capture.dhcp_to_phone(100.5, PHONE_MAC, dhcp.encode(offer), "127.0.0.1", "10.30.0.10")
    out, back = frames(sink)
    assert out.src == "00:15:65:aa:00:01" and out.dst == "ff:ff:ff:ff:ff:ff"
    assert (out[IP].src, out[IP].dst, out[UDP].sport, out[UDP].dport) == ("0.0.0.0", "255.255.255.255", 68, 67)
    assert out[BOOTP].xid == 0xABCD1234 and out[BOOTP].chaddr[:6] == PHONE_MAC
    assert ("message-type", 1) in out[DHCP].options
    assert back.dst == "00:15:65:aa:00:01"
    assert (back[IP].src, back[IP].dst, back[UDP].sport, back[UDP].dport) == ("127.0.0.1", "10.30.0.10", 67, 68)
    assert back[BOOTP].yiaddr == "10.30.0.10"
    assert [(sec, usec) for _, sec, usec in sink.packets] == [(100, 250000), (100, 500000)]


def test_a_reply_with_the_broadcast_flag_goes_to_broadcast():
    sink = ListSink()
    PcapCapture(sink=sink).dhcp_to_phone(1.0, PHONE_MAC, b"x" * 300, "127.0.0.1", "10.30.0.10", broadcast=True)
    (packet,) = frames(sink)
    assert packet.dst == "ff:ff:ff:ff:ff:ff" and packet[IP].dst == "255.255.255.255"


def _tcp_stream_is_consistent(packets: list[Ether], client_port: int) -> None:
    """Every segment's seq is where the sender's stream stood; every ACK is what the other
    side has sent so far (counting SYN and FIN as one byte each)."""
    next_seq: dict[str, int] = {}
    for packet in packets:
        tcp = packet[TCP]
        side = "client" if tcp.sport == client_port else "server"
        other = "server" if side == "client" else "client"
        if "S" in tcp.flags:
            next_seq[side] = tcp.seq
        assert tcp.seq == next_seq[side], packet.summary()
        if "A" in tcp.flags:
            assert tcp.ack == next_seq[other], packet.summary()
        next_seq[side] = tcp.seq + len(tcp.payload) + (1 if tcp.flags & (TCP_SYN | TCP_FIN) else 0)


def test_an_http_download_is_a_whole_tcp_conversation():
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    body = bytes(range(256)) * 20  # 5120 bytes: four segments with the headers
    flow = capture.fetch_started(10.0, PHONE_MAC, "10.30.0.10", "http://127.0.0.1:8080/cfg/a.cfg?x=1", "Yealink SIP-T46S")
    capture.fetch_finished(flow, 10.02, FetchResult("ok", body))
    packets = frames(sink)
    flags = [str(p[TCP].flags) for p in packets]
    assert flags[:4] == ["S", "SA", "A", "PA"]
    assert flags[-3:] == ["FA", "FA", "A"]
    assert all(p.src == "00:15:65:aa:00:01" for p in packets if p[TCP].dport == 8080)
    request = bytes(packets[3][TCP].payload).decode()
    assert request.startswith("GET /cfg/a.cfg?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: Yealink SIP-T46S\r\n")
    response = b"".join(bytes(p[TCP].payload) for p in packets if p[TCP].sport == 8080)
    head, _, got = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 5120" in head
    assert got == body
    assert all(len(p[TCP].payload) <= pcap.MSS for p in packets)
    _tcp_stream_is_consistent(packets, packets[0][TCP].sport)
    assert [sec + usec / 1e6 for _, sec, usec in sink.packets][3] == pytest.approx(10.0)
    assert [sec + usec / 1e6 for _, sec, usec in sink.packets][4] == pytest.approx(10.02)


def test_a_large_body_is_cut_at_the_limit_but_sequence_numbers_stay_true():
    sink = ListSink()
    capture = PcapCapture(sink=sink, body_limit=3000)
    body = b"f" * 100_000
    flow = capture.fetch_started(1.0, PHONE_MAC, None, "http://127.0.0.1/fw.rom")
    capture.fetch_finished(flow, 2.0, FetchResult("ok", body))
    packets = frames(sink)
    carried = sum(len(p[TCP].payload) for p in packets if p[TCP].sport == 80)
    assert carried < 3000 + 200
    server_fin = next(p for p in packets if p[TCP].sport == 80 and "F" in p[TCP].flags)
    syn_ack = next(p for p in packets if p[TCP].flags == "SA")
    head_len = len(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n")
    # The FIN sits where the whole response would have ended.
    assert (server_fin[TCP].seq - syn_ack[TCP].seq - 1) % 2**32 == head_len + len(body)
    assert packets[0][IP].src == "127.0.0.1"  # no lease yet: the loopback address


@pytest.mark.parametrize("result, code", [
    (FetchResult("not_found", detail="HTTP 404"), 404),
    (FetchResult("denied", detail="HTTP 401"), 401),
    (FetchResult("error", detail="HTTP 500"), 500),
    (FetchResult("ok", b""), 200),
    (FetchResult("error", detail="connection lost"), None),
    (FetchResult("timeout"), None),
])
def test_http_status_of_a_result(result, code):
    assert http_status_code(result) == code


def test_a_broken_connection_ends_in_a_reset_and_a_refused_url_writes_nothing_more():
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    flow = capture.fetch_started(1.0, PHONE_MAC, None, "http://127.0.0.1/a")
    capture.fetch_finished(flow, 2.0, FetchResult("error", detail="connection lost"))
    assert str(frames(sink)[-1][TCP].flags) == "RA"
    before = len(sink.packets)
    flow = capture.fetch_started(1.0, PHONE_MAC, None, "ftp://127.0.0.1/a")
    capture.fetch_finished(flow, 2.0, FetchResult("error"))
    assert flow is None and len(sink.packets) == before


def test_https_shows_the_handshake_and_close_only():
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    flow = capture.fetch_started(1.0, PHONE_MAC, "10.0.0.9", "https://127.0.0.1:8443/a.cfg")
    capture.fetch_finished(flow, 1.5, FetchResult("ok", b"secret"))
    packets = frames(sink)
    assert [str(p[TCP].flags) for p in packets] == ["S", "SA", "A", "FA", "FA", "A"]
    assert all(len(p[TCP].payload) == 0 for p in packets)


def _tftp(packet: Ether) -> bytes:
    return bytes(packet[UDP].payload)


def test_a_tftp_download_is_rrq_oack_and_data_blocks_with_acks():
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    body = b"b" * (pcap.TFTP_BLKSIZE * 2 + 10)
    flow = capture.fetch_started(5.0, PHONE_MAC, "10.30.0.11", "tftp://127.0.0.1:6969/y000000000066.cfg")
    capture.fetch_finished(flow, 5.1, FetchResult("ok", body))
    packets = frames(sink)
    rrq = tftp_wire.decode_request(_tftp(packets[0]))
    assert rrq.filename == "y000000000066.cfg" and rrq.options == {"blksize": "1428", "tsize": "0"}
    assert packets[0][UDP].dport == 6969 and packets[0].src == "00:15:65:aa:00:01"
    assert tftp_wire.decode_oack(_tftp(packets[1])) == {"blksize": "1428", "tsize": str(len(body))}
    transfer_port = packets[1][UDP].sport
    assert transfer_port != 6969 and all(p[UDP].sport == transfer_port or p[UDP].dport == transfer_port
                                         for p in packets[1:])
    assert tftp_wire.decode_ack(_tftp(packets[2])) == 0
    blocks = [tftp_wire.decode_data(_tftp(p)) for p in packets[3::2]]
    assert [number for number, _ in blocks] == [1, 2, 3]
    assert b"".join(chunk for _, chunk in blocks) == body
    assert [tftp_wire.decode_ack(_tftp(p)) for p in packets[4::2]] == [1, 2, 3]


def test_a_long_tftp_transfer_shows_the_first_blocks_and_the_last():
    sink = ListSink()
    capture = PcapCapture(sink=sink, body_limit=pcap.TFTP_BLKSIZE * 3)
    body = b"z" * (pcap.TFTP_BLKSIZE * 50)  # 50 full blocks and an empty 51st
    flow = capture.fetch_started(5.0, PHONE_MAC, None, "tftp://127.0.0.1/fw.rom")
    capture.fetch_finished(flow, 6.0, FetchResult("ok", body))
    numbers = [tftp_wire.decode_data(_tftp(p))[0] for p in frames(sink) if _tftp(p)[:2] == b"\x00\x03"]
    assert numbers == [1, 2, 3, 51]


@pytest.mark.parametrize("status, code", [("not_found", 1), ("denied", 2), ("error", 0)])
def test_a_failed_tftp_download_ends_in_an_error_packet(status, code):
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    flow = capture.fetch_started(5.0, PHONE_MAC, None, "tftp://127.0.0.1/missing.cfg")
    capture.fetch_finished(flow, 5.1, FetchResult(status, detail="TFTP: went wrong"))
    assert tftp_wire.decode_error(_tftp(frames(sink)[-1]))[0] == code


def test_a_timed_out_tftp_download_is_the_request_alone():
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    capture.fetch_finished(capture.fetch_started(5.0, PHONE_MAC, None, "tftp://127.0.0.1/x"), 9.0,
                           FetchResult("timeout"))
    assert len(sink.packets) == 1


def test_the_file_is_a_pcap_scapy_reads_back_and_writes_after_close_are_dropped(tmp_path):
    path = str(tmp_path / "lab.pcap")
    capture = PcapCapture(path)
    message = dhcp.DhcpMessage(op=1, xid=7, chaddr=PHONE_MAC, options={53: b"\x03"})
    capture.dhcp_from_phone(1_700_000_000.125, PHONE_MAC, dhcp.encode(message))
    flow = capture.fetch_started(1_700_000_001.0, PHONE_MAC, "10.30.0.10", "http://127.0.0.1:8080/a")
    capture.close()
    capture.fetch_finished(flow, 1_700_000_002.0, FetchResult("ok", b"late"))  # after close: ignored
    with open(path, "rb") as handle:
        magic, major, minor, _, _, snaplen, linktype = struct.unpack("<IHHiIII", handle.read(24))
    assert (magic, major, minor, linktype) == (0xA1B2C3D4, 2, 4, 1)
    packets = rdpcap(path)
    assert len(packets) == 5  # the DHCP REQUEST, SYN, SYN-ACK, ACK, GET
    assert packets[0][BOOTP].xid == 7 and float(packets[0].time) == pytest.approx(1_700_000_000.125)
    assert b"GET /a HTTP/1.1" in bytes(packets[4][Raw])


def test_an_empty_capture_is_still_a_valid_file(tmp_path):
    path = str(tmp_path / "empty.pcap")
    PcapCapture(path).close()
    assert len(rdpcap(path)) == 0


def test_ephemeral_ports_cycle_within_the_iana_range():
    capture = PcapCapture(sink=ListSink())
    ports = {capture._next_port() for _ in range(20000)}
    assert min(ports) == 49152 and max(ports) == 65535
    assert TCP_RST == 4  # flag values are the wire's

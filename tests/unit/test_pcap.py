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
from labsim.phones.events import Credentials, FetchResult
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
    head_len = len(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
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
    flow = capture.fetch_started(1.0, PHONE_MAC, None, "gopher://127.0.0.1/a")
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


# --- SIP PnP ------------------------------------------------------------------------------

SUBSCRIBE = (b"SUBSCRIBE sip:001565aa0001@224.0.1.75 SIP/2.0\r\nVia: SIP/2.0/UDP 10.30.0.10:5060;branch=z9hG4bKx\r\n"
             b"Call-ID: a@10.30.0.10\r\nCSeq: 1 SUBSCRIBE\r\nContent-Length: 0\r\n\r\n")


def test_the_pnp_group_has_its_rfc_1112_mac():
    assert pcap.multicast_mac("224.0.1.75") == bytes.fromhex("01005e00014b")
    assert pcap.multicast_mac("239.255.255.250") == bytes.fromhex("01005e7ffffa")  # the top bit of 23 is cut


def test_a_subscribe_goes_to_the_pnp_group_from_the_phone_port_with_its_own_bytes():
    sink = ListSink()
    PcapCapture(sink=sink).sip_from_phone(3.0, PHONE_MAC, "10.30.0.10", SUBSCRIBE)
    (packet,) = frames(sink)
    assert packet.src == "00:15:65:aa:00:01" and packet.dst == "01:00:5e:00:01:4b"
    assert (packet[IP].src, packet[IP].dst, packet[UDP].sport, packet[UDP].dport) == ("10.30.0.10", "224.0.1.75",
                                                                                       5060, 5060)
    assert bytes(packet[UDP].payload) == SUBSCRIBE
    _scapy_checksums_agree(bytes(packet))


def test_sip_to_and_from_the_responder_keeps_its_address_and_port():
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    notify = b"NOTIFY sip:10.30.0.10:5060 SIP/2.0\r\nContent-Length: 3\r\n\r\nurl"
    capture.sip_to_phone(3.1, PHONE_MAC, "10.30.0.10", notify, ("127.0.0.5", 47001))
    capture.sip_from_phone(3.2, PHONE_MAC, "10.30.0.10", b"SIP/2.0 200 OK\r\n\r\n", ("127.0.0.5", 47001))
    back, out = frames(sink)
    assert back.src == "02:6c:61:62:00:01" and back.dst == "00:15:65:aa:00:01"
    assert (back[IP].src, back[UDP].sport, back[IP].dst, back[UDP].dport) == ("127.0.0.5", 47001, "10.30.0.10", 5060)
    assert bytes(back[UDP].payload) == notify
    assert out.dst == "02:6c:61:62:00:01"
    assert (out[IP].src, out[UDP].sport, out[IP].dst, out[UDP].dport) == ("10.30.0.10", 5060, "127.0.0.5", 47001)


# --- FTP ----------------------------------------------------------------------------------


def test_ftp_helpers():
    assert pcap.ftp_pasv_reply("127.0.0.1", 49154) == b"227 Entering Passive Mode (127,0,0,1,192,2).\r\n"
    assert pcap.ftp_reply_of(FetchResult("not_found", detail="FTP: 550 No such file.")) == (550, "550 No such file.")
    assert pcap.ftp_reply_of(FetchResult("error", detail="FTP: connection refused")) == (None, "")
    assert pcap.ftp_reply_of(FetchResult("ok", b"x")) == (None, "")


def _connections(packets: list[Ether]) -> dict[tuple[int, int], list[Ether]]:
    """The TCP segments of each connection, keyed by (client port, server port)."""
    by_pair: dict[tuple[int, int], list[Ether]] = {}
    for packet in packets:
        tcp = packet[TCP]
        key = (tcp.sport, tcp.dport) if packet.src == "00:15:65:aa:00:01" else (tcp.dport, tcp.sport)
        by_pair.setdefault(key, []).append(packet)
    return by_pair


def _lines(packets: list[Ether], sport: int) -> list[str]:
    return [bytes(p[TCP].payload).decode().rstrip("\r\n") for p in packets if p[TCP].sport == sport and p[TCP].payload]


def test_an_ftp_download_is_a_control_and_a_data_connection_that_add_up():
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    body = bytes(range(256)) * 30  # 7680 bytes: six segments
    flow = capture.fetch_started(7.0, PHONE_MAC, "10.30.0.12", "ftp://127.0.0.1:2121/cfg/a%20b.cfg",
                                 credentials=Credentials("phone", "s3cret"))
    capture.fetch_finished(flow, 7.5, FetchResult("ok", body))
    packets = frames(sink)
    control_key, data_key = list(_connections(packets))
    assert control_key[1] == 2121
    control, data = _connections(packets)[control_key], _connections(packets)[data_key]
    assert _lines(control, control_key[0]) == ["USER phone", "PASS s3cret", "TYPE I", "PASV", "RETR cfg/a b.cfg", "QUIT"]
    replies = _lines(control, 2121)
    assert [line[:3] for line in replies] == ["220", "331", "230", "200", "227", "150", "226", "221"]
    # The 227 names the data connection's server port; the data there is the file.
    assert replies[4].endswith(f"(127,0,0,1,{data_key[1] >> 8},{data_key[1] & 0xFF}).")
    assert b"".join(bytes(p[TCP].payload) for p in data if p[TCP].sport == data_key[1]) == body
    assert [str(p[TCP].flags) for p in data][:3] == ["S", "SA", "A"]
    assert [str(p[TCP].flags) for p in data][-3:] == ["FA", "FA", "A"] and data[-3][TCP].sport == data_key[1]
    _tcp_stream_is_consistent(control, control_key[0])
    _tcp_stream_is_consistent(data, data_key[0])
    # In time order on the wire: the data connection opens after the 227, the 226 follows its close.
    order = [p[TCP].sport in data_key or p[TCP].dport in data_key for p in packets]
    first_data, last_data = order.index(True), len(order) - 1 - order[::-1].index(True)
    assert b"227 " in bytes(packets[first_data - 1][TCP].payload)
    assert bytes(packets[last_data + 1][TCP].payload).startswith(b"226 ")
    # The login is written when the download starts, the rest when it ends.
    times = [sec + usec / 1e6 for _, sec, usec in sink.packets]
    assert times[:7] == [7.0] * 7 and set(times[7:]) == {7.5}
    assert all(frame.src == "00:15:65:aa:00:01" or frame.dst == "00:15:65:aa:00:01" for frame in packets)


def test_an_anonymous_ftp_download_logs_in_as_the_client_does():
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    capture.fetch_started(1.0, PHONE_MAC, None, "ftp://127.0.0.1/y000000000066.cfg")
    packets = frames(sink)
    assert _lines(packets, packets[0][TCP].sport) == ["USER anonymous", "PASS labsim@"]
    assert packets[0][TCP].dport == 21


def test_a_missing_ftp_file_shows_the_servers_own_550_after_retr():
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    flow = capture.fetch_started(1.0, PHONE_MAC, None, "ftp://127.0.0.1:2121/none.cfg")
    capture.fetch_finished(flow, 1.1, FetchResult("not_found", detail="FTP: 550 none.cfg: No such file or directory."))
    packets = frames(sink)
    control = _connections(packets)[(flow.client_port, 2121)]
    replies = _lines(control, 2121)
    assert "550 none.cfg: No such file or directory." in replies and not any(r.startswith(("150", "226")) for r in replies)
    assert _lines(control, flow.client_port)[-2:] == ["RETR none.cfg", "QUIT"]
    for key, segments in _connections(packets).items():
        _tcp_stream_is_consistent(segments, key[0])
        assert all(len(p[TCP].payload) == 0 for p in segments if key != (flow.client_port, 2121))  # no data


def test_a_refused_ftp_login_shows_the_530_after_pass_and_no_data_connection():
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    flow = capture.fetch_started(1.0, PHONE_MAC, None, "ftp://127.0.0.1:2121/a.cfg", credentials=Credentials("u", "bad"))
    capture.fetch_finished(flow, 1.1, FetchResult("denied", detail="FTP: 530 Login incorrect."))
    packets = frames(sink)
    assert list(_connections(packets)) == [(flow.client_port, 2121)]
    assert _lines(packets, flow.client_port) == ["USER u", "PASS bad", "QUIT"]
    assert [line[:3] for line in _lines(packets, 2121)] == ["220", "331", "530", "221"]
    _tcp_stream_is_consistent(packets, flow.client_port)


@pytest.mark.parametrize("result, last_flags, from_client", [
    (FetchResult("timeout", detail="FTP: no answer"), "RA", True),  # ftp_fetch aborts the connection
    (FetchResult("error", detail="FTP: connection refused"), "RA", False),
])
def test_an_ftp_download_without_a_reply_ends_in_a_reset(result, last_flags, from_client):
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    flow = capture.fetch_started(1.0, PHONE_MAC, None, "ftp://127.0.0.1:2121/a.cfg")
    before = len(sink.packets)
    capture.fetch_finished(flow, 1.1, result)
    (last,) = frames(sink)[before:]
    assert str(last[TCP].flags) == last_flags and (last[TCP].sport == flow.client_port) == from_client


def test_a_refused_ftp_url_writes_nothing_at_its_end():
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    flow = capture.fetch_started(1.0, PHONE_MAC, None, "ftp://127.0.0.1:2121/a.cfg")
    before = len(sink.packets)
    capture.fetch_finished(flow, 1.1, FetchResult("refused", detail="not loopback"))
    assert len(sink.packets) == before


def test_a_long_ftp_file_is_cut_at_the_limit_and_acknowledged_inside_the_window():
    sink = ListSink()
    capture = PcapCapture(sink=sink, body_limit=40 * pcap.MSS)
    body = b"r" * 200_000
    flow = capture.fetch_started(1.0, PHONE_MAC, None, "ftp://127.0.0.1:2121/fw.rom")
    capture.fetch_finished(flow, 2.0, FetchResult("ok", body))
    connections = _connections(frames(sink))
    (data_key,) = [key for key in connections if key[1] != 2121]
    data = connections[data_key]
    carried = [p for p in data if p[TCP].sport == data_key[1] and p[TCP].payload]
    assert sum(len(p[TCP].payload) for p in carried) == 40 * pcap.MSS
    syn_ack = next(p for p in data if p[TCP].flags == "SA")
    server_fin = next(p for p in data if p[TCP].sport == data_key[1] and "F" in p[TCP].flags)
    assert (server_fin[TCP].seq - syn_ack[TCP].seq - 1) % 2**32 == len(body)
    _assert_acked_within_the_window(data, server_port=data_key[1])


def _assert_acked_within_the_window(segments: list[Ether], server_port: int) -> None:
    """The server never has more than ACK_EVERY segments (< 65,535 bytes) unacknowledged."""
    acked, sent = None, None
    for packet in segments:
        tcp = packet[TCP]
        if tcp.sport == server_port:
            sent = tcp.seq + len(tcp.payload)
            if acked is not None:
                assert (sent - acked) % 2**32 <= pcap.ACK_EVERY * pcap.MSS < 65535
        elif "A" in tcp.flags:
            acked = tcp.ack


def test_a_long_http_body_is_acknowledged_inside_the_window_too():
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    flow = capture.fetch_started(1.0, PHONE_MAC, None, "http://127.0.0.1/big")
    capture.fetch_finished(flow, 2.0, FetchResult("ok", b"b" * 60_000))
    packets = frames(sink)
    _assert_acked_within_the_window(packets, server_port=80)
    _tcp_stream_is_consistent(packets, flow.client_port)
    acks = [p for p in packets if p[TCP].sport == flow.client_port and p[TCP].flags == "A"]
    # The handshake's, one after every 16 segments (42 here), the response's, the close's.
    assert len(acks) == 1 + 2 + 1 + 1


# --- uploads ------------------------------------------------------------------------------


def test_an_http_upload_is_a_put_with_its_body_and_an_empty_answer():
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    body = b"0101000000|app|5|00|booted\n" * 200  # 5400 bytes: four segments with the head
    flow = capture.upload_started(20.0, PHONE_MAC, "10.30.0.13", "http://127.0.0.1:8080/uploads/0004f2aa0001-app.log",
                                  body, "FileTransport PolycomVVX-VVX_400-UA/6.4.0")
    capture.upload_finished(flow, 20.25, FetchResult("ok"))
    packets = frames(sink)
    request = b"".join(bytes(p[TCP].payload) for p in packets if p[TCP].dport == 8080)
    head, _, sent = request.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [b"PUT /uploads/0004f2aa0001-app.log HTTP/1.1", b"Host: 127.0.0.1:8080",
                                   b"User-Agent: FileTransport PolycomVVX-VVX_400-UA/6.4.0",
                                   b"Content-Length: 5400", b"Connection: close"]
    assert sent == body
    response = b"".join(bytes(p[TCP].payload) for p in packets if p[TCP].sport == 8080)
    assert response == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    assert [str(p[TCP].flags) for p in packets][-3:] == ["FA", "FA", "A"]
    _tcp_stream_is_consistent(packets, flow.client_port)


@pytest.mark.parametrize("result, code", [(FetchResult("error", detail="HTTP 405"), b"405 Method Not Allowed"),
                                          (FetchResult("denied", detail="HTTP 403"), b"403 Forbidden")])
def test_a_refused_upload_shows_the_servers_status(result, code):
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    flow = capture.upload_started(1.0, PHONE_MAC, None, "http://127.0.0.1/up/a.log", b"log")
    capture.upload_finished(flow, 1.1, result)
    response = b"".join(bytes(p[TCP].payload) for p in frames(sink) if p[TCP].sport == 80)
    assert response.startswith(b"HTTP/1.1 " + code + b"\r\n")


def test_a_long_upload_is_cut_at_the_limit_with_true_sequence_numbers():
    sink = ListSink()
    capture = PcapCapture(sink=sink, body_limit=2000)
    body = b"L" * 50_000
    flow = capture.upload_started(1.0, PHONE_MAC, None, "http://127.0.0.1/up/big.log", body)
    capture.upload_finished(flow, 1.1, FetchResult("ok"))
    packets = frames(sink)
    sent = b"".join(bytes(p[TCP].payload) for p in packets if p[TCP].dport == 80)
    head = sent.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    assert len(sent) == len(head) + 2000
    client_fin = next(p for p in packets if p[TCP].dport == 80 and "F" in p[TCP].flags)
    assert (client_fin[TCP].seq - packets[0][TCP].seq - 1) % 2**32 == len(head) + len(body)


def test_https_and_ftp_uploads_show_no_plaintext():
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    flow = capture.upload_started(1.0, PHONE_MAC, None, "https://127.0.0.1/up/a.log", b"secret log")
    capture.upload_finished(flow, 1.1, FetchResult("ok"))
    assert [str(p[TCP].flags) for p in frames(sink)] == ["S", "SA", "A", "FA", "FA", "A"]


def test_an_ftp_upload_is_stor_with_the_body_from_the_phone_which_closes_first():
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    body = bytes(range(256)) * 30  # 7680 bytes: six segments
    flow = capture.upload_started(2.0, PHONE_MAC, "10.30.0.12", "ftp://127.0.0.1:2121/up/a%20b.log", body,
                                  credentials=Credentials("phone", "s3cret"))
    capture.upload_finished(flow, 2.5, FetchResult("ok"))
    packets = frames(sink)
    control_key, data_key = list(_connections(packets))
    control, data = _connections(packets)[control_key], _connections(packets)[data_key]
    assert _lines(control, control_key[0]) == ["USER phone", "PASS s3cret", "TYPE I", "PASV", "STOR up/a b.log", "QUIT"]
    assert [line[:3] for line in _lines(control, 2121)] == ["220", "331", "230", "200", "227", "150", "226", "221"]
    assert b"".join(bytes(p[TCP].payload) for p in data if p[TCP].sport == data_key[0]) == body
    assert not any(p[TCP].payload for p in data if p[TCP].sport == data_key[1])  # nothing from the server
    assert [str(p[TCP].flags) for p in data][-3:] == ["FA", "FA", "A"] and data[-3][TCP].sport == data_key[0]
    _tcp_stream_is_consistent(control, control_key[0])
    _tcp_stream_is_consistent(data, data_key[0])


def test_a_refused_ftp_upload_shows_the_servers_reply_after_stor():
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    flow = capture.upload_started(1.0, PHONE_MAC, None, "ftp://127.0.0.1:2121/a.log", b"log")
    capture.upload_finished(flow, 1.1, FetchResult("error", detail="FTP: 553 Could not create file."))
    packets = frames(sink)
    client = packets[0][TCP].sport
    assert _lines(packets, client)[-2:] == ["STOR a.log", "QUIT"]
    assert "553 Could not create file." in _lines(packets, 2121)


def test_a_tftp_upload_is_a_wrq_then_data_from_the_phone_and_acks_from_the_server():
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    body = b"w" * (pcap.TFTP_BLKSIZE + 100)
    flow = capture.upload_started(4.0, PHONE_MAC, "10.30.0.14", "tftp://127.0.0.1:6969/logs/0004f2aa0001-app.log", body)
    assert sink.packets == []  # written when it ends: only then is it known that a WRQ left
    capture.upload_finished(flow, 4.5, FetchResult("ok"))
    packets = frames(sink)
    wrq = _tftp(packets[0])
    assert tftp_wire.opcode_of(wrq) == tftp_wire.WRQ
    request = tftp_wire.decode_request(wrq)
    assert request.filename == "logs/0004f2aa0001-app.log" and request.options == {"blksize": "1428",
                                                                                   "tsize": str(len(body))}
    assert packets[0][UDP].dport == 6969 and packets[0].src == "00:15:65:aa:00:01"
    assert sink.packets[0][1:] == (4, 0) and {p[1:] for p in sink.packets[1:]} == {(4, 500000)}
    assert tftp_wire.decode_oack(_tftp(packets[1])) == {"blksize": "1428", "tsize": str(len(body))}
    data = [tftp_wire.decode_data(_tftp(p)) for p in packets[2::2]]
    assert all(p.src == "00:15:65:aa:00:01" for p in packets[2::2])
    assert [n for n, _ in data] == [1, 2] and b"".join(chunk for _, chunk in data) == body
    assert [tftp_wire.decode_ack(_tftp(p)) for p in packets[3::2]] == [1, 2]


def test_a_tftp_upload_no_packet_carried_writes_nothing_and_a_refused_one_its_error():
    sink = ListSink()
    capture = PcapCapture(sink=sink)
    flow = capture.upload_started(1.0, PHONE_MAC, None, "tftp://127.0.0.1/a.log", b"log")
    capture.upload_finished(flow, 1.0, FetchResult("error", detail="tftp:// uploads are not supported"))
    assert sink.packets == []
    flow = capture.upload_started(1.0, PHONE_MAC, None, "tftp://127.0.0.1/a.log", b"log")
    capture.upload_finished(flow, 1.2, FetchResult("denied", detail="TFTP: access violation"))
    wrq, error = frames(sink)
    assert tftp_wire.opcode_of(_tftp(wrq)) == tftp_wire.WRQ
    assert tftp_wire.decode_error(_tftp(error))[0] == tftp_wire.ERR_ACCESS_VIOLATION

"""``--pcap FILE``: a Wireshark-readable capture of the lab's traffic, as the phones see it.

The fleet never owns raw sockets (DHCP goes through a loopback relay, downloads through
ordinary client sockets), so there is nothing to sniff. Instead every DHCP message and
every download is written as synthetic frames: Ethernet with the phone's own MAC,
IPv4, and UDP (DHCP, TFTP) or TCP (HTTP) headers built with ``struct`` (DESIGN.md:
~12.7 µs a packet, against ~400 µs through scapy's layers), into a classic pcap file by
scapy's ``RawPcapWriter``.

What the capture shows, and what it makes up:

- DHCP: the phone's own message (before the relay set ``giaddr``) broadcast from
  0.0.0.0:68 to 255.255.255.255:67, and the server's reply as the relay received it,
  sent to the offered address on port 68. The payload bytes are real; the ports are
  the standard ones whatever the lab's server port was.
- TFTP: the RRQ as the client sends it (``blksize`` 1428, ``tsize``), then at the end of
  the transfer an OACK, ACK 0 and DATA/ACK pairs (or the ERROR). The server's transfer
  port is made up, the file's bytes are real, and only the first ``body_limit`` bytes
  (and the last block) are written, so a firmware image does not fill the disk.
- HTTP: one TCP connection per download (SYN, SYN-ACK, ACK, the GET, the response in
  MSS-sized segments, FIN both ways) with consistent sequence numbers, even though the
  real fetcher keeps connections alive. Authentication round trips are not shown, the
  response headers are reduced to Content-Length, and the body past ``body_limit`` is
  left out (Wireshark reports the gap). HTTPS downloads show only the TCP handshake and
  close: there is no plaintext to show.
- The phone's IP is its leased address once it has one; the server's is the URL's.

The frame builders are plain functions of bytes; ``PcapCapture`` is the only part that
writes a file.
"""

from __future__ import annotations

import re
import struct
from http import HTTPStatus
from ipaddress import IPv4Address
from socket import inet_aton
from urllib.parse import urlsplit

from labsim.wire import tftp as tftp_wire

ETHERTYPE_IPV4 = 0x0800
IPPROTO_TCP, IPPROTO_UDP = 6, 17
LINKTYPE_ETHERNET = 1
BROADCAST_MAC = b"\xff" * 6
# A locally administered MAC ("lab" in ASCII) standing for every server in the lab.
LAB_SERVER_MAC = bytes.fromhex("026c61620001")
DHCP_SERVER_PORT, DHCP_CLIENT_PORT = 67, 68
MSS = 1460
TFTP_BLKSIZE = 1428  # what labsim's TFTP client asks for (transport/loopback.py)
DEFAULT_BODY_LIMIT = 64 * 1024

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10

_ETHERNET = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_TCP = struct.Struct("!HHIIBBHHH")
_PSEUDO = struct.Struct("!4s4sBBH")
_HTTP_CODE = re.compile(r"HTTP (\d{3})")


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``.

    The one's-complement sum of 16-bit words is the big-endian number mod 0xFFFF,
    because 2**16 == 1 (mod 0xFFFF): one ``int.from_bytes`` instead of a Python loop
    over words (~1 µs for a full segment instead of ~40)."""
    if len(data) % 2:
        data += b"\x00"
    number = int.from_bytes(data, "big")
    if number == 0:
        return 0xFFFF
    total = number % 0xFFFF or 0xFFFF
    return 0xFFFF - total


def ipv4_packet(src: bytes, dst: bytes, protocol: int, payload: bytes, ident: int) -> bytes:
    """An IPv4 header (no options, DF set, TTL 64) in front of ``payload``."""
    header = _IPV4.pack(0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, 64, protocol, 0, src, dst)
    return _IPV4.pack(0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, 64, protocol,
                      checksum(header), src, dst) + payload


def udp_datagram(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    length = 8 + len(payload)
    pseudo = _PSEUDO.pack(src, dst, 0, IPPROTO_UDP, length)
    total = checksum(pseudo + _UDP.pack(sport, dport, length, 0) + payload)
    # RFC 768: a computed zero is sent as all ones (zero means "no checksum").
    return _UDP.pack(sport, dport, length, total or 0xFFFF) + payload


def tcp_segment(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
                payload: bytes = b"", window: int = 65535) -> bytes:
    seq &= 0xFFFFFFFF
    ack &= 0xFFFFFFFF
    header = _TCP.pack(sport, dport, seq, ack, 5 << 4, flags, window, 0, 0)
    pseudo = _PSEUDO.pack(src, dst, 0, IPPROTO_TCP, len(header) + len(payload))
    total = checksum(pseudo + header + payload)
    return _TCP.pack(sport, dport, seq, ack, 5 << 4, flags, window, total, 0) + payload


def ethernet_frame(src_mac: bytes, dst_mac: bytes, ip_packet: bytes) -> bytes:
    return _ETHERNET.pack(dst_mac, src_mac, ETHERTYPE_IPV4) + ip_packet


def udp_frame(src_mac: bytes, dst_mac: bytes, src_ip: str, dst_ip: str, sport: int, dport: int,
              payload: bytes, ident: int = 0) -> bytes:
    src, dst = inet_aton(src_ip), inet_aton(dst_ip)
    return ethernet_frame(src_mac, dst_mac, ipv4_packet(src, dst, IPPROTO_UDP,
                                                        udp_datagram(src, dst, sport, dport, payload), ident))


def tcp_frame(src_mac: bytes, dst_mac: bytes, src_ip: str, dst_ip: str, sport: int, dport: int,
              seq: int, ack: int, flags: int, payload: bytes = b"", ident: int = 0) -> bytes:
    src, dst = inet_aton(src_ip), inet_aton(dst_ip)
    return ethernet_frame(src_mac, dst_mac, ipv4_packet(src, dst, IPPROTO_TCP,
                                                        tcp_segment(src, dst, sport, dport, seq, ack, flags, payload),
                                                        ident))


def http_status_code(result) -> int | None:
    """The HTTP status a FetchResult stands for (None: no response arrived)."""
    match = _HTTP_CODE.search(result.detail or "")
    if match:
        return int(match.group(1))
    return {"ok": 200, "not_found": 404, "denied": 403}.get(result.status)


def _ipv4_or(text: str | None, fallback: str) -> str:
    try:
        return str(IPv4Address(text or ""))
    except ValueError:
        return fallback


class _Flow:
    """What ``fetch_started`` wrote, for ``fetch_finished`` to continue."""

    __slots__ = ("scheme", "mac", "client_ip", "server_ip", "client_port", "server_port",
                 "client_seq", "server_seq", "filename")

    def __init__(self, scheme, mac, client_ip, server_ip, client_port, server_port):
        self.scheme = scheme
        self.mac = mac
        self.client_ip = client_ip
        self.server_ip = server_ip
        self.client_port = client_port
        self.server_port = server_port
        self.client_seq = 0
        self.server_seq = 0
        self.filename = ""


class PcapCapture:
    """Writes the lab's traffic to ``path`` as it happens (buffered, flushed on close).

    ``sink`` replaces the file writer in tests: any object with
    ``write_packet(frame, sec=, usec=)`` and ``close()``."""

    def __init__(self, path: str | None = None, *, body_limit: int = DEFAULT_BODY_LIMIT, sink=None):
        if sink is None:
            from scapy.utils import RawPcapWriter  # scapy is slow to import: only when capturing

            sink = RawPcapWriter(path, linktype=LINKTYPE_ETHERNET, sync=False, bufsz=1 << 20)
            sink.write_header(None)  # an empty run still leaves a valid (empty) capture
        self.sink = sink
        self.path = path
        self.body_limit = body_limit
        self.packets = 0
        self._ident = 0
        self._port = 49151
        self._isn = 0x1000

    # --- the plumbing -----------------------------------------------------------------

    def _write(self, t: float, frame: bytes) -> None:
        sec = int(t)
        self.sink.write_packet(frame, sec=sec, usec=int((t - sec) * 1_000_000))
        self.packets += 1

    def _next_ident(self) -> int:
        self._ident = (self._ident + 1) & 0xFFFF
        return self._ident

    def _next_port(self) -> int:
        # Ephemeral ports in the IANA range, reused in turn as a real stack would.
        self._port = 49152 if self._port >= 65535 else self._port + 1
        return self._port

    def _next_isn(self) -> int:
        self._isn = (self._isn * 1103515245 + 12345) & 0xFFFFFFFF
        return self._isn

    def _udp(self, t, src_mac, dst_mac, src_ip, dst_ip, sport, dport, payload) -> None:
        self._write(t, udp_frame(src_mac, dst_mac, src_ip, dst_ip, sport, dport, payload, self._next_ident()))

    def _tcp(self, t, flow: _Flow, from_client: bool, flags: int, payload: bytes = b"") -> None:
        if from_client:
            frame = tcp_frame(flow.mac, LAB_SERVER_MAC, flow.client_ip, flow.server_ip, flow.client_port,
                              flow.server_port, flow.client_seq, flow.server_seq, flags, payload, self._next_ident())
            flow.client_seq += len(payload) + (1 if flags & (TCP_SYN | TCP_FIN) else 0)
        else:
            frame = tcp_frame(LAB_SERVER_MAC, flow.mac, flow.server_ip, flow.client_ip, flow.server_port,
                              flow.client_port, flow.server_seq, flow.client_seq, flags, payload, self._next_ident())
            flow.server_seq += len(payload) + (1 if flags & (TCP_SYN | TCP_FIN) else 0)
        self._write(t, frame)

    # --- DHCP -------------------------------------------------------------------------

    def dhcp_from_phone(self, t: float, mac: bytes, payload: bytes, ciaddr: str = "0.0.0.0") -> None:
        self._udp(t, mac, BROADCAST_MAC, ciaddr, "255.255.255.255", DHCP_CLIENT_PORT, DHCP_SERVER_PORT, payload)

    def dhcp_to_phone(self, t: float, mac: bytes, payload: bytes, server_ip: str | None, yiaddr: str,
                      broadcast: bool = False) -> None:
        to_ip = "255.255.255.255" if broadcast or yiaddr == "0.0.0.0" else yiaddr
        to_mac = BROADCAST_MAC if to_ip == "255.255.255.255" else mac
        self._udp(t, LAB_SERVER_MAC, to_mac, _ipv4_or(server_ip, "127.0.0.1"), to_ip,
                  DHCP_SERVER_PORT, DHCP_CLIENT_PORT, payload)

    # --- downloads --------------------------------------------------------------------

    def fetch_started(self, t: float, mac: bytes, client_ip: str | None, url: str, user_agent: str = "") -> _Flow | None:
        """Writes the request half of a download; returns the flow for ``fetch_finished``
        (None for a URL the capture cannot show)."""
        parts = urlsplit(url)
        scheme = parts.scheme
        default_port = {"http": 80, "https": 443, "tftp": 69}.get(scheme)
        if default_port is None:
            return None
        try:
            port = parts.port or default_port
        except ValueError:
            return None
        flow = _Flow(scheme, mac, _ipv4_or(client_ip, "127.0.0.1"), _ipv4_or(parts.hostname, "127.0.0.1"),
                     self._next_port(), port)
        if scheme == "tftp":
            flow.filename = parts.path.lstrip("/")
            rrq = tftp_wire.encode_rrq(flow.filename, {"blksize": TFTP_BLKSIZE, "tsize": 0})
            self._udp(t, mac, LAB_SERVER_MAC, flow.client_ip, flow.server_ip, flow.client_port, port, rrq)
            return flow
        flow.client_seq, flow.server_seq = self._next_isn(), self._next_isn()
        self._tcp(t, flow, True, TCP_SYN)
        self._tcp(t, flow, False, TCP_SYN | TCP_ACK)
        self._tcp(t, flow, True, TCP_ACK)
        if scheme == "http":
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            request = (f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                       + (f"User-Agent: {user_agent}\r\n" if user_agent else "")
                       + "Connection: keep-alive\r\n\r\n")
            self._tcp(t, flow, True, TCP_PSH | TCP_ACK, request.encode("latin-1", "replace"))
        return flow

    def fetch_finished(self, flow: _Flow | None, t: float, result) -> None:
        if flow is None:
            return
        if flow.scheme == "tftp":
            self._tftp_reply(flow, t, result)
        else:
            self._http_reply(flow, t, result)

    def _tftp_reply(self, flow: _Flow, t: float, result) -> None:
        server_port = self._next_port()  # the server's transfer ID

        def from_server(payload: bytes) -> None:
            self._udp(t, LAB_SERVER_MAC, flow.mac, flow.server_ip, flow.client_ip, server_port, flow.client_port,
                      payload)

        def from_client(payload: bytes) -> None:
            self._udp(t, flow.mac, LAB_SERVER_MAC, flow.client_ip, flow.server_ip, flow.client_port, server_port,
                      payload)

        if result.status == "ok":
            body = result.body or b""
            from_server(tftp_wire.encode_oack({"blksize": TFTP_BLKSIZE, "tsize": len(body)}))
            from_client(tftp_wire.encode_ack(0))
            blocks = len(body) // TFTP_BLKSIZE + 1  # a final short (maybe empty) block ends it
            shown = max(1, self.body_limit // TFTP_BLKSIZE)
            for number in range(1, blocks + 1):
                if number > shown and number != blocks:
                    continue
                wire_block = number % tftp_wire.BLOCK_MODULO
                chunk = body[(number - 1) * TFTP_BLKSIZE: number * TFTP_BLKSIZE]
                from_server(tftp_wire.encode_data(wire_block, chunk))
                from_client(tftp_wire.encode_ack(wire_block))
        elif result.status in ("not_found", "denied", "error"):
            code = {"not_found": tftp_wire.ERR_NOT_FOUND, "denied": tftp_wire.ERR_ACCESS_VIOLATION}.get(
                result.status, tftp_wire.ERR_UNDEFINED)
            # The server's own words are not kept; its standard text for the code is.
            text = None if code != tftp_wire.ERR_UNDEFINED else (result.detail or result.status)[:200]
            from_server(tftp_wire.encode_error(code, text))
        # timeout / refused: the server never answered; the RRQ alone is the truth.

    def _http_reply(self, flow: _Flow, t: float, result) -> None:
        if result.status == "refused":
            return  # refused before any packet left (the URL left the lab)
        code = http_status_code(result) if flow.scheme == "http" else None
        if code is not None:
            body = result.body or b""
            try:
                phrase = HTTPStatus(code).phrase
            except ValueError:
                phrase = "Unknown"
            head = f"HTTP/1.1 {code} {phrase}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            response = head + body[: self.body_limit]
            for start in range(0, len(response), MSS):
                segment = response[start:start + MSS]
                last = start + MSS >= len(response)
                self._tcp(t, flow, False, TCP_ACK | (TCP_PSH if last else 0), segment)
            flow.server_seq += len(body) - len(response) + len(head)  # the part left out
            self._tcp(t, flow, True, TCP_ACK)
        elif flow.scheme == "http" and result.status != "timeout":
            self._tcp(t, flow, False, TCP_RST | TCP_ACK)  # the connection broke
            return
        self._tcp(t, flow, True, TCP_FIN | TCP_ACK)
        self._tcp(t, flow, False, TCP_FIN | TCP_ACK)
        self._tcp(t, flow, True, TCP_ACK)

    def close(self) -> None:
        """Flush and close the file. Downloads that finish afterwards (while the run
        shuts down) are not written: the file is already complete."""
        sink, self.sink = self.sink, _Closed()
        sink.close()


class _Closed:
    def write_packet(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

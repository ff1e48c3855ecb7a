"""``--pcap FILE``: a Wireshark-readable capture of the lab's traffic, as the phones see it.

The fleet never owns raw sockets (DHCP goes through a loopback relay, downloads through
ordinary client sockets), so there is nothing to sniff. Instead every DHCP message, SIP
PnP datagram, download and upload is written as synthetic frames: Ethernet with the
phone's own MAC, IPv4, and UDP (DHCP, SIP, TFTP) or TCP (HTTP, FTP) headers built with
``struct`` (7.6-12.6 µs a frame, against 1.2-1.4 ms through scapy's layers: see
docs/performance.md, "pcap capture"), into a classic pcap file by scapy's ``RawPcapWriter``.

What the capture shows, and what it makes up:

- DHCP: the phone's own message (before the relay set ``giaddr``) broadcast from
  0.0.0.0:68 to 255.255.255.255:67, and the server's reply as the relay received it,
  sent to the offered address on port 68. The payload bytes are real; the ports are
  the standard ones whatever the lab's server port was.
- SIP PnP: every SUBSCRIBE (retransmissions too) and the 200 OK to the NOTIFY exactly as
  the phone sent them, from its address port 5060 (what its Via says) to the PnP group
  224.0.1.75:5060 (MAC 01:00:5e:00:01:4b) — on loopback the fleet sends it unicast to the
  responder instead — or to the address it answered; the responder's 200 OK and NOTIFY
  as the fleet's socket received them (real bytes), from the responder's real address
  and port, to the phone's port 5060.
- TFTP: the RRQ as the client sends it (``blksize`` 1428, ``tsize``), then at the end of
  the transfer an OACK, ACK 0 and DATA/ACK pairs (or the ERROR). The server's transfer
  port is made up, the file's bytes are real, and only the first ``body_limit`` bytes
  (and the last block) are written, so a firmware image does not fill the disk. An
  upload is a WRQ (``tsize`` the body's size), OACK, then DATA from the phone and ACKs
  from the server; it is written when it ends, and only when a WRQ really left (status
  ``ok`` or a ``TFTP:`` detail; a refusal before anything was sent, such as the loopback
  guard's, leaves none).
- HTTP: one TCP connection per download (SYN, SYN-ACK, ACK, the GET, the response in
  MSS-sized segments, FIN both ways) with consistent sequence numbers, even though the
  real fetcher keeps connections alive. Authentication round trips are not shown, the
  response headers are reduced to Content-Length, and the body past ``body_limit`` is
  left out (Wireshark reports the gap). An upload is the same with a PUT carrying the
  body (``Content-Length``) and an empty response: its status is the real one for a
  failure, 200 for success (the fetcher keeps "ok", not 200/201/204). HTTPS shows only
  the TCP handshake and close: there is no plaintext to show.
- FTP: a control connection (220, USER, 331, PASS, 230, TYPE I, 200, PASV, 227, RETR,
  150, 226, QUIT, 221: what ``transport.ftp_fetch``'s client sends) and a data connection
  to the port the 227 names, carrying the file like an HTTP body. The reply texts and
  the data port are made up, except a failure's reply line, which is the server's own
  (550 after RETR; 530 after PASS). The USER and PASS are the real ones (anonymous when
  the request had none): the capture shows what was on the wire. An upload is the same
  with STOR, the body going from the phone, which closes the data connection first.
- DNS: the UDP queries of the fleet's resolver and the replies it took, real bytes, from
  its own MAC (02:6c:61:62:00:02) and one port to the lab's DNS server on port 53,
  whatever its real port. Each phone asks for itself, but every phone's queries leave
  from that one port, so a query does not say which phone asked. A lookup with no
  answer shows as the phone's tries and nothing back. Lookups over TCP (after a
  truncated reply) are not shown. A lease whose option 6 leaves the lab's DNS out shows
  the queries the phone would send those servers, made up (nothing is sent there).
- The phone's IP is its leased address once it has one; the server's is the one the
  request went to: the URL's, or what the lab's DNS gave for its host name. A download
  is written from the moment its request left, so one whose name did not resolve has no
  frames at all (its DNS queries are the story).
- Receivers ACK every ``ACK_EVERY`` full segments, so a long body never fills the
  65,535-byte window Wireshark tracks.

The frame builders are plain functions of bytes; ``PcapCapture`` is the only part that
writes a file.
"""

from __future__ import annotations

import re
import struct
from http import HTTPStatus
from ipaddress import IPv4Address
from socket import inet_aton
from urllib.parse import unquote, urlsplit

from labsim.phones.events import ANONYMOUS
from labsim.wire import tftp as tftp_wire
from labsim.wire.http1 import host_field, request_target
from labsim.wire.sip_pnp import PNP_MULTICAST

ETHERTYPE_IPV4 = 0x0800
IPPROTO_TCP, IPPROTO_UDP = 6, 17
LINKTYPE_ETHERNET = 1
BROADCAST_MAC = b"\xff" * 6
# A locally administered MAC ("lab" in ASCII) standing for every server in the lab.
LAB_SERVER_MAC = bytes.fromhex("026c61620001")
# ... and the fleet's shared DNS resolver (labsim.transport.dns_lookup), "lab" 2.
LAB_RESOLVER_MAC = bytes.fromhex("026c61620002")
DNS_PORT = 53
DHCP_SERVER_PORT, DHCP_CLIENT_PORT = 67, 68
MSS = 1460
TFTP_BLKSIZE = 1428  # what labsim's TFTP client asks for (transport/loopback.py)
DEFAULT_BODY_LIMIT = 64 * 1024
# A receiver ACKs after this many full segments (~23 KB): well inside the 65,535-byte
# window (no window scaling here), so Wireshark never sees the window fill up.
ACK_EVERY = 16
SIP_PORT = 5060  # the phone's SIP port, as its Via and Contact say (phones/phone.py)
# Replies shown right after PASS when a failure quotes them (login refused, service
# closing); any other failing reply is shown after RETR.
FTP_LOGIN_FAILURES = frozenset({530, 421, 332})
DEFAULT_PORTS = {"http": 80, "https": 443, "tftp": 69, "ftp": 21}

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10

_ETHERNET = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_TCP = struct.Struct("!HHIIBBHHH")
_PSEUDO = struct.Struct("!4s4sBBH")
_HTTP_CODE = re.compile(r"HTTP (\d{3})")
_FTP_REPLY = re.compile(r"FTP: (\d{3})([ -].*)?$", re.DOTALL)


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


def multicast_mac(group: str) -> bytes:
    """The Ethernet address of an IPv4 multicast group (RFC 1112 6.4): 01:00:5e and the
    group address's low 23 bits."""
    low = int(IPv4Address(group)) & 0x7FFFFF
    return b"\x01\x00\x5e" + low.to_bytes(3, "big")


PNP_GROUP, PNP_PORT = PNP_MULTICAST
PNP_GROUP_MAC = multicast_mac(PNP_GROUP)  # 01:00:5e:00:01:4b


def ftp_line(text: str) -> bytes:
    """One FTP command or reply line (RFC 959: Telnet end of line, CRLF)."""
    return text.encode("utf-8", "replace") + b"\r\n"


def ftp_pasv_reply(ip: str, port: int) -> bytes:
    """The 227 reply naming the data port: h1,h2,h3,h4,p1,p2 (RFC 959 4.1.2)."""
    return ftp_line(f"227 Entering Passive Mode ({ip.replace('.', ',')},{port >> 8},{port & 0xFF}).")


def ftp_reply_of(result) -> tuple[int | None, str]:
    """The server's own reply line a failed FTP result quotes (``FTP: 550 No such file``),
    as (code, line); (None, "") when it quotes none (a refused or broken connection)."""
    match = _FTP_REPLY.match(result.detail or "")
    if match is None:
        return None, ""
    return int(match.group(1)), result.detail[len("FTP: "):].splitlines()[0]


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


def _tftp_error_code(result) -> int:
    return {"not_found": tftp_wire.ERR_NOT_FOUND, "denied": tftp_wire.ERR_ACCESS_VIOLATION}.get(
        result.status, tftp_wire.ERR_UNDEFINED)


class _Flow:
    """One TCP connection or TFTP exchange being written: what ``*_started`` wrote, for
    ``*_finished`` to continue."""

    __slots__ = ("scheme", "mac", "client_ip", "server_ip", "client_port", "server_port",
                 "client_seq", "server_seq", "filename", "started", "body")

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
        self.started = 0.0
        self.body = b""


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
        self._resolver_port: int | None = None

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

    def _handshake(self, t: float, flow: _Flow) -> None:
        flow.client_seq, flow.server_seq = self._next_isn(), self._next_isn()
        self._tcp(t, flow, True, TCP_SYN)
        self._tcp(t, flow, False, TCP_SYN | TCP_ACK)
        self._tcp(t, flow, True, TCP_ACK)

    def _stream(self, t: float, flow: _Flow, from_client: bool, data: bytes, length: int | None = None) -> None:
        """``data`` from one side in MSS-sized segments, the other side ACKing every
        ``ACK_EVERY``. ``length``: the whole stream's, when ``data`` is only its first
        part; the sender's sequence number then moves past the part left out."""
        for index, start in enumerate(range(0, len(data), MSS)):
            last = start + MSS >= len(data)
            self._tcp(t, flow, from_client, TCP_ACK | (TCP_PSH if last else 0), data[start:start + MSS])
            if not last and (index + 1) % ACK_EVERY == 0:
                self._tcp(t, flow, not from_client, TCP_ACK)
        skipped = (length or 0) - len(data)
        if skipped > 0:
            if from_client:
                flow.client_seq += skipped
            else:
                flow.server_seq += skipped

    def _close(self, t: float, flow: _Flow, client_first: bool = True) -> None:
        self._tcp(t, flow, client_first, TCP_FIN | TCP_ACK)
        self._tcp(t, flow, not client_first, TCP_FIN | TCP_ACK)
        self._tcp(t, flow, client_first, TCP_ACK)

    def _new_flow(self, mac: bytes, client_ip: str | None, url: str, server_ip: str | None = None):
        """(flow, URL parts) for a URL the capture can show, else None. ``server_ip``: the
        address the request went to (what the lab's DNS gave for a host name); None: the
        URL's own address."""
        parts = urlsplit(url)
        default_port = DEFAULT_PORTS.get(parts.scheme)
        if default_port is None:
            return None
        try:
            port = parts.port or default_port
        except ValueError:
            return None
        flow = _Flow(parts.scheme, mac, _ipv4_or(client_ip, "127.0.0.1"),
                     _ipv4_or(server_ip or parts.hostname, "127.0.0.1"), self._next_port(), port)
        return flow, parts

    # --- DHCP -------------------------------------------------------------------------

    def dhcp_from_phone(self, t: float, mac: bytes, payload: bytes, ciaddr: str = "0.0.0.0") -> None:
        self._udp(t, mac, BROADCAST_MAC, ciaddr, "255.255.255.255", DHCP_CLIENT_PORT, DHCP_SERVER_PORT, payload)

    def dhcp_to_phone(self, t: float, mac: bytes, payload: bytes, server_ip: str | None, yiaddr: str,
                      broadcast: bool = False) -> None:
        to_ip = "255.255.255.255" if broadcast or yiaddr == "0.0.0.0" else yiaddr
        to_mac = BROADCAST_MAC if to_ip == "255.255.255.255" else mac
        self._udp(t, LAB_SERVER_MAC, to_mac, _ipv4_or(server_ip, "127.0.0.1"), to_ip,
                  DHCP_SERVER_PORT, DHCP_CLIENT_PORT, payload)

    # --- DNS ------------------------------------------------------------------------

    def dns_datagram(self, t: float, payload: bytes, resolver_ip: str, server_ip: str, *, query: bool) -> None:
        """A UDP query of the fleet's resolver (``query``) or a reply it took for one, with
        its real bytes. Every phone's queries leave from that resolver's one socket, so
        the frames are its own, from one port; the server's port is shown as 53."""
        if self._resolver_port is None:
            self._resolver_port = self._next_port()
        resolver, server = _ipv4_or(resolver_ip, "127.0.0.1"), _ipv4_or(server_ip, "127.0.0.1")
        if query:
            self._udp(t, LAB_RESOLVER_MAC, LAB_SERVER_MAC, resolver, server, self._resolver_port, DNS_PORT, payload)
        else:
            self._udp(t, LAB_SERVER_MAC, LAB_RESOLVER_MAC, server, resolver, DNS_PORT, self._resolver_port, payload)

    # --- SIP PnP ----------------------------------------------------------------------

    def sip_from_phone(self, t: float, mac: bytes, client_ip: str | None, payload: bytes,
                       to: tuple[str, int] | None = None) -> None:
        """A datagram the phone sent: ``to`` None is the PnP group (the SUBSCRIBE)."""
        source = _ipv4_or(client_ip, "127.0.0.1")
        if to is None:
            self._udp(t, mac, PNP_GROUP_MAC, source, PNP_GROUP, SIP_PORT, PNP_PORT, payload)
        else:
            self._udp(t, mac, LAB_SERVER_MAC, source, _ipv4_or(to[0], "127.0.0.1"), SIP_PORT, to[1], payload)

    def sip_to_phone(self, t: float, mac: bytes, client_ip: str | None, payload: bytes,
                     source: tuple[str, int]) -> None:
        """A datagram the phone received from ``source`` (the responder), as received."""
        self._udp(t, LAB_SERVER_MAC, mac, _ipv4_or(source[0], "127.0.0.1"), _ipv4_or(client_ip, "127.0.0.1"),
                  source[1], SIP_PORT, payload)

    # --- downloads --------------------------------------------------------------------

    def fetch_started(self, t: float, mac: bytes, client_ip: str | None, url: str, user_agent: str = "",
                      credentials=None, server_ip: str | None = None) -> _Flow | None:
        """Writes the request half of a download, as it leaves for ``server_ip``; returns
        the flow for ``fetch_finished`` (None for a URL the capture cannot show).
        ``credentials``: an FTP login's."""
        opened = self._new_flow(mac, client_ip, url, server_ip)
        if opened is None:
            return None
        flow, parts = opened
        if flow.scheme == "tftp":
            flow.filename = parts.path.lstrip("/")
            rrq = tftp_wire.encode_rrq(flow.filename, {"blksize": TFTP_BLKSIZE, "tsize": 0})
            self._udp(t, mac, LAB_SERVER_MAC, flow.client_ip, flow.server_ip, flow.client_port, flow.server_port, rrq)
            return flow
        self._handshake(t, flow)
        if flow.scheme == "http":
            request = (f"GET {_target(parts)} HTTP/1.1\r\nHost: {_host(parts)}\r\n"
                       + (f"User-Agent: {user_agent}\r\n" if user_agent else "")
                       + "Connection: close\r\n\r\n")
            self._tcp(t, flow, True, TCP_PSH | TCP_ACK, request.encode("latin-1", "replace"))
        elif flow.scheme == "ftp":
            flow.filename = unquote(parts.path.lstrip("/"))  # as transport.ftp_fetch sends it
            self._ftp_login(t, flow, credentials)
        return flow

    def fetch_finished(self, flow: _Flow | None, t: float, result) -> None:
        if flow is None:
            return
        if flow.scheme == "tftp":
            self._tftp_reply(flow, t, result)
        elif flow.scheme == "ftp":
            self._ftp_reply(flow, t, result)
        else:
            self._http_reply(flow, t, result)

    # --- uploads ----------------------------------------------------------------------

    def upload_started(self, t: float, mac: bytes, client_ip: str | None, url: str, body: bytes,
                       user_agent: str = "", credentials=None, server_ip: str | None = None) -> _Flow | None:
        """Writes the request half of an upload (HTTP PUT, FTP's login; a TFTP WRQ waits
        for its end); returns the flow for ``upload_finished`` (None: nothing to show)."""
        opened = self._new_flow(mac, client_ip, url, server_ip)
        if opened is None:
            return None
        flow, parts = opened
        body = body or b""
        if flow.scheme == "tftp":
            flow.filename, flow.started, flow.body = parts.path.lstrip("/"), t, body
            return flow
        self._handshake(t, flow)
        if flow.scheme == "ftp":
            flow.filename, flow.body = unquote(parts.path.lstrip("/")), body  # as transport.ftp_fetch sends it
            self._ftp_login(t, flow, credentials)
            return flow
        if flow.scheme == "http":
            head = (f"PUT {_target(parts)} HTTP/1.1\r\nHost: {_host(parts)}\r\n"
                    + (f"User-Agent: {user_agent}\r\n" if user_agent else "")
                    + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode("latin-1", "replace")
            self._stream(t, flow, True, head + body[: self.body_limit], len(head) + len(body))
        return flow

    def upload_finished(self, flow: _Flow | None, t: float, result) -> None:
        if flow is None:
            return
        if flow.scheme == "tftp":
            self._tftp_upload(flow, t, result)
        elif flow.scheme == "ftp":
            self._ftp_reply(flow, t, result, upload=True)
        else:
            self._http_reply(flow, t, result)

    # --- TFTP -------------------------------------------------------------------------

    def _tftp_blocks(self, body: bytes, send_data, send_ack) -> None:
        """DATA and ACK for every block shown: the first ``body_limit`` bytes, then the last
        block (a final short, maybe empty, block ends a transfer)."""
        blocks = len(body) // TFTP_BLKSIZE + 1
        shown = max(1, self.body_limit // TFTP_BLKSIZE)
        for number in range(1, blocks + 1):
            if number > shown and number != blocks:
                continue
            wire_block = number % tftp_wire.BLOCK_MODULO
            send_data(tftp_wire.encode_data(wire_block, body[(number - 1) * TFTP_BLKSIZE: number * TFTP_BLKSIZE]))
            send_ack(tftp_wire.encode_ack(wire_block))

    def _tftp_endpoints(self, flow: _Flow, t: float):
        server_port = self._next_port()  # the server's transfer ID

        def from_server(payload: bytes) -> None:
            self._udp(t, LAB_SERVER_MAC, flow.mac, flow.server_ip, flow.client_ip, server_port, flow.client_port,
                      payload)

        def from_client(payload: bytes) -> None:
            self._udp(t, flow.mac, LAB_SERVER_MAC, flow.client_ip, flow.server_ip, flow.client_port, server_port,
                      payload)

        return from_server, from_client

    def _tftp_error(self, result, from_server) -> None:
        code = _tftp_error_code(result)
        # The server's own words are not kept; its standard text for the code is.
        text = None if code != tftp_wire.ERR_UNDEFINED else (result.detail or result.status)[:200]
        from_server(tftp_wire.encode_error(code, text))

    def _tftp_reply(self, flow: _Flow, t: float, result) -> None:
        from_server, from_client = self._tftp_endpoints(flow, t)
        if result.status == "ok":
            body = result.body or b""
            from_server(tftp_wire.encode_oack({"blksize": TFTP_BLKSIZE, "tsize": len(body)}))
            from_client(tftp_wire.encode_ack(0))
            self._tftp_blocks(body, from_server, from_client)
        elif result.status in ("not_found", "denied", "error"):
            self._tftp_error(result, from_server)
        # timeout / refused: the server never answered; the RRQ alone is the truth.

    def _tftp_upload(self, flow: _Flow, t: float, result) -> None:
        if result.status != "ok" and not (result.detail or "").startswith("TFTP"):
            return  # answered without a packet leaving (labsim's networks: "not supported")
        wrq = tftp_wire.encode_request(tftp_wire.WRQ, flow.filename, "octet",
                                       {"blksize": TFTP_BLKSIZE, "tsize": len(flow.body)})
        self._udp(flow.started, flow.mac, LAB_SERVER_MAC, flow.client_ip, flow.server_ip, flow.client_port,
                  flow.server_port, wrq)
        from_server, from_client = self._tftp_endpoints(flow, t)
        if result.status == "ok":
            # RFC 2347: the OACK to a WRQ is acknowledged by DATA 1.
            from_server(tftp_wire.encode_oack({"blksize": TFTP_BLKSIZE, "tsize": len(flow.body)}))
            self._tftp_blocks(flow.body, from_client, from_server)
        elif result.status in ("not_found", "denied", "error"):
            self._tftp_error(result, from_server)

    # --- HTTP -------------------------------------------------------------------------

    def _http_reply(self, flow: _Flow, t: float, result) -> None:
        if result.status == "refused":
            return  # refused before any packet left (the URL left the lab)
        code = http_status_code(result) if flow.scheme == "http" else None
        if code is not None:
            body = result.body or b""  # an upload's answer: none
            try:
                phrase = HTTPStatus(code).phrase
            except ValueError:
                phrase = "Unknown"
            head = f"HTTP/1.1 {code} {phrase}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            self._stream(t, flow, False, head + body[: self.body_limit], len(head) + len(body))
            self._tcp(t, flow, True, TCP_ACK)
        elif flow.scheme == "http" and result.status != "timeout":
            self._tcp(t, flow, False, TCP_RST | TCP_ACK)  # the connection broke
            return
        self._close(t, flow)

    # --- FTP --------------------------------------------------------------------------

    def _ftp(self, t: float, flow: _Flow, from_client: bool, line: str | bytes) -> None:
        self._tcp(t, flow, from_client, TCP_PSH | TCP_ACK, line if isinstance(line, bytes) else ftp_line(line))

    def _ftp_login(self, t: float, flow: _Flow, credentials) -> None:
        user, password = (credentials.user, credentials.password) if credentials is not None else ANONYMOUS
        self._ftp(t, flow, False, "220 Service ready for new user.")
        self._ftp(t, flow, True, f"USER {user}")
        self._ftp(t, flow, False, "331 User name okay, need password.")
        self._ftp(t, flow, True, f"PASS {password}")

    def _ftp_reply(self, flow: _Flow, t: float, result, upload: bool = False) -> None:
        """The rest of an FTP exchange: RETR and the file from the server, or (``upload``)
        STOR and ``flow.body`` from the phone, which ends it by closing the data connection."""
        if result.status == "refused":
            return  # refused before any packet left (the URL left the lab)
        if result.status == "timeout":
            self._tcp(t, flow, True, TCP_RST | TCP_ACK)  # the client gives up: ftp_fetch aborts the connection
            return
        code, line = ftp_reply_of(result)
        if result.status != "ok" and code is None:
            self._tcp(t, flow, False, TCP_RST | TCP_ACK)  # refused or broken, no reply to show
            return
        if code in FTP_LOGIN_FAILURES:
            self._ftp(t, flow, False, line)
            self._ftp_quit(t, flow)
            return
        self._ftp(t, flow, False, "230 User logged in, proceed.")
        self._ftp(t, flow, True, "TYPE I")
        self._ftp(t, flow, False, "200 Type set to I.")
        self._ftp(t, flow, True, "PASV")
        data = _Flow("ftp-data", flow.mac, flow.client_ip, flow.server_ip, self._next_port(), self._next_port())
        self._ftp(t, flow, False, ftp_pasv_reply(flow.server_ip, data.server_port))
        self._handshake(t, data)
        self._ftp(t, flow, True, f"{'STOR' if upload else 'RETR'} {flow.filename}")
        if result.status == "ok":
            body = (flow.body if upload else result.body) or b""
            self._ftp(t, flow, False, f"150 Opening BINARY mode data connection for {flow.filename} "
                                      f"({len(body)} bytes).")
            # The sender ends the file by closing: the server for RETR, the phone for STOR.
            self._stream(t, data, upload, body[: self.body_limit], len(body))
            if body:
                self._tcp(t, data, not upload, TCP_ACK)
            self._close(t, data, client_first=upload)
            self._ftp(t, flow, False, "226 Transfer complete.")
        else:
            self._ftp(t, flow, False, line)
            self._close(t, data, client_first=False)
        self._ftp_quit(t, flow)

    def _ftp_quit(self, t: float, flow: _Flow) -> None:
        self._ftp(t, flow, True, "QUIT")
        self._ftp(t, flow, False, "221 Goodbye.")
        self._close(t, flow)

    def flush(self) -> None:
        """Write what is buffered, and keep capturing (a lab the dashboard keeps open)."""
        flush = getattr(self.sink, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        """Flush and close the file. Exchanges that finish afterwards (while the run
        shuts down) are not written: the file is already complete."""
        sink, self.sink = self.sink, _Closed()
        sink.close()


def _target(parts) -> str:
    """The request target of an HTTP URL as the phones' client sends it: its path and
    query, percent-encoded beyond ASCII (wire.http1.request_target)."""
    return request_target(parts)[1].decode("ascii")


def _host(parts) -> str:
    """The Host field as the phones' client sends it: an IDNA name (wire.http1.host_field)."""
    authority = parts.netloc.rsplit("@", 1)[-1]
    try:
        return host_field(authority).decode("ascii")
    except UnicodeError:  # no request is made for such a name; drawn as written
        return authority


class _Closed:
    def write_packet(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass

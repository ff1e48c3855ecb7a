"""Every decoder a client can reach, as fuzz targets: a hypothesis strategy for the input
and a check that feeds it to labsim's own code and says what must hold.

Inputs are half raw bytes, half valid messages with random edits (bytes flipped, cut,
inserted, spliced), so the fuzzer gets past the first length check as often as it fails
it. A target "crashes" when its check raises: an exception the code should have turned
into an answer (or silence), or an answer that breaks the protocol's own rules.

Used by ``tests/fuzz/test_fuzz.py`` (a fixed small budget in the suite) and
``scripts/fuzz --minutes N`` (long runs, counted).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import struct
import tempfile
from dataclasses import dataclass
from typing import Callable

from hypothesis import strategies as st

def _served_folder(prefix: str) -> str:
    """A folder for a target's server to serve, deleted when the process ends (a target
    lives as long as the fuzzing that calls it)."""
    root = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, root, True)
    return root


# --- inputs: raw bytes, or a seed message with random edits ---------------------------------


@st.composite
def _edited(draw, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(("flip", "cut", "insert", "splice", "byte")))
        at = draw(st.integers(0, len(data))) if data else 0
        if kind == "flip" and data:
            at = min(at, len(data) - 1)
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and data:
            at = min(at, len(data) - 1)
            data[at] = draw(st.sampled_from((0, 0xFF, 0x7F, 0x80, 0x0A, 0x0D, 0x20, 0x3A, 0x25)))
        elif kind == "cut":
            del data[at: at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "splice":
            other = draw(st.sampled_from(seeds))
            data[at:] = other[draw(st.integers(0, len(other))):]
    return bytes(data)


def inputs(seeds: list[bytes], max_size: int = 2048) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=max_size), _edited(seeds))


def random_input(rng, seeds: list[bytes], max_size: int) -> bytes:
    """The same two kinds of input as ``inputs``, drawn with ``random.Random`` for long
    runs: hypothesis spends ~4 ms an input on its own bookkeeping here, this ~20 µs."""
    if rng.random() < 0.5:
        return rng.randbytes(rng.randint(0, max_size))
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(0, 6)):
        kind = rng.choice(("flip", "cut", "insert", "splice", "byte"))
        at = rng.randint(0, len(data)) if data else 0
        if kind == "flip" and data:
            data[min(at, len(data) - 1)] ^= 1 << rng.randint(0, 7)
        elif kind == "byte" and data:
            data[min(at, len(data) - 1)] = rng.choice((0, 0xFF, 0x7F, 0x80, 0x0A, 0x0D, 0x20, 0x3A, 0x25))
        elif kind == "cut":
            del data[at: at + rng.randint(1, 64)]
        elif kind == "insert":
            data[at:at] = rng.randbytes(rng.randint(1, 64))
        elif kind == "splice":
            other = rng.choice(seeds)
            data[at:] = other[rng.randint(0, len(other)):]
    return bytes(data)


# --- DHCP: the codec and the server core -------------------------------------------------------


def _dhcp_target():
    from labsim.services.dhcp import DhcpServer, DhcpServerConfig
    from labsim.wire import dhcp

    server = DhcpServer(DhcpServerConfig(server_id="10.1.0.1", subnet="10.1.0.0/24", pool_start="10.1.0.10",
                                         pool_end="10.1.0.250"))
    seeds = []
    for mtype in (dhcp.DISCOVER, dhcp.REQUEST, dhcp.RELEASE, dhcp.INFORM, dhcp.DECLINE):
        message = dhcp.DhcpMessage(op=1, xid=0x1234, chaddr=bytes.fromhex("001565aa0001"), giaddr="127.0.0.2",
                                   hops=1, options={53: bytes([mtype]), 60: b"yealink", 55: bytes([1, 3, 6, 66]),
                                                    50: bytes([10, 1, 0, 20]), 54: bytes([10, 1, 0, 1]),
                                                    82: b"\x01\x04abcd"})
        seeds.append(dhcp.encode(message))
    clock = [0.0]

    def check(data: bytes) -> None:
        try:
            message = dhcp.decode(data)
        except dhcp.DhcpDecodeError:
            return
        clock[0] += 1.0
        for reply in server.handle(message, clock[0]):
            dhcp.decode(dhcp.encode(reply.message))  # what we send must decode again

    return seeds, 1500, check


# --- TFTP: requests on the server port, and datagrams into a running transfer ---------------------


def _tftp_target():
    from labsim.services.tftp import TftpServerConfig
    from labsim.services.tftp_udp import DiskTftpRequestHandler
    from labsim.wire import tftp as wire

    root = _served_folder("labsim-fuzz-tftp-")
    os.makedirs(os.path.join(root, "sub"))
    with open(os.path.join(root, "phone.cfg"), "wb") as handle:
        handle.write(b"x" * 3000)
    handler = DiskTftpRequestHandler(TftpServerConfig(root=root, uploads=True))
    peer = ("127.0.0.1", 40000)
    seeds = [wire.encode_rrq("phone.cfg"), wire.encode_rrq("phone.cfg", {"blksize": 1024, "tsize": 0, "windowsize": 4}),
             b"\x00\x02uploads/x.log\x00octet\x00tsize\x005\x00", wire.encode_ack(1), wire.encode_data(1, b"hello"),
             wire.encode_error(0, "x")]

    def check(data: bytes) -> None:
        split = data.find(b"\xff\xfe")  # the rest, if any, goes to the transfer the first part starts
        first, rest = (data, b"") if split < 0 else (data[:split], data[split + 2:])
        outcome = handler.handle(first, peer)
        start = getattr(outcome, "start", None)
        if start is None:
            return
        start()
        for piece in rest.split(b"\xff\xfe"):
            outcome.datagram_received(piece, peer)
        outcome.timer_expired()

    return (seeds + [s + b"\xff\xfe" + wire.encode_ack(1) for s in seeds[:3]]
            + [seeds[2] + b"\xff\xfe" + wire.encode_data(1, b"hi")]), 2048, check


# --- DNS: one answerer over UDP, and the TCP stream's framing --------------------------------


def _answerer():
    from labsim.wire.dns_records import DnsAnswerer, DnsRecordConfig, Zone

    return DnsAnswerer(Zone([DnsRecordConfig("prov.lab", "A", "127.0.0.1", 60),
                             DnsRecordConfig("prov.lab", "TXT", "x" * 200, 60),
                             DnsRecordConfig("www.lab", "CNAME", "prov.lab", 60),
                             DnsRecordConfig("_http._tcp.lab", "SRV", "10 5 8080 prov.lab", 60),
                             DnsRecordConfig("lab", "SOA", "ns.lab hostmaster.lab 1 3600 600 86400 30", 60)]))


def _dns_seeds() -> list[bytes]:
    from dnslib import EDNS0, DNSRecord

    seeds = [bytes(DNSRecord.question(name, qtype).pack())
             for name, qtype in (("prov.lab", "A"), ("www.lab", "A"), ("_http._tcp.lab", "SRV"), ("x.lab", "AAAA"))]
    with_edns = DNSRecord.question("prov.lab", "TXT")
    with_edns.add_ar(EDNS0(udp_len=4096, flags="do"))
    return seeds + [bytes(with_edns.pack())]


def _dns_udp_target():
    from dnslib import DNSRecord

    answerer = _answerer()

    def check(data: bytes) -> None:
        errors = answerer.stats.malformed
        reply = answerer.handle(data)
        if reply is None:
            return
        assert reply[:2] == data[:2], "the reply carries the query's ID"
        assert len(reply) <= 1232, "a UDP reply fits the EDNS limit"
        DNSRecord.parse(reply)  # what we send must parse
        assert answerer.stats.malformed == errors

    return _dns_seeds(), 600, check


def _dns_tcp_target():
    from labsim.wire.dns_records import DnsTcpSession

    answerer = _answerer()
    seeds = [struct.pack("!H", len(q)) + q for q in _dns_seeds()]
    seeds.append(b"".join(seeds))

    def check(data: bytes) -> None:
        session = DnsTcpSession(answerer)
        out = b""
        for start in range(0, len(data), 7):  # a stream arrives in pieces
            sent, close = session.received(data[start:start + 7])
            out += sent
            if close:
                break
        while out:  # every answer is one whole length-prefixed message
            (length,) = struct.unpack("!H", out[:2])
            assert len(out) >= 2 + length, "a frame cut short"
            out = out[2 + length:]

    return seeds, 3000, check


# --- SIP PnP: the parser and the responder ------------------------------------------------------


def _sip_target():
    from labsim.services.pnp import PnpResponder, PnpResponderConfig
    from labsim.wire import sip_pnp

    responder = PnpResponder(PnpResponderConfig(url="http://127.0.0.1/{mac}.cfg"))
    subscribe = sip_pnp.build_subscribe(mac="001565aa0001", vendor="Yealink", model="T46S", version="66.85.0.5",
                                        local=("127.0.0.1", 5060), call_id="c1", tag="t1", branch="z9hG4bK1")
    seeds = [subscribe.encode(), b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx\r\nCSeq: 1 NOTIFY\r\n"
             b"Call-ID: c\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nContent-Length: 0\r\n\r\n"]

    def check(data: bytes) -> None:
        try:
            sip_pnp.parse(data)
        except sip_pnp.SipParseError:
            pass
        for reply, _ in responder.handle(data, ("127.0.0.1", 5060)):
            sip_pnp.parse(reply)  # what we send must parse

    return seeds, 3000, check


# --- HTTP/1.1 requests, through twisted.web into labsim's site -----------------------------------


def _http_target():
    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from labsim.services.http import HttpAuthenticator, HttpAuthRule, HttpServerConfig
    from labsim.services.http_static import StaticRoot
    from labsim.services.http_web import ProvisioningSite

    root = _served_folder("labsim-fuzz-http-")
    with open(os.path.join(root, "a.cfg"), "wb") as handle:
        handle.write(b"a = 1\n" * 100)
    clock = Clock()
    config = HttpServerConfig(root=root, uploads=True, directory_listing=True,
                              auth=[HttpAuthRule("/secret/*", "digest", {"u": "p"}, "lab")])
    site = ProvisioningSite(StaticRoot(config, HttpAuthenticator(config.auth, clock.seconds)), clock, 100)
    site.resource.stats = site.stats
    seeds = [b"GET /a.cfg HTTP/1.1\r\nHost: x\r\nRange: bytes=0-10,20-\r\nIf-None-Match: \"x\"\r\n\r\n",
             b"PUT /uploads/x.log HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
             b"GET /secret/a HTTP/1.1\r\nHost: x\r\nAuthorization: Digest username=\"u\", realm=\"lab\", "
             b"nonce=\"n\", uri=\"/secret/a\", response=\"r\", qop=auth, nc=00000001, cnonce=\"c\"\r\n\r\n",
             b"HEAD / HTTP/1.0\r\n\r\nGET /a.cfg HTTP/1.1\r\nHost: y\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"]

    def check(data: bytes) -> None:
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(data)
        clock.advance(1)
        out = transport.value()
        assert b" 500 " not in out.split(b"\r\n", 1)[0], "an exception in labsim's code became a 500"
        assert not out or out.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), out[:40]
        channel.connectionLost(None)

    return seeds, 3000, check


# --- FTP command lines, into labsim's pyftpdlib handler -------------------------------------------


def _ftp_target():
    from twisted.internet.task import Clock

    from labsim.services.ftp import FtpServerConfig, handler_class, new_stats

    root = _served_folder("labsim-fuzz-ftp-")
    os.makedirs(os.path.join(root, "uploads"))
    with open(os.path.join(root, "a.cfg"), "wb") as handle:
        handle.write(b"a = 1\n")
    os.symlink("/etc", os.path.join(root, "outside"))
    config = FtpServerConfig(root=root, users={"phone": "secret"}, anonymous=True, uploads=True)
    handler_type = handler_class(config, Clock(), new_stats())

    class _Server:  # what the handler asks of its server
        ip_map: list = []
        max_cons = max_cons_per_ip = 0

    seeds = [b"USER anonymous\r\nPASS x\r\nCWD /uploads\r\nPWD\r\nSIZE ../a.cfg\r\nMDTM /a.cfg\r\nTYPE I\r\n",
             b"USER phone\r\nPASS secret\r\nMLST a.cfg\r\nOPTS MLST type;unix.mode;\r\nSTAT /outside\r\nNOOP\r\n",
             b"USER phone\r\nPASS wrong\r\nSITE HELP\r\nFEAT\r\nHELP\r\nREST 10\r\nMODE S\r\nSTRU F\r\nALLO 5\r\n"]

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def check(data: bytes) -> None:
        theirs = socket.create_connection(listener.getsockname())  # the handler wants a TCP peer
        ours, _ = listener.accept()
        try:
            from pyftpdlib.ioloop import Epoll

            ioloop = Epoll()
            handler = handler_type(ours, _Server(), ioloop=ioloop)
            handler.handle()
            for line in data.split(b"\r\n")[:-1] if b"\r\n" in data else [data]:
                if handler._closed:
                    break
                handler.collect_incoming_data(line)
                handler.found_terminator()
            handler.close()
            ioloop.close()
        finally:
            theirs.close()
            ours.close()

    return seeds, 4096, check


# --- the scenario loader ---------------------------------------------------------------------------


def _scenario_target():
    from labsim.scenario.loader import ScenarioError, parse_scenario_text

    here = os.path.join(os.path.dirname(__file__), "..", "..", "scenarios")
    seeds = []
    for name in sorted(os.listdir(here)):
        if name.endswith(".yaml"):
            with open(os.path.join(here, name), "rb") as handle:
                seeds.append(handle.read())

    from labsim.scenario.name_lookup import lookup_notes
    from labsim.scenario.yaml_marks import load_marked

    def check(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        try:
            scenario = parse_scenario_text(text, "fuzz.yaml")
        except ScenarioError as exc:
            assert exc.problems and all(str(problem) for problem in exc.problems)
            return
        # A valid file: what labsim notes before a run reads its raw data too.
        raw = load_marked(text).data
        for path, note in lookup_notes(raw if isinstance(raw, dict) else {}, scenario):
            assert path and note

    return seeds, 8192, check


# --- what servers send the phones' clients ------------------------------------------------


def _frames(data: bytes) -> list[bytes]:
    """An input as a run of datagrams: each a length byte, then that many bytes."""
    frames, at = [], 0
    while at < len(data):
        length = data[at]
        frames.append(data[at + 1:at + 1 + length])
        at += 1 + length
    return frames


def _framed(*frames: bytes) -> bytes:
    return b"".join(bytes([len(frame)]) + frame for frame in frames)


def _phone_tftp_target():
    """Datagrams from a TFTP server (and from strangers) to a phone's download and upload
    sessions, with timers between them. What must hold: no exception, every datagram the
    session sends is a TFTP packet that decodes, and a finished download's result is the
    blocks it acknowledged."""
    from labsim.transport.tftp_client import TftpReadSession, TftpWriteSession
    from labsim.wire import tftp as wire

    server, tid = ("127.0.0.1", 69), ("127.0.0.1", 40001)
    seeds = [
        b"\x00" + _framed(wire.encode_oack({"blksize": "16", "tsize": "20"}), wire.encode_data(1, b"a" * 16),
                          wire.encode_data(2, b"b" * 4)),
        b"\x00" + _framed(wire.encode_oack({"blksize": "16"}), wire.encode_data(1, b"x" * 16),
                          wire.encode_data(1, b"x" * 16), wire.encode_data(2, b"")),
        b"\x00" + _framed(wire.encode_error(1, "File not found")),
        b"\x01" + _framed(wire.encode_oack({"blksize": "16"}), wire.encode_ack(1), wire.encode_ack(2), wire.encode_ack(2)),
        b"\x01" + _framed(wire.encode_ack(0), wire.encode_ack(1), wire.encode_error(3, "Disk full")),
    ]

    def check(data: bytes) -> None:
        if not data:
            return
        if data[0] % 2:
            session = TftpWriteSession(server, "up.log", b"u" * 40, blksize=16, timeout_s=1.0, max_retransmits=3)
        else:
            session = TftpReadSession(server, "f.cfg", blksize=16, tsize=True, timeout_s=1.0, max_retransmits=3)
        steps = [session.start()]
        for index, frame in enumerate(_frames(data[1:])):
            source = tid if index % 7 else ("127.0.0.1", 40000 + index % 3)  # now and then a stranger
            steps.append(session.datagram_received(frame, source))
            if index % 5 == 4:
                steps.append(session.timer_expired())
            if session.finished:
                steps.append(session.after_finish(frame, source))
        for step in steps:
            for packet, _ in step.send:
                assert wire.opcode_of(packet) is not None, packet
        if isinstance(session, TftpReadSession) and session.result is not None:
            assert session.error is None

    return seeds, 1500, check


def _http_response_target():
    """Bytes a server sends on a phone's HTTP connection, in pieces, to the response parser
    (after a GET, a HEAD and a GET), then the server closing. Only ``HttpParseError``, and
    every response it gives out has a status from 100 to 999 and a body of bytes."""
    from labsim.wire.http1 import HttpParseError, ResponseParser

    seeds = [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"a\"\r\n\r\nhelloHTTP/1.1 200 OK\r\n"
             b"Content-Length: 9\r\n\r\nHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n",
             b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nConnection: close\r\n\r\nuntil the end",
             b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"lab\", nonce=\"n\", qop=\"auth\"\r\n"
             b"Content-Length: 0\r\n\r\n"]

    def check(data: bytes) -> None:
        parser = ResponseParser(max_body_size=1 << 16)
        for method in (b"GET", b"HEAD", b"GET"):
            parser.expect(method)
        responses = []
        try:
            for at in range(0, len(data), 7):
                responses += parser.feed(data[at:at + 7])
            last = parser.eof()
            if last is not None:
                responses.append(last)
        except HttpParseError:
            pass
        for response in responses:
            assert 100 <= response.status <= 999 and isinstance(response.body, bytes), response

    return seeds, 2048, check


# --- the files a phone downloads, through its vendor's procedure ----------------------------


class _EveryPath(dict):
    """A server's files where every path not named holds the same body: whatever file the
    phone asks for (its common file, its own, the files those name, firmware) is the input."""

    def __init__(self, body: bytes, named: dict[str, bytes]):
        super().__init__(named)
        self.body = body

    def get(self, path, default=None):
        return super().get(path, self.body)


# The phones the phone targets boot: one a vendor, and a second where a vendor's families
# differ ("cisco-mpp": its Resync_Trigger_* hold resyncs back); the name before "-" is the vendor.
PHONE_MODELS = {"yealink": ("T46S", "00:15:65:13:ae:0b"), "cisco": ("SPA504G", "00:0e:08:ab:cd:ef"),
                "cisco-mpp": ("CP-7841-3PCC", "00:56:2b:ab:cd:ef"),
                "polycom": ("VVX400", "00:04:f2:ab:cd:ef"), "grandstream": ("GXP2170", "00:0b:82:ab:cd:ef"),
                "snom": ("D785", "00:04:13:ab:cd:ef"), "avaya": ("1220", "00:17:65:fd:bf:1d")}


def _phone_config_seeds() -> dict[str, list[bytes]]:
    """Per vendor, files with the settings its procedure reads: timers, windows, zones and
    summer time, servers, firmware, resources."""
    from labsim.wire import avaya_cfg, cisco_cfg, grandstream_cfg, polycom_cfg, snom_cfg, yealink_cfg

    url = "http://127.0.0.1:8080/"
    return {
        "yealink": [yealink_cfg.render({
            "static.auto_provision.repeat.enable": "1", "static.auto_provision.repeat.minutes": "60",
            "static.auto_provision.weekly.enable": "1", "static.auto_provision.weekly.dayofweek": "0123456",
            "static.auto_provision.weekly.begin_time": "02:00", "static.auto_provision.weekly.end_time": "03:00",
            "static.auto_provision.weekly_upgrade_interval": "2",
            "static.auto_provision.server.url": url, "static.auto_provision.attempt_before_failed": "2",
            "static.auto_provision.dhcp_option.list_user_options": "160,66", "static.firmware.url": url + "66.86.0.15.rom",
            "local_time.time_zone": "+1", "local_time.time_zone_name": "Germany(Berlin)", "local_time.summer_time": "1",
            "local_time.dst_time_type": "1", "local_time.start_time": "3/5/7/2", "local_time.end_time": "10/5/7/3",
            "auto_dst.url": "AutoDST.xml", "ringtone.url": "Ring1.wav", "static.network.vlan.internet_port_enable": "0",
            "static.auto_provision.flexible.enable": "1", "static.auto_provision.flexible.interval": "3",
            "static.auto_provision.flexible.begin_time": "23:00", "static.auto_provision.flexible.end_time": "01:00"}),
            b'<DSTData><DST szTime="+1" szZone="A(B)" iType="1" szStart="3/5/7/2" szEnd="10/5/7/3" szOffset="60"/>'
            b'</DSTData>'],
        "cisco": [cisco_cfg.render_xml({
            "Profile_Rule": url + "spa$PSN.xml", "Profile_Rule_B": "tftp://127.0.0.1/$MA.cfg", "Resync_Periodic": "3600",
            "Resync_Random_Delay": "60", "Resync_At": "0300", "Resync_At_Random_Delay": "600", "Time_Zone": "GMT+01:00",
            "Daylight_Saving_Time_Enable": "Yes", "Daylight_Saving_Time_Rule": "start=3/-1/7/2;end=10/-1/7/3;save=1",
            "Resync_Error_Retry_Delay": "60", "DHCP_Option_To_Use": "66,160,159,150", "Upgrade_Enable": "Yes",
            "Upgrade_Rule": url + "spa-7-6-2.bin"}),
                  # a rule's alternatives, conditions and assignments; schedules (wire.cisco_rules)
                  cisco_cfg.render_xml({
            "Profile_Rule": f'( $SWVER ge 7.6.0 and "$PN" ne "SPA303" )? ( a = "x$(MAU:4)" ; b = "1" ; )! '
                            f'{url}$GPP_A.xml | ( ! 7.5.0 )? {url}old.xml | [--uid u --pwd p] {url}spa$PSN.xml',
            "Resync_Periodic": "3600+600", "Resync_Error_Retry_Delay": "30+10,60,120+30", "Upgrade_Enable": "Yes",
            "Upgrade_Rule": f"( $SWVER lt 7.6.2(c) )? {url}spa-7-6-2c.bin",
            "Upgrade_Error_Retry_Delay": "600,1800+60",
            # the input decrypted with a key (wire.cisco_crypt): every path serves it
            "Profile_Rule_C": f'[--key "Secret $MA"] {url}c.cfg'})],
        # the MPP phone: triggers on the guides' timers hold resyncs back; the upgrade's retries go on
        "cisco-mpp": [cisco_cfg.render_xml({
            "Resync_Periodic": "600", "Resync_Trigger_1": "$PRVTMR ge 90000 and $REGTMR1 eq 0",
            "Resync_Trigger_2": "( $UPGTMR gt 100000 )", "Resync_At": "0200", "Upgrade_Error_Retry_Delay": "900,1800",
            "Upgrade_Rule": f'( "$SWVER" ne "sip78xx.14-0-1MPP-1" )? {url}sip78xx.14-0-1MPP-1.loads'})],
        "polycom": [polycom_cfg.render_config({
            "prov.polling.enabled": "1", "prov.polling.mode": "abs", "prov.polling.period": "86400",
            "prov.polling.time": "03:00", "prov.polling.timeRandomEnd": "04:00", "tcpIpApp.sntp.gmtOffset": "3600",
            "tcpIpApp.sntp.daylightSavings.enable": "1", "device.set": "1", "device.prov.serverName": url,
            "device.dhcp.bootSrvUseOpt": "custom+66", "device.dhcp.bootSrvOpt": "160"}),
                    # random polling over several days (its MAC's day, its moment kept in RAM)
                    polycom_cfg.render_config({
            "prov.polling.enabled": "1", "prov.polling.mode": "random", "prov.polling.period": "172801",
            "prov.polling.time": "23:00", "prov.polling.timeRandomEnd": "01:30"})],
        "grandstream": [grandstream_cfg.render_provision({
            "P194": "3", "P193": "60", "P285": "3", "P286": "2", "P64": "CET-1CEST,M3.5.0,M10.5.0/3", "P246": "EST5EDT",
            "P192": url + "fw", "P237": url, "P212": "2", "P238": "0", "P8467": "1"}, mac="00:0b:82:ab:cd:ef")],
        "snom": [snom_cfg.render_xml({"setting_server": url + "snom.xml", "settings_refresh_timer": "3600",
                                      "update_policy": "auto_update", "firmware_status": url + "fw.xml",
                                      "pnp_config": "on"}),
                 snom_cfg.render_text({"settings_refresh_timer": "3600", "setting_server": url}),
                 # provisioning polling, random over days (its first day, kept in RAM), on a zone's clock
                 snom_cfg.render_xml({"prov_polling_enabled": "on", "prov_polling_mode": "random",
                                      "prov_polling_period": "172800", "prov_polling_time": "23:50",
                                      "prov_polling_time_rand_end": "00:20", "timezone": "IND+5:30"})],
        "avaya": [avaya_cfg.render_provisioning([
            ("DEVICE_CONFIG", {"FILENAME": "SIP$MACADDR.cfg", "VERSION": "000001"}),
            ("USER_CONFIG", {"FILENAME": ["a.cfg", "b.cfg"], "PROTOCOL": "HTTP", "SERVER_IP": "127.0.0.1"}),
            ("FW", {"DOWNLOAD_MODE": "AUTO", "FILENAME": "SIP12x004.01.13.00.bin"})]),
            avaya_cfg.render_settings({"AUTO_UPDATE": "YES", "AUTO_UPDATE_TIME": "7200", "AUTO_UPDATE_TIME_RANGE": "2",
                                       "PRIMARY_SERVER_PROFILE": "primary.cfg", "ENABLE_UPDATE": "1"})],
    }


def _phone_config_target():
    """The input's first byte picks the vendor; the rest is every file its phone downloads
    but those ``named``. The phone boots and lives a day: its procedure may fail a pass,
    never end in an internal error."""
    from labsim.phones.vendors import profile_for
    from labsim.wire import polycom_cfg
    from tests.phonelab import PhoneLab

    vendors = sorted(PHONE_MODELS)
    seeds = [bytes([vendors.index(vendor)]) + body for vendor, bodies in _phone_config_seeds().items()
             for body in bodies]
    # Files that are not the input: Yealink's boot files are absent (a boot file lists the
    # files to fetch; the input as one would list none), Polycom's master file names one.
    named = {"yealink": {"00156513ae0b.boot": None, "y000000000000.boot": None},
             "polycom": {"0004f2abcdef.cfg": polycom_cfg.render_master(["settings.cfg"])}}

    def check(data: bytes) -> None:
        if not data:
            return
        vendor = vendors[data[0] % len(vendors)]
        model, mac = PHONE_MODELS[vendor]
        lab = PhoneLab(profile_for(vendor.split("-")[0], {}), model=model, mac=mac,
                       options={66: b"http://127.0.0.1:8080/", 160: b"http://127.0.0.1:8080/"})
        lab.network.files = _EveryPath(data[1:], named.get(vendor, {}))
        lab.boot(limit_s=300.0, step=5.0)
        lab.advance(86400.0)
        assert "internal error" not in (lab.phone.failure or ""), lab.phone.failure

    return seeds, 4096, check


def _phone_dhcp_target():
    """A DHCP reply from a server labsim does not control (a real one on the user's network),
    to each vendor's phone: the input is the OFFER to its DISCOVER and, with option 53 made
    ACK, the answer to its REQUEST; then the phone lives four hours (its provisioning on
    whatever the options said, the lease's renewal, rebinding and end). The first byte picks the vendor. The phone's client may
    ignore the reply, never raise or end in an internal error."""
    from labsim.phones.vendors import profile_for
    from labsim.wire import dhcp
    from tests.phonelab import PhoneLab

    vendors = sorted(PHONE_MODELS)
    options = {53: bytes([dhcp.OFFER]), 54: bytes([127, 0, 0, 1]), 51: (3600).to_bytes(4, "big"),
               58: (1800).to_bytes(4, "big"), 59: (3150).to_bytes(4, "big"), 1: bytes([255, 255, 255, 0]),
               3: bytes([10, 1, 0, 1]), 6: bytes([127, 0, 0, 1]), 42: bytes([127, 0, 0, 1]),
               66: b"http://127.0.0.1:8080/", 43: b"\x01\x16http://127.0.0.1:8080/", 150: bytes([127, 0, 0, 1]),
               160: b"http://127.0.0.1/p", 159: b"tftp://127.0.0.1/", 2: (3600).to_bytes(4, "big"),
               120: b"\x00\x03lab\x00", 125: b"\x00\x00\x0d\xe9\x06\x05\x04http"}
    offer = dhcp.DhcpMessage(op=2, xid=0, chaddr=bytes(6), yiaddr="10.1.0.20", siaddr="127.0.0.1", options=options)
    seeds = [bytes([index]) + dhcp.encode(offer) for index in range(len(vendors))]

    def check(data: bytes) -> None:
        if not data:
            return
        try:
            reply = dhcp.decode(data[1:])
        except dhcp.DhcpDecodeError:
            return
        vendor = vendors[data[0] % len(vendors)]
        model, mac = PHONE_MODELS[vendor]
        lab = PhoneLab(profile_for(vendor.split("-")[0], {}), model=model, mac=mac, files={})
        lab.network.dhcp_server = None  # the input answers
        lab.driver.power_on()
        lab.advance(30.0)
        for answer_type in (dhcp.OFFER, dhcp.ACK):
            if not lab.network.dhcp_sent:
                break
            sent = lab.network.dhcp_sent[-1]
            reply.xid, reply.chaddr = sent.xid, sent.chaddr
            if answer_type == dhcp.ACK and reply.message_type == dhcp.OFFER:
                reply.options[53] = bytes([dhcp.ACK])
            lab.driver.dhcp_received(reply)
            lab.advance(10.0)
        lab.advance(4 * 3600.0)  # the seeds' lease of an hour: renewing, rebinding, lost, DHCP again
        assert "internal error" not in (lab.phone.failure or ""), lab.phone.failure

    return seeds, 1500, check


def _phone_dns_target():
    """A reply from a DNS server labsim does not control (``network.dns_server``, or one a
    lease names on a real network) to a phone's lookup: the input's first byte picks the
    name asked, the rest, with the query's ID, is the answer to its UDP question (and,
    with TC set, to its TCP one). The lookup ends in
    addresses or a LookupFailed, never in an exception out of the resolver; what the
    phone keeps is kept for a TTL the reply gave."""
    from dnslib import DNSRecord

    from labsim.phones.dns_client import PhoneDns
    from labsim.transport.dns_lookup import LookupFailed
    from labsim.virtual.clock import HeapClock
    from labsim.virtual.dns import VirtualResolver
    from labsim.wire.dns_records import DnsAnswerer, DnsRecordConfig, Zone

    zone = Zone([DnsRecordConfig("prov.lab", "A", "127.0.0.1", 60), DnsRecordConfig("www.lab", "CNAME", "prov.lab", 30),
                 *[DnsRecordConfig("big.lab", "A", f"127.0.1.{n}", 60) for n in range(1, 80)],
                 DnsRecordConfig("v6.lab", "AAAA", "2001:db8::1", 60),
                 DnsRecordConfig("lab", "SOA", "ns.lab hostmaster.lab 1 3600 600 86400 30", 60)])
    real = DnsAnswerer(zone)
    # The input's first byte picks the one asked; the last two get negative answers with the SOA.
    names = ("prov.lab", "www.lab", "big.lab", "nothing.lab", "v6.lab")
    seeds = [bytes([index]) + real.handle(bytes(DNSRecord.question(name, "A").pack()))
             for index, name in enumerate(names)]

    class Answerer:
        """Answers every question with the input, under the question's ID."""

        def __init__(self, reply: bytes):
            self.reply = reply

        def handle(self, query: bytes, over_tcp: bool = False) -> bytes:
            return query[:2] + self.reply[2:]

    def check(data: bytes) -> None:
        if not data:
            return
        clock = HeapClock()
        answerer = Answerer(data[1:])
        resolver = VirtualResolver(clock, ("127.0.0.1", 53), lambda: answerer)
        dns, outcome = PhoneDns(negative_caching=True), []
        resolver.resolve_with(names[data[0] % len(names)], None, dns).addBoth(outcome.append)
        clock.run_until(30.0)
        assert len(outcome) == 1, outcome
        kept = list(dns.answers.values())
        assert all(expires > 0.0 for expires, _ in kept)
        if isinstance(outcome[0], str):
            assert outcome[0].count(".") == 3, outcome[0]
            assert all(outcome[0] == addresses[0] for _, addresses in kept)
        else:
            assert outcome[0].check(LookupFailed), outcome[0]
            # A negative answer is kept only as its reason, for the phone's next lookups.
            assert all(isinstance(why, str) and why in outcome[0].getErrorMessage() for _, why in kept)

    return seeds, 1500, check


@dataclass
class Target:
    name: str
    build: Callable[[], tuple]  # () -> (seeds, max_size, check): built on first use

    def strategy_and_check(self):
        seeds, max_size, check = self.build()
        return inputs(seeds, max_size), check


TARGETS = [Target("dhcp", _dhcp_target), Target("tftp", _tftp_target), Target("dns_udp", _dns_udp_target),
           Target("dns_tcp", _dns_tcp_target), Target("sip_pnp", _sip_target), Target("http", _http_target),
           Target("ftp", _ftp_target), Target("scenario", _scenario_target),
           Target("phone_config", _phone_config_target), Target("phone_dhcp", _phone_dhcp_target),
           Target("phone_tftp", _phone_tftp_target), Target("http_response", _http_response_target),
           Target("phone_dns", _phone_dns_target)]

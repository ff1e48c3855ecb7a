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
                             DnsRecordConfig("_http._tcp.lab", "SRV", "10 5 8080 prov.lab", 60)]))


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

    def check(data: bytes) -> None:
        try:
            parse_scenario_text(data.decode("utf-8", "replace"), "fuzz.yaml")
        except ScenarioError as exc:
            assert exc.problems and all(str(problem) for problem in exc.problems)

    return seeds, 8192, check


@dataclass
class Target:
    name: str
    build: Callable[[], tuple]  # () -> (seeds, max_size, check): built on first use

    def strategy_and_check(self):
        seeds, max_size, check = self.build()
        return inputs(seeds, max_size), check


TARGETS = [Target("dhcp", _dhcp_target), Target("tftp", _tftp_target), Target("dns_udp", _dns_udp_target),
           Target("dns_tcp", _dns_tcp_target), Target("sip_pnp", _sip_target), Target("http", _http_target),
           Target("ftp", _ftp_target), Target("scenario", _scenario_target)]

"""Each service's core serves a request with no socket and no real file: bytes (or a parsed
request) in, what to send and which timer to arm out, files from an in-memory store, time
from ``task.Clock``. This is what lets the same cores run on an in-memory network in
simulated time (docs/architecture.md, "Services")."""

from twisted.internet.task import Clock

from labsim.services.dhcp import DhcpServer, DhcpServerConfig
from labsim.services.dns import DnsRecordConfig, DnsResolver, DnsServerConfig
from labsim.services.file_store import MemoryFolder
from labsim.services.pnp import PnpResponder, PnpResponderConfig
from labsim.services.tftp import Reject, TftpRequestHandler, TftpServerConfig
from labsim.wire import dhcp, sip_pnp
from labsim.wire import tftp as wire
from labsim.wire.dns_records import DnsAnswerer, Zone

PHONE = ("127.0.0.1", 40000)


class MemoryTftpPort:
    """The smallest adapter: runs a core's Steps on a Clock, collecting what it sends."""

    def __init__(self, clock: Clock):
        self.clock, self.sent, self._timer, self.done = clock, [], None, False

    def apply(self, machine, step) -> None:
        self.sent.extend(datagram for datagram, _ in step.send)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if step.done:
            self.done = True
        elif step.timer is not None:
            self._timer = self.clock.callLater(step.timer, lambda: self.apply(machine, machine.timer_expired()))


def test_tftp_serves_a_file_from_memory_and_retransmits_on_the_clock():
    clock = Clock()
    files = MemoryFolder({"cfg/phone.cfg": b"x" * 700})
    handler = TftpRequestHandler(TftpServerConfig(root="(memory)", timeout_s=2.0), files=files)
    transfer = handler.handle(wire.encode_rrq("/cfg/phone.cfg"), PHONE)
    port = MemoryTftpPort(clock)
    port.apply(transfer, transfer.start())
    assert port.sent == [wire.encode_data(1, b"x" * 512)]
    clock.advance(2.0)  # DATA 1 lost: the timer resends it
    assert port.sent[-1] == wire.encode_data(1, b"x" * 512) and len(port.sent) == 2
    port.apply(transfer, transfer.datagram_received(wire.encode_ack(1), PHONE))
    assert port.sent[-1] == wire.encode_data(2, b"x" * 188)
    port.apply(transfer, transfer.datagram_received(wire.encode_ack(2), PHONE))
    assert port.done and handler.stats["transfers_ok"] == 1 and handler.stats["retransmits"] == 1


def test_tftp_sees_a_changed_file_and_refuses_what_is_not_there():
    files = MemoryFolder({"a.cfg": b"old"})
    handler = TftpRequestHandler(TftpServerConfig(root="(memory)"), files=files)
    assert handler.handle(wire.encode_rrq("a.cfg"), PHONE).start().send[0][0] == wire.encode_data(1, b"old")
    files.put("a.cfg", b"new")
    assert handler.handle(wire.encode_rrq("a.cfg"), PHONE).start().send[0][0] == wire.encode_data(1, b"new")
    missing = handler.handle(wire.encode_rrq("nope.cfg"), PHONE)
    assert isinstance(missing, Reject) and wire.decode_error(missing.packet)[0] == wire.ERR_NOT_FOUND
    escape = handler.handle(wire.encode_rrq("../a.cfg"), PHONE)
    assert isinstance(escape, Reject) and wire.decode_error(escape.packet)[0] == wire.ERR_ACCESS_VIOLATION


def test_tftp_stores_an_upload_in_memory():
    uploads = MemoryFolder()
    handler = TftpRequestHandler(TftpServerConfig(root="(memory)", uploads=True), files=MemoryFolder(),
                                 uploads=uploads)
    transfer = handler.handle(wire.encode_request(wire.WRQ, "uploads/001565000001.log"), PHONE)
    assert transfer.start().send[0][0] == wire.encode_ack(0)
    transfer.datagram_received(wire.encode_data(1, b"boot ok\n"), PHONE)
    assert uploads.files == {"001565000001.log": b"boot ok\n"}


def test_dhcp_answers_a_discover_with_an_offer():
    server = DhcpServer(DhcpServerConfig(server_id="127.0.0.1", subnet="10.1.0.0/24", pool_start="10.1.0.10",
                                         pool_end="10.1.0.20", options={66: b"http://127.0.0.1/"}))
    discover = dhcp.DhcpMessage(op=1, xid=7, chaddr=bytes.fromhex("001565000001"), giaddr="127.0.0.2", hops=1,
                                options={53: bytes([dhcp.DISCOVER])})
    (reply,) = server.handle(dhcp.decode(dhcp.encode(discover)), now=100.0)
    assert reply.message.options[53] == bytes([dhcp.OFFER]) and reply.message.yiaddr == "10.1.0.10"
    assert reply.message.options[66] == b"http://127.0.0.1/" and reply.to_addr == "127.0.0.2"


def test_dns_answers_a_query_from_its_zone():
    config = DnsServerConfig([DnsRecordConfig("prov.lab", "A", "127.0.0.10")])
    answerer = DnsAnswerer(Zone(config.records))
    resolver = DnsResolver()
    reply = answerer.handle(resolver.build_query("prov.lab", "A", 4242))
    assert resolver.parse_answer(reply) == ["127.0.0.10"]


def test_pnp_answers_a_subscribe_with_the_url():
    responder = PnpResponder(PnpResponderConfig(url="http://127.0.0.1/{mac}/"))
    subscribe = sip_pnp.build_subscribe(mac="00:15:65:00:00:01", vendor="Yealink", model="T46S", version="66.85.0.5",
                                        local=PHONE, call_id="c1", tag="t1", branch="z9hG4bK1")
    replies = responder.handle(subscribe.encode(), PHONE)
    assert [target for _, target in replies] == [PHONE, PHONE]
    ok, notify = (sip_pnp.parse(data) for data, _ in replies)
    assert ok.status == 200 and notify.method == "NOTIFY"
    assert sip_pnp.notify_url(notify) == "http://127.0.0.1/001565000001/"


HOST = {b"Host": [b"127.0.0.1"]}


def test_http_serves_a_file_from_memory_with_validators_ranges_and_auth():
    from labsim.services.http import HttpAuthenticator, HttpAuthRule
    from labsim.services.http_files import STREAM, WHOLE, MemoryFiles, StaticFiles

    clock = Clock()
    clock.advance(1_767_225_600)
    files = MemoryFiles({"cfg/y000000000066.cfg": b"#!version:1.0.0.1\nlang.gui = English\n",
                         "secret/a.cfg": b"x"})
    auth = HttpAuthenticator([HttpAuthRule("/secret/*", "basic", {"u": "p"})], clock.seconds)
    server = StaticFiles(files, auth=auth, listing=True)
    get = server.answer(b"GET", b"/cfg/y000000000066.cfg", b"/cfg/y000000000066.cfg", HOST, None, clock.seconds())
    assert (get.status, get.how, get.body) == (200, WHOLE, files.files[b"cfg/y000000000066.cfg"])
    assert b"Content-Length: 37\r\n" in get.fields and b"ETag: " in get.fields
    etag = get.fields.split(b"ETag: ")[1].split(b"\r\n")[0]
    again = server.answer(b"GET", b"/cfg/y000000000066.cfg", b"", {**HOST, b"If-None-Match": [etag]}, None, clock.seconds())
    assert again.status == 304 and again.body == b""
    part = server.answer(b"GET", b"/cfg/y000000000066.cfg", b"", {**HOST, b"Range": [b"bytes=0-8"]}, None, clock.seconds())
    assert (part.status, part.body) == (206, b"#!version")
    files.put(b"cfg/y000000000066.cfg", b"#!version:1.0.0.1\n")  # a new version: the old tag no longer matches
    changed = server.answer(b"GET", b"/cfg/y000000000066.cfg", b"", {**HOST, b"If-None-Match": [etag]}, None, clock.seconds())
    assert (changed.status, changed.body) == (200, b"#!version:1.0.0.1\n")
    denied = server.answer(b"GET", b"/secret/a.cfg", b"/secret/a.cfg", HOST, None, clock.seconds())
    assert denied.status == 401 and denied.headers[0][0] == b"WWW-Authenticate"
    allowed = server.answer(b"GET", b"/secret/a.cfg", b"/secret/a.cfg", {**HOST, b"Authorization": [b"Basic dTpw"]}, None,
                            clock.seconds())
    assert allowed.status == 200 and allowed.body == b"x"
    listing = server.answer(b"GET", b"/cfg/", b"/cfg/", HOST, None, clock.seconds())
    assert listing.status == 200 and b"y000000000066.cfg" in listing.body
    assert server.answer(b"GET", b"/../etc/passwd", b"", HOST, None, clock.seconds()).status == 404
    assert server.answer(b"DELETE", b"/cfg/", b"", HOST, None, clock.seconds()).status == 405
    assert server.answer(b"GET", b"/cfg/", b"", {}, None, clock.seconds()).status == 400  # HTTP/1.1 needs Host
    big = MemoryFiles({"fw.rom": bytes(2 << 20)})
    streamed = StaticFiles(big).answer(b"GET", b"/fw.rom", b"", HOST, None, clock.seconds())
    assert streamed.how == STREAM and len(streamed.stream.read()) == 2 << 20


def test_http_stores_an_upload_in_memory():
    import io

    from labsim.services.http_files import MemoryFiles, StaticFiles

    uploads = MemoryFiles()
    server = StaticFiles(MemoryFiles(), uploads=uploads, upload_prefix=b"uploads")
    put = server.answer(b"PUT", b"/uploads/0004f2000001-app.log", b"", HOST, io.BytesIO(b"log line\n"), 0.0)
    assert put.status == 201 and uploads.files == {b"0004f2000001-app.log": b"log line\n"}
    again = server.answer(b"PUT", b"/uploads/0004f2000001-app.log", b"", HOST, io.BytesIO(b"more\n"), 0.0)
    assert again.status == 204 and uploads.files[b"0004f2000001-app.log"] == b"more\n"
    assert server.answer(b"PUT", b"/elsewhere.log", b"", HOST, io.BytesIO(b"x"), 0.0).status == 403


def test_http_file_cache_holds_at_most_its_number_of_files(monkeypatch):
    """A fleet's own files (one a phone) are small but many: the cache is bounded in files
    as well as bytes, and what it let go of is read again, unchanged."""
    from labsim.services import http_files
    from labsim.services.http_files import MemoryFiles, StaticFiles

    monkeypatch.setattr(http_files, "CACHE_FILES_MAX", 50)
    files = MemoryFiles({f"cfg/{n:012x}.cfg": b"#!version:1.0.0.1\naccount.1.user_name = %d\n" % n for n in range(200)})
    server = StaticFiles(files)
    for _ in range(2):
        for n in range(200):
            path = f"/cfg/{n:012x}.cfg".encode()
            answer = server.answer(b"GET", path, path, HOST, None, 1_767_225_600.0)
            assert answer.status == 200 and answer.body.endswith(b"= %d\n" % n)
            assert len(server._cache) <= 50

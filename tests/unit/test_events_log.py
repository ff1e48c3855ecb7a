"""events.jsonl: what the recording link sees between a phone and its network, the merge
with the phones' timelines, and the file."""

from __future__ import annotations

import hashlib
import json
import random
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.internet.task import Clock

from labsim.fleet.fleet import FleetMember
from labsim.observe.events_log import EventLog, RecordingLink, row_to_json, write_events
from labsim.phones import yealink
from labsim.phones.events import Fetch, FetchResult, Put
from labsim.phones.phone import Phone
from labsim.transport.driver import PhoneDriver
from labsim.wire import dhcp, sip_pnp

MAC = "00:15:65:aa:00:01"


class FakeNetwork:
    """A PhoneNetwork that remembers what it was asked and answers downloads on demand."""

    def __init__(self):
        self.attached = []
        self.sent = []
        self.fetches: list[tuple[Fetch, defer.Deferred]] = []
        self.connecting = []
        self.hold_requests = False
        self.extra_calls = 0

    def attach(self, driver):
        self.attached.append(driver)

    def send_dhcp(self, driver, message):
        self.sent.append((driver, message))

    def fetch(self, request, connecting=None):
        """A request leaves at once for its URL's host, unless ``connecting`` is kept back
        (a test calls it later, as the lab's DNS would answer; or never, a failed lookup)."""
        deferred = defer.Deferred()
        self.fetches.append((request, deferred))
        self.connecting.append(connecting)
        if connecting is not None and not self.hold_requests:
            connecting(urlsplit(request.url).hostname)
        return deferred

    def something_new(self):  # what a later network may offer its drivers
        self.extra_calls += 1
        return "forwarded"


class FakeDriver:
    def __init__(self, phone):
        self.phone = phone
        self.received = []
        self.fleet = "desk"

    def dhcp_received(self, message):
        self.received.append(message)


class FakePhone:
    mac = MAC
    mac_bytes = bytes.fromhex(MAC.replace(":", ""))
    lease = None


def make_link(capture=None):
    clock = Clock()
    clock.advance(1000.0)
    network, log = FakeNetwork(), EventLog()
    link = RecordingLink(network, log, clock, epoch=1000.0, capture=capture)
    driver = FakeDriver(FakePhone())
    link.attach(driver)
    return clock, network, log, link, driver


def message(kind: int, yiaddr: str = "0.0.0.0") -> dhcp.DhcpMessage:
    return dhcp.DhcpMessage(op=1 if kind in (1, 3) else 2, xid=0x1A2B3C4D, chaddr=FakePhone.mac_bytes,
                            yiaddr=yiaddr, options={53: bytes([kind])})


def test_dhcp_both_ways_is_recorded_and_delivered():
    clock, network, log, link, driver = make_link()
    clock.advance(0.5)
    link.send_dhcp(driver, message(1))
    assert network.sent[0][1].message_type == 1
    # The network delivers replies to what it was given at attach time.
    (driver_side,) = network.attached
    assert driver_side.phone is driver.phone
    clock.advance(0.25)
    driver_side.dhcp_received(message(2, "10.30.0.10"))
    assert driver.received[0].yiaddr == "10.30.0.10"
    assert log.rows == [(0.5, MAC, "dhcp", "out", 1, 0x1A2B3C4D, "0.0.0.0"),
                        (0.75, MAC, "dhcp", "in", 2, 0x1A2B3C4D, "10.30.0.10")]


def test_a_download_is_recorded_when_it_ends_with_its_latency():
    clock, network, log, link, driver = make_link()
    results = []
    link.fetch(Fetch(1, "http://127.0.0.1/a.cfg")).addCallback(results.append)
    assert log.rows == [] and len(log.in_flight) == 1
    clock.advance(0.125)
    network.fetches[0][1].callback(FetchResult("ok", b"12345"))
    assert results == [FetchResult("ok", b"12345")]  # the driver gets the result unchanged
    assert log.rows == [(0.125, MAC, "fetch", "http://127.0.0.1/a.cfg", "ok", 5, 0.125, "", hashlib.md5(b"12345").hexdigest())]
    assert log.in_flight == {}


def test_a_failed_download_is_recorded_as_an_error_and_the_failure_goes_on():
    clock, network, log, link, driver = make_link()
    failures = []
    link.fetch(Fetch(1, "tftp://127.0.0.1/x")).addErrback(failures.append)
    network.fetches[0][1].errback(RuntimeError("socket gone"))
    assert len(failures) == 1 and failures[0].check(RuntimeError)
    assert log.rows[0][4:] == ("error", 0, 0.0, "socket gone", "")


def test_downloads_still_running_at_the_end_are_unfinished():
    clock, network, log, link, driver = make_link()
    link.fetch(Fetch(1, "http://127.0.0.1/slow"))
    clock.advance(2.0)
    (row,) = log.unfinished(2.0)
    assert row == (2.0, MAC, "fetch", "http://127.0.0.1/slow", "unfinished", 0, 2.0, "the run ended first", "")


def test_anything_else_is_forwarded_both_ways():
    clock, network, log, link, driver = make_link()
    assert link.something_new() == "forwarded" and network.extra_calls == 1
    assert network.attached[0].fleet == "desk"


class RecordingCapture:
    def __init__(self):
        self.calls = []

    def dhcp_from_phone(self, t, mac, payload, ciaddr="0.0.0.0"):
        self.calls.append(("out", t, mac, dhcp.decode(payload).message_type))

    def dhcp_to_phone(self, t, mac, payload, server_ip, yiaddr, broadcast=False):
        self.calls.append(("in", t, mac, yiaddr))

    def fetch_started(self, t, mac, client_ip, url, user_agent="", credentials=None, server_ip=None):
        self.calls.append(("fetch", t, client_ip, url, user_agent) + ((server_ip,) if server_ip != "127.0.0.1" else ()))
        return "flow"

    def upload_started(self, t, mac, client_ip, url, body, user_agent="", credentials=None, server_ip=None):
        self.calls.append(("upload", t, client_ip, url, body, user_agent))
        return "upload-flow"

    def upload_finished(self, flow, t, result):
        self.calls.append(("uploaded", flow, t, result.status))

    def sip_from_phone(self, t, mac, client_ip, payload, to=None):
        self.calls.append(("sip out", t, mac, payload, to))

    def sip_to_phone(self, t, mac, client_ip, payload, source):
        self.calls.append(("sip in", t, mac, payload, source))

    def fetch_finished(self, flow, t, result):
        self.calls.append(("done", flow, t, result.status))


def test_with_a_capture_every_exchange_is_also_captured_with_absolute_times():
    capture = RecordingCapture()
    clock, network, log, link, driver = make_link(capture)
    link.send_dhcp(driver, message(3))
    network.attached[0].dhcp_received(message(5, "10.30.0.10"))
    link.fetch(Fetch(1, "http://127.0.0.1/a", user_agent="UA"))
    network.fetches[0][1].callback(FetchResult("not_found", detail="HTTP 404"))
    assert capture.calls == [("out", 1000.0, FakePhone.mac_bytes, 3), ("in", 1000.0, FakePhone.mac_bytes, "10.30.0.10"),
                             ("fetch", 1000.0, None, "http://127.0.0.1/a", "UA"), ("done", "flow", 1000.0, "not_found")]


def test_a_download_is_captured_from_when_its_request_leaves_and_not_at_all_if_it_never_does():
    """A host name: the request leaves once the lab's DNS answered, for that address, and
    its frames start then; a name that did not resolve sends nothing, so the capture has
    no frame of it (it used to show a connection to 127.0.0.1 that the server reset)."""
    capture = RecordingCapture()
    clock, network, log, link, driver = make_link(capture)
    network.hold_requests = True
    link.fetch(Fetch(1, "http://prov.lab:8080/a.cfg", user_agent="UA"))
    link.fetch(Fetch(2, "http://prov.lab:8080/b.cfg", user_agent="UA"))
    clock.advance(0.25)
    network.connecting[0]("127.0.0.5")  # the DNS's answer, a moment later
    clock.advance(0.25)
    network.fetches[0][1].callback(FetchResult("ok", b"x"))
    clock.advance(3.0)
    network.fetches[1][1].callback(FetchResult("dns", detail="prov.lab: no answer from the lab DNS 127.0.0.1:53"))
    assert capture.calls == [("fetch", 1000.25, None, "http://prov.lab:8080/a.cfg", "UA", "127.0.0.5"),
                             ("done", "flow", 1000.5, "ok"), ("done", None, 1003.5, "dns")]
    # The journal still times each download from the phone's request, the lookup included.
    assert [(row[0], row[4]) for row in log.rows if row[2] == "fetch"] == [(0.5, "ok"), (3.5, "dns")]


def test_a_real_phone_driver_works_through_the_link():
    """The driver attaches to the link, sends its DISCOVER through it, and a timer retry
    goes through it again: the link is a complete PhoneNetwork."""
    clock, network, log = Clock(), FakeNetwork(), EventLog()
    phone = Phone(MAC, "T46S", yealink, rng=random.Random(1), boot_time_s=1.0)
    link = RecordingLink(network, log, clock, epoch=0.0)
    driver = PhoneDriver(phone, clock, link, epoch=0.0)
    driver.power_on()
    clock.advance(1.0)
    assert [m.message_type for _, m in network.sent] == [1]
    clock.advance(10.0)  # no OFFER: the phone retransmits
    assert len(network.sent) >= 2
    assert [row[4] for row in log.rows] == [1] * len(network.sent)
    assert network.attached[0].driver is driver


def phone(mac):
    return Phone(mac, "T46S", yealink, rng=random.Random(1))


def test_a_phones_events_join_the_log_as_they_happen_and_the_phone_keeps_first_and_last():
    log = EventLog(keep_per_phone=4)
    one, two = phone(MAC), phone("00:15:65:aa:00:02")
    one.journal = two.journal = log
    one.now = two.now = 0.5
    one.note("a")
    log.rows.append((0.6, MAC, "dhcp", "out", 1, 1, "0.0.0.0"))
    two.note("b")
    assert log.rows == [(0.5, MAC, "step", "off", "a"), (0.6, MAC, "dhcp", "out", 1, 1, "0.0.0.0"),
                        (0.5, "00:15:65:aa:00:02", "step", "off", "b")]
    for n in range(20):
        one.now = 1.0 + n
        one.note(f"n{n}")
    # Never more than half as many again as kept; at the end trimmed to the first 2 and last 2 at least.
    assert len(one.events) <= 4 + 1 and one.events[:2] == [(0.5, "off", "a", "step"), (1.0, "off", "n0", "step")]
    assert one.events[-1] == (20.0, "off", "n19", "step")
    assert one.events_dropped + len(one.events) == 21
    assert len([row for row in log.rows if row[1] == MAC and row[2] == "step"]) == 21  # the log has them all


def test_rows_taken_stay_readable_for_the_dashboard_in_order():
    log = EventLog(recent=3)
    for n in range(5):
        log.rows.append((float(n), MAC, "dhcp", "out", 1, n, "0.0.0.0"))
    rows, position = log.rows_since(0)
    assert [row[5] for row in rows] == [0, 1, 2, 3, 4] and position == 5
    assert [row[5] for row in log.take()] == [0, 1, 2, 3, 4] and log.rows == []
    log.rows.append((5.0, "00:15:65:aa:00:02", "dhcp", "out", 1, 5, "0.0.0.0"))
    rows, position = log.rows_since(3)
    assert [row[5] for row in rows] == [3, 4, 5] and position == 6
    assert [row[5] for row in log.rows_since(0)[0]] == [2, 3, 4, 5]  # as far as the ring goes back
    assert log.rows_since(6) == ([], 6)
    assert [row[5] for row in log.phone_rows(MAC)] == [2, 3, 4]


def test_row_json_has_time_mac_kind_and_details():
    assert row_to_json((0.1234567, MAC, "dhcp", "in", 5, 0xAB, "10.0.0.1")) == {
        "t": 0.123457, "mac": MAC, "kind": "dhcp", "dir": "in", "type": "ACK", "xid": "0x000000ab",
        "yiaddr": "10.0.0.1"}
    assert row_to_json((1.0, MAC, "dhcp", "out", None, 1, "0.0.0.0"))["type"] == "None"  # plain BOOTP
    assert row_to_json((2.0, MAC, "fetch", "tftp://h/f", "ok", 9, 0.0123, "", "ab" * 16)) == {
        "t": 2.0, "mac": MAC, "kind": "fetch", "url": "tftp://h/f", "status": "ok", "bytes": 9, "latency_s": 0.0123,
        "detail": "", "md5": "ab" * 16}
    assert row_to_json((3.0, MAC, "step", "provisioning", "downloading")) == {
        "t": 3.0, "mac": MAC, "kind": "step", "state": "provisioning", "detail": "downloading"}


def test_the_file_is_one_object_a_line_ending_with_the_run_line(tmp_path):
    rows = [(0.0, MAC, "state", "booting", "power on \u00e9 \"quoted\"\nnewline"),
            (0.5, MAC, "dhcp", "out", 1, 7, "0.0.0.0")]
    path = write_events(rows, str(tmp_path), complete=False, end_reason="interrupted (signal)", end_t=0.75)
    lines = open(path, encoding="utf-8").read().splitlines()
    assert len(lines) == 3
    objects = [json.loads(line) for line in lines]
    assert objects[0]["detail"].endswith("newline") and objects[1]["type"] == "DISCOVER"
    assert objects[2] == {"t": 0.75, "mac": None, "kind": "run", "complete": False,
                          "end_reason": "interrupted (signal)", "events": 2}
    assert not (tmp_path / "events.jsonl.tmp").exists()


# --- uploads and SIP through the link -----------------------------------------------------


class UploadingNetwork(FakeNetwork):
    """A FakeNetwork that also takes uploads and SIP."""

    def __init__(self):
        super().__init__()
        self.uploads: list[tuple[Put, defer.Deferred]] = []
        self.sip_sent = []

    def upload(self, request, connecting=None):
        deferred = defer.Deferred()
        self.uploads.append((request, deferred))
        if connecting is not None:
            connecting(urlsplit(request.url).hostname)
        return deferred

    def send_sip(self, driver, message, to):
        self.sip_sent.append((driver, message, to))


def make_uploading_link(capture=None):
    clock = Clock()
    clock.advance(1000.0)
    network, log = UploadingNetwork(), EventLog()
    link = RecordingLink(network, log, clock, epoch=1000.0, capture=capture)
    driver = FakeDriver(FakePhone())
    link.attach(driver)
    return clock, network, log, link, driver


LOG_URL = "http://127.0.0.1:8080/uploads/0004f2aa0001-app.log"


def test_an_upload_is_recorded_with_its_body_size_outcome_and_duration():
    clock, network, log, link, driver = make_uploading_link()
    results = []
    link.upload(Put(3, LOG_URL, b"x" * 412, "Polycom")).addCallback(results.append)
    assert network.uploads[0][0].body == b"x" * 412 and log.rows == []
    clock.advance(0.25)
    network.uploads[0][1].callback(FetchResult("ok"))
    assert results == [FetchResult("ok")]
    md5 = hashlib.md5(b"x" * 412).hexdigest()
    assert log.rows == [(0.25, MAC, "upload", LOG_URL, "ok", 412, 0.25, "", md5)]
    assert row_to_json(log.rows[0]) == {"t": 0.25, "mac": MAC, "kind": "upload", "url": LOG_URL, "status": "ok",
                                        "bytes": 412, "latency_s": 0.25, "detail": "", "md5": md5}


def test_a_refused_or_failed_upload_is_recorded_and_the_failure_goes_on():
    clock, network, log, link, driver = make_uploading_link()
    link.upload(Put(1, LOG_URL, b"abc"))
    network.uploads[0][1].callback(FetchResult("error", detail="HTTP 405"))
    failures = []
    link.upload(Put(2, LOG_URL, b"abcd")).addErrback(failures.append)
    network.uploads[1][1].errback(RuntimeError("socket gone"))
    assert [row[2:8] for row in log.rows] == [("upload", LOG_URL, "error", 3, 0.0, "HTTP 405"),
                                              ("upload", LOG_URL, "error", 4, 0.0, "socket gone")]
    assert len(failures) == 1


def test_a_network_without_uploads_answers_as_the_driver_would_and_it_is_recorded():
    clock, network, log, link, driver = make_link()  # FakeNetwork has no upload()
    results = []
    link.upload(Put(1, LOG_URL, b"abc")).addCallback(results.append)
    assert results == [FetchResult("error", detail="this network does not carry uploads")]
    assert log.rows == []  # nothing left the phone: no upload line


def test_uploads_still_running_at_the_end_are_unfinished_with_their_size():
    clock, network, log, link, driver = make_uploading_link()
    link.upload(Put(1, LOG_URL, b"12345"))
    clock.advance(1.5)
    assert log.unfinished(1.5) == [(1.5, MAC, "upload", LOG_URL, "unfinished", 5, 1.5, "the run ended first",
                                    hashlib.md5(b"12345").hexdigest())]


def test_uploads_and_sip_are_captured_with_the_real_bytes():
    capture = RecordingCapture()
    clock, network, log, link, driver = make_uploading_link(capture)
    link.upload(Put(1, LOG_URL, b"log", "UA"))
    network.uploads[0][1].callback(FetchResult("ok"))
    subscribe = sip_pnp.build_subscribe(mac=MAC, vendor="Yealink", model="T46S", version="1", local=("10.0.0.5", 5060),
                                        call_id="c@10.0.0.5", tag="t", branch="z9hG4bKb", user_agent="UA")
    link.send_sip(driver, subscribe, None)
    # The network sends with (and would answer) what it was given at attach time.
    assert network.sip_sent == [(network.attached[0], subscribe, None)]
    received = []
    driver.sip_received = lambda message, source: received.append((message, source))
    ok = sip_pnp.build_response(subscribe, 200, "OK")
    raw = ok.encode().replace(b"SIP/2.0 200 OK", b"SIP/2.0 200 Fine")  # not what encode() would give
    network.attached[0].sip_received(sip_pnp.parse(raw), ("127.0.0.1", 5070), raw)
    network.attached[0].sip_received(ok, ("127.0.0.1", 5070))  # a network without the bytes
    assert [m.status for m, _ in received] == [200, 200]
    mac = FakePhone.mac_bytes
    assert capture.calls == [("upload", 1000.0, None, LOG_URL, b"log", "UA"), ("uploaded", "upload-flow", 1000.0, "ok"),
                             ("sip out", 1000.0, mac, subscribe.encode(), None),
                             ("sip in", 1000.0, mac, raw, ("127.0.0.1", 5070)),
                             ("sip in", 1000.0, mac, ok.encode(), ("127.0.0.1", 5070))]
    assert log.rows[0][2] == "upload" and len(log.rows) == 1  # SIP goes to the capture only


def test_a_pnp_phone_through_the_link_leaves_all_four_sip_messages_in_the_capture():
    """A real Yealink phone on the in-memory network with a PnP responder: SUBSCRIBE to the
    group, the responder's 200 and NOTIFY (with the URL), the phone's 200, as frames."""
    from scapy.all import IP, UDP, Ether

    from labsim.observe.pcap import PcapCapture
    from labsim.services.dhcp import DhcpServer, DhcpServerConfig
    from labsim.services.pnp import PnpResponder, PnpResponderConfig
    from labsim.transport.memory import InMemoryNetwork
    from tests.unit.test_pcap import ListSink

    clock, log, sink = Clock(), EventLog(), ListSink()
    url = "http://127.0.0.1:8080/pnp/"
    network = InMemoryNetwork(clock, dhcp_server=DhcpServer(DhcpServerConfig(server_id="127.0.0.1", options={})),
                              files={"pnp/y000000000066.cfg": b"#!version:1.0.0.1\n"},
                              pnp_responder=PnpResponder(PnpResponderConfig(url=url, local=("127.0.0.1", 5070))))
    phone = Phone(MAC, "T46S", yealink, rng=random.Random(1), boot_time_s=0.5)
    link = RecordingLink(network, log, clock, epoch=0.0, capture=PcapCapture(sink=sink))
    driver = PhoneDriver(phone, clock, link, epoch=0.0)
    driver.power_on()
    for _ in range(400):
        if phone.settled:
            break
        clock.advance(0.05)
    assert phone.pnp_url == url
    sip = [Ether(frame) for frame, _, _ in sink.packets
           if UDP in Ether(frame) and 5060 in (Ether(frame)[UDP].sport, Ether(frame)[UDP].dport)]
    first_lines = [bytes(p[UDP].payload).split(b"\r\n")[0] for p in sip]
    assert first_lines[:4] == [b"SUBSCRIBE sip:001565aa0001@224.0.1.75 SIP/2.0", b"SIP/2.0 200 OK",
                               b"NOTIFY sip:%s:5060 SIP/2.0" % phone.lease.address.encode(), b"SIP/2.0 200 OK"]
    assert sip[0][IP].dst == "224.0.1.75" and sip[0][IP].src == phone.lease.address
    assert (sip[2][IP].src, sip[2][UDP].sport) == ("127.0.0.1", 5070) and bytes(sip[2][UDP].payload).endswith(url.encode())
    assert (sip[3][IP].dst, sip[3][UDP].dport) == ("127.0.0.1", 5070)
    assert [row[2] for row in log.rows if row[2] == "fetch"]  # the downloads that followed are recorded


def test_dhcp_lines_are_what_the_json_encoder_writes():
    import json

    from labsim.observe.events_log import row_line, row_to_json

    encode = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
    for row in [(0.0, "00:15:65:00:00:01", "dhcp", "out", 1, 0, "0.0.0.0"),
                (86400.123456789, "00:15:65:00:00:01", "dhcp", "in", 5, 0xFFFFFFFF, "10.1.0.10"),
                (1e-7, "00:15:65:00:00:01", "dhcp", "in", 99, 17, "10.1.0.10"),
                (3.5, "00:15:65:00:00:02", "fetch", "http://127.0.0.1/\u00e9\"x", "ok", 5, 0.001, "tab\there", "")]:
        assert row_line(row) == encode(row_to_json(row))


def test_download_and_state_lines_are_what_the_json_encoder_writes():
    """The direct formatting of fetch, upload, state and step rows (most lines of a long
    run) gives the encoder's text for plain values and for every kind of awkward one."""
    import json
    import random

    from labsim.observe.events_log import row_line, row_to_json

    encode = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
    texts = ["", "plain", "http://127.0.0.1:8080/y000000000066.cfg", "HTTP 404", "quote\"inside", "back\\slash",
             "new\nline", "\u00e9t\u00e9", "\u2028sep", "\x7f", "bidi\u202e", "x" * 2001, "\U0001f600", b"bytes\xff", None]
    rng = random.Random(7)
    for _ in range(3000):
        t = rng.choice([0, 0.0, 1e-7, 3.5, 604799.9999999, rng.uniform(0, 1e6)])
        mac = rng.choice(["00:15:65:00:00:01", "we\"ird", None])
        kind = rng.choice(["fetch", "upload", "state", "step"])
        if kind in ("fetch", "upload"):
            row = (t, mac, kind, rng.choice(texts), rng.choice(["ok", "not_found", "unfinished"]),
                   rng.choice([0, 91, True, 2 ** 40]), rng.uniform(0, 30), rng.choice(texts),
                   rng.choice(["", "9e1c" * 8]))
        else:
            row = (t, mac, kind, rng.choice(["ready", "provisioning"]), rng.choice(texts))
        assert row_line(row) == encode(row_to_json(row)), row


def test_seconds_text_is_what_repr_of_round_writes():
    """Times and latencies are written through ``seconds_text`` (``%.6f``, trailing zeros
    cut) instead of ``repr(round(x, 6))``: the same text for every value, halfway cases
    and their neighbours included, and the slow way for what the fast one cannot take."""
    import random
    import struct

    from labsim.observe.events_log import seconds_text

    def neighbour(x: float, step: int) -> float:
        return struct.unpack("<d", struct.pack("<q", struct.unpack("<q", struct.pack("<d", x))[0] + step))[0]

    rng = random.Random(11)
    values = [0, 5, True, 0.0, -0.0, -1.5, 1e-7, 5e-5, 0.0005, 0.001, 0.0009999999, 0.00099999999999, 86400.0,
              604799.9999999, 999999999.9999999, 1e9, 1e16, float("nan"), float("inf")]
    for _ in range(20_000):
        halfway = (rng.randrange(0, 10**13) + 0.5) / 1e7
        values += [rng.uniform(0, 1e6), rng.uniform(0, 2), 10 ** rng.uniform(-5, 9.2), halfway,
                   neighbour(halfway, 1), neighbour(halfway, -1), rng.randrange(0, 10**7) * 0.001]
    for value in values:
        assert seconds_text(value) == repr(round(value, 6)), value

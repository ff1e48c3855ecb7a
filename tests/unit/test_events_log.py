"""events.jsonl: what the recording link sees between a phone and its network, the merge
with the phones' timelines, and the file."""

from __future__ import annotations

import json
import random

from twisted.internet import defer
from twisted.internet.task import Clock

from labsim.fleet.fleet import FleetMember
from labsim.observe.events_log import EventLog, RecordingLink, merged_rows, row_to_json, write_events
from labsim.phones import yealink
from labsim.phones.events import Fetch, FetchResult
from labsim.phones.phone import Phone
from labsim.transport.driver import PhoneDriver
from labsim.wire import dhcp

MAC = "00:15:65:aa:00:01"


class FakeNetwork:
    """A PhoneNetwork that remembers what it was asked and answers downloads on demand."""

    def __init__(self):
        self.attached = []
        self.sent = []
        self.fetches: list[tuple[Fetch, defer.Deferred]] = []
        self.extra_calls = 0

    def attach(self, driver):
        self.attached.append(driver)

    def send_dhcp(self, driver, message):
        self.sent.append((driver, message))

    def fetch(self, request):
        deferred = defer.Deferred()
        self.fetches.append((request, deferred))
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
    assert log.rows == [(0.125, MAC, "fetch", "http://127.0.0.1/a.cfg", "ok", 5, 0.125, "")]
    assert log.in_flight == {}


def test_a_failed_download_is_recorded_as_an_error_and_the_failure_goes_on():
    clock, network, log, link, driver = make_link()
    failures = []
    link.fetch(Fetch(1, "tftp://127.0.0.1/x")).addErrback(failures.append)
    network.fetches[0][1].errback(RuntimeError("socket gone"))
    assert len(failures) == 1 and failures[0].check(RuntimeError)
    assert log.rows[0][4:] == ("error", 0, 0.0, "socket gone")


def test_downloads_still_running_at_the_end_are_unfinished():
    clock, network, log, link, driver = make_link()
    link.fetch(Fetch(1, "http://127.0.0.1/slow"))
    clock.advance(2.0)
    (row,) = log.unfinished(2.0)
    assert row == (2.0, MAC, "fetch", "http://127.0.0.1/slow", "unfinished", 0, 2.0, "the run ended first")


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

    def fetch_started(self, t, mac, client_ip, url, user_agent=""):
        self.calls.append(("fetch", t, client_ip, url, user_agent))
        return "flow"

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


def member(mac, events):
    phone = Phone(mac, "T46S", yealink, rng=random.Random(1))
    phone.events = events
    return FleetMember("desk", "yealink", phone, 0.0)


def test_merged_rows_are_in_time_order_with_the_phone_timelines():
    log = EventLog()
    log.rows.append((0.5, MAC, "dhcp", "out", 1, 1, "0.0.0.0"))
    log.rows.append((0.2, "00:15:65:aa:00:02", "dhcp", "out", 1, 2, "0.0.0.0"))
    log.fetch_started(0.9, MAC, "http://x/late")
    members = [member(MAC, [(0.0, "booting", "power on", "state"), (0.5, "dhcp", "", "state")]),
               member("00:15:65:aa:00:02", [(0.1, "booting", "power on", "state")])]
    rows = merged_rows(log, members, end_t=1.0)
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)
    assert [(row[0], row[2]) for row in rows] == [(0.0, "state"), (0.1, "state"), (0.2, "dhcp"), (0.5, "state"),
                                                  (0.5, "dhcp"), (1.0, "fetch")]
    assert rows[-1][4] == "unfinished"


def test_row_json_has_time_mac_kind_and_details():
    assert row_to_json((0.1234567, MAC, "dhcp", "in", 5, 0xAB, "10.0.0.1")) == {
        "t": 0.123457, "mac": MAC, "kind": "dhcp", "dir": "in", "type": "ACK", "xid": "0x000000ab",
        "yiaddr": "10.0.0.1"}
    assert row_to_json((1.0, MAC, "dhcp", "out", None, 1, "0.0.0.0"))["type"] == "None"  # plain BOOTP
    assert row_to_json((2.0, MAC, "fetch", "tftp://h/f", "ok", 9, 0.0123, "")) == {
        "t": 2.0, "mac": MAC, "kind": "fetch", "url": "tftp://h/f", "status": "ok", "bytes": 9, "latency_s": 0.0123,
        "detail": ""}
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

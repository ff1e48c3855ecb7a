"""``events.jsonl``: every state change and protocol exchange of a run, one JSON object a line.

Recording is the hot path, writing is not: during the run a DHCP message or a finished
download costs one tuple appended to a list (~0.3 µs); the phones' own timelines
(``phone.events``) are already such lists. At the end everything is merged in time order
and serialized at once.

Lines (times ``t`` in seconds from the start of the run, ``mac`` the phone's):

    {"t": 0.2031, "mac": "00:15:65:aa:00:01", "kind": "state", "state": "dhcp", "detail": ""}
    {"t": 0.2031, "mac": "...", "kind": "dhcp", "dir": "out", "type": "DISCOVER", "xid": "0x1a2b3c4d", "yiaddr": "0.0.0.0"}
    {"t": 0.2105, "mac": "...", "kind": "fetch", "url": "http://...", "status": "ok", "bytes": 91, "latency_s": 0.0021, "detail": ""}
    {"t": 3.5, "mac": null, "kind": "run", "complete": true, "end_reason": "all phones settled"}

``step`` lines look like ``state`` lines. A fetch line's ``t`` is when the download ended
(its request left at ``t - latency_s``); downloads still running when the run ended are
written with status ``unfinished``. The ``run`` line is always last.

``RecordingLink`` is where recording happens: it stands between one phone's driver and
the fleet's network (any ``PhoneNetwork``), so neither the relay nor the fetchers carry
any observation code, and a capture (``observe.pcap``) costs a ``None`` check when off.
"""

from __future__ import annotations

import json
import os
from operator import itemgetter

from twisted.python.failure import Failure

from labsim.phones.events import FetchResult
from labsim.wire import dhcp

DHCP_TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE",
              8: "INFORM"}
KINDS = ("state", "step", "dhcp", "fetch", "run")
_BROADCAST_FLAG = 0x8000


class EventLog:
    """The run's protocol exchanges, as tuples: appended during the run, written at the end.

    ``dhcp`` rows:  (t, mac, "dhcp", direction, message type, xid, yiaddr)
    ``fetch`` rows: (t, mac, "fetch", url, status, bytes, latency_s, detail)
    """

    def __init__(self):
        self.rows: list[tuple] = []
        self.in_flight: dict[int, tuple[float, str, str]] = {}  # token -> (started, mac, url)
        self._token = 0

    def dhcp(self, t: float, mac: str, direction: str, message: dhcp.DhcpMessage) -> None:
        self.rows.append((t, mac, "dhcp", direction, message.message_type, message.xid, message.yiaddr))

    def fetch_started(self, t: float, mac: str, url: str) -> int:
        self._token += 1
        self.in_flight[self._token] = (t, mac, url)
        return self._token

    def fetch_finished(self, token: int, t: float, result) -> None:
        entry = self.in_flight.pop(token, None)
        if entry is None:
            return
        started, mac, url = entry
        size = len(result.body) if result.body is not None else 0
        self.rows.append((t, mac, "fetch", url, result.status, size, t - started, result.detail))

    def unfinished(self, now: float) -> list[tuple]:
        """Fetch rows for the downloads still running at ``now``."""
        return [(now, mac, "fetch", url, "unfinished", 0, now - started, "the run ended first")
                for started, mac, url in self.in_flight.values()]


def merged_rows(log: EventLog | None, members, *, end_t: float | None = None) -> list[tuple]:
    """Every row of the run in time order: the phones' timelines and the log's exchanges.

    Phone rows are (t, mac, kind, state, detail). The sort is stable, so events at the
    same instant keep the order they happened in within each source."""
    rows: list[tuple] = []
    for member in members:
        mac = member.phone.mac
        rows.extend((t, mac, kind, state, detail) for t, state, detail, kind in member.phone.events)
    if log is not None:
        rows.extend(log.rows)
        if end_t is not None:
            rows.extend(log.unfinished(end_t))
    rows.sort(key=itemgetter(0))
    return rows


def row_to_json(row: tuple) -> dict:
    kind = row[2]
    if kind == "dhcp":
        t, mac, _, direction, message_type, xid, yiaddr = row
        return {"t": round(t, 6), "mac": mac, "kind": "dhcp", "dir": direction,
                "type": DHCP_TYPES.get(message_type, str(message_type)), "xid": f"0x{xid:08x}", "yiaddr": yiaddr}
    if kind == "fetch":
        t, mac, _, url, status, size, latency, detail = row
        return {"t": round(t, 6), "mac": mac, "kind": "fetch", "url": url, "status": status, "bytes": size,
                "latency_s": round(latency, 6), "detail": detail}
    t, mac, kind, state, detail = row
    return {"t": round(t, 6), "mac": mac, "kind": kind, "state": state, "detail": detail}


def write_events(rows: list[tuple], report_dir: str, *, complete: bool, end_reason: str,
                 end_t: float) -> str:
    """Writes ``events.jsonl`` atomically (a reader never sees half a file)."""
    os.makedirs(report_dir, exist_ok=True)
    path = os.path.join(report_dir, "events.jsonl")
    temporary = path + ".tmp"
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
    with open(temporary, "w", encoding="utf-8", buffering=1 << 20) as handle:
        for row in rows:
            handle.write(dumps(row_to_json(row)))
            handle.write("\n")
        handle.write(dumps({"t": round(end_t, 6), "mac": None, "kind": "run", "complete": complete,
                            "end_reason": end_reason, "events": len(rows)}))
        handle.write("\n")
    os.replace(temporary, path)
    return path


class _DriverSide:
    """What the network sees as the phone's driver: replies are recorded, then delivered.
    Anything else the network asks of a driver goes straight to the real one."""

    __slots__ = ("link", "driver", "phone")

    def __init__(self, link: "RecordingLink", driver):
        self.link = link
        self.driver = driver
        self.phone = driver.phone

    def dhcp_received(self, message) -> None:
        self.link.dhcp_in(message)
        self.driver.dhcp_received(message)

    def __getattr__(self, name):
        return getattr(self.driver, name)


class RecordingLink:
    """One phone's view of the network, recorded (and captured when ``capture`` is set).

    Given to a ``PhoneDriver`` in place of the network; forwards everything to ``network``.
    """

    __slots__ = ("network", "log", "clock", "epoch", "capture", "driver_side", "mac")

    def __init__(self, network, log: EventLog, clock, epoch: float, capture=None):
        self.network = network
        self.log = log
        self.clock = clock
        self.epoch = epoch
        self.capture = capture
        self.driver_side: _DriverSide | None = None
        self.mac = ""

    def attach(self, driver) -> None:
        self.driver_side = _DriverSide(self, driver)
        self.mac = driver.phone.mac
        self.network.attach(self.driver_side)

    def send_dhcp(self, driver, message) -> None:
        now = self.clock.seconds()
        self.log.dhcp(now - self.epoch, self.mac, "out", message)
        if self.capture is not None:
            self.capture.dhcp_from_phone(now, self.driver_side.phone.mac_bytes, dhcp.encode(message), message.ciaddr)
        self.network.send_dhcp(self.driver_side, message)

    def dhcp_in(self, message) -> None:
        now = self.clock.seconds()
        self.log.dhcp(now - self.epoch, self.mac, "in", message)
        if self.capture is not None:
            self.capture.dhcp_to_phone(now, self.driver_side.phone.mac_bytes, dhcp.encode(message),
                                       message.option_ip(54), message.yiaddr,
                                       bool(message.flags & _BROADCAST_FLAG))

    def fetch(self, request):
        now = self.clock.seconds()
        token = self.log.fetch_started(now - self.epoch, self.mac, request.url)
        flow = None
        if self.capture is not None:
            lease = self.driver_side.phone.lease
            flow = self.capture.fetch_started(now, self.driver_side.phone.mac_bytes,
                                              lease.address if lease is not None else None,
                                              request.url, request.user_agent)
        deferred = self.network.fetch(request)
        deferred.addBoth(self._fetched, token, flow)
        return deferred

    def _fetched(self, outcome, token: int, flow):
        # A failure goes on to the driver unchanged (it makes it an "error" result);
        # the log records it the same way.
        result = outcome if isinstance(outcome, FetchResult) else FetchResult(
            "error", detail=outcome.getErrorMessage() if isinstance(outcome, Failure) else repr(outcome))
        now = self.clock.seconds()
        self.log.fetch_finished(token, now - self.epoch, result)
        if self.capture is not None:
            self.capture.fetch_finished(flow, now, result)
        return outcome

    def __getattr__(self, name):
        # Whatever else a network offers a driver (stats, close, later additions).
        return getattr(self.network, name)

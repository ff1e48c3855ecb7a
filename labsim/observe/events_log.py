"""``events.jsonl``: every state change and protocol exchange of a run, one JSON object a line.

Recording is the hot path, writing is not: during the run a DHCP message, a finished
download or a phone's state change or step costs one tuple appended to the log's list
(~0.3 µs); ``observe.events_stream`` writes that list to the file every few seconds and
lets go of it, so a run holds seconds of events, not all of them. A phone keeps its own
first and last events (``phone.events``, for its report entry, the dashboard and the
phones that upload their recent log); ``EventLog.phone_event`` trims the middle away.

Lines (times ``t`` in seconds from the start of the run, ``mac`` the phone's):

    {"t": 0.2031, "mac": "00:15:65:aa:00:01", "kind": "state", "state": "dhcp", "detail": ""}
    {"t": 0.2031, "mac": "...", "kind": "dhcp", "dir": "out", "type": "DISCOVER", "xid": "0x1a2b3c4d", "yiaddr": "0.0.0.0"}
    {"t": 0.2105, "mac": "...", "kind": "fetch", "url": "http://...", "status": "ok", "bytes": 91, "latency_s": 0.0021, "detail": "", "md5": "9e1c..."}
    {"t": 0.2300, "mac": "...", "kind": "upload", "url": "http://.../0004f2aa0001-app.log", "status": "ok", "bytes": 412, "latency_s": 0.0018, "detail": "", "md5": "..."}
    {"t": 3.5, "mac": null, "kind": "run", "complete": true, "end_reason": "all phones settled"}

``step`` lines look like ``state`` lines. A fetch line's ``t`` is when the download ended
(its request left at ``t - latency_s``); downloads still running when the run ended are
written with status ``unfinished``. An ``upload`` line (an HTTP PUT of Polycom's logs and
overrides) has the same fields; its ``bytes`` is the size of the body put, whatever the
outcome. The ``run`` line is always last.

``RecordingLink`` is where recording happens: it stands between one phone's driver and
the fleet's network (any ``PhoneNetwork``), so neither the relay nor the fetchers carry
any observation code, and a capture (``observe.pcap``) costs a ``None`` check when off.
With a capture, a download's frames start when the network calls back ``connecting``
(its request left, to the address the lab's DNS gave): one that never left has none.
SIP PnP datagrams go to the capture only (they are in the phones' own step lines).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque

from twisted.internet import defer
from twisted.python.failure import Failure

from labsim.observe.log_text import client_text
from labsim.phones.events import FetchResult
from labsim.phones.packed import SharedValues, md5_hex
from labsim.wire import dhcp

DHCP_TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE",
              8: "INFORM"}
KINDS = ("state", "step", "dhcp", "fetch", "upload", "action", "run")
_STORY_KINDS = ("dhcp", "fetch", "upload")  # the rows a phone's story shows (labsim.ui.story)
_BROADCAST_FLAG = 0x8000


class EventLog:
    """The run's events, as tuples in the order they happened, until the stream writes them.

    ``dhcp`` rows:  (t, mac, "dhcp", direction, message type, xid, yiaddr)
    ``fetch`` rows: (t, mac, "fetch", url, status, bytes, latency_s, detail, md5 of the body or "")
    ``upload`` rows: (t, mac, "upload", url, status, bytes, latency_s, detail, md5), bytes the body's size
    ``state``/``step`` rows: (t, mac, kind, state, detail), from the phones (``phone_event``)

    ``keep_per_phone``: a phone keeps its first ``keep // 2`` and its last events in
    ``phone.events`` (``phone.events_dropped`` counts the others, which are in the file).
    ``recent`` holds the last rows written, for the dashboard's view of one phone.
    """

    def __init__(self, keep_per_phone: int = 200, recent: int = 20_000):
        self.rows: list[tuple] = []
        self.head = keep_per_phone // 2
        self.tail = keep_per_phone - self.head
        # Trimmed when the list is half as long again as kept: one slice deletion per
        # ``tail // 2`` events, not one per event.
        self._trim_at = keep_per_phone + max(1, self.tail // 2)
        self.recent: deque[tuple] = deque(maxlen=recent)
        self.written = 0  # rows taken by the stream so far (their positions: 0 .. written - 1)
        # token -> (started, mac, url, kind, bytes: an upload's body size, a download's 0, an upload's MD5)
        self.in_flight: dict[int, tuple[float, str, str, str, int, str]] = {}
        self._token = 0
        self.series = None  # an observe.series.TimeSeries counting requests as they go, or None
        self._story_rows = 0  # keep_for_story: each phone's last exchanges kept after they are written
        self.by_phone: dict[str, deque] = {}

    def keep_for_story(self, rows_per_phone: int = 64) -> None:
        """A dashboard watches (``--ui``): keep each phone's last ``rows_per_phone`` DHCP
        and transfer rows after the stream writes them, so the phone's story has them
        however many other phones logged since (``recent`` is the whole fleet's last
        rows: a 10,000-phone storm pushes a phone out of it in seconds). Only with --ui:
        one small ring per phone, the rows themselves already made."""
        self._story_rows = rows_per_phone

    def phone_event(self, phone, event: tuple, count: int | None = None) -> None:
        """A phone's state change or step, ``(t, state, detail, kind)``, which the phone
        has just appended to its own ``events`` (the phone's ``journal`` is this log);
        ``count``: how many events the phone holds now, when the caller knows."""
        t, state, detail, kind = event
        self.rows.append((t, phone.mac, kind, state, detail))
        if (len(phone.events) if count is None else count) > self._trim_at:
            events = phone.events
            drop = len(events) - self.head - self.tail
            del events[self.head:self.head + drop]
            phone.events_dropped += drop

    def take(self) -> list[tuple]:
        """The rows recorded since the last take (the stream writes them); they stay
        readable in ``recent`` for a while."""
        rows, self.rows = self.rows, []
        self.recent.extend(rows)
        if self._story_rows:
            rings, size = self.by_phone, self._story_rows
            for row in rows:
                if row[2] in _STORY_KINDS:
                    ring = rings.get(row[1])
                    if ring is None:
                        ring = rings[row[1]] = deque(maxlen=size)
                    ring.append(row)
        self.written += len(rows)
        return rows

    def rows_since(self, position: int) -> tuple[list[tuple], int]:
        """The rows recorded from ``position`` on (as far as ``recent`` still has them),
        and the position to ask from next time."""
        end = self.written + len(self.rows)
        wanted = end - position
        if wanted <= 0:
            return [], end
        if wanted <= len(self.rows):
            return self.rows[len(self.rows) - wanted:], end
        older = min(wanted - len(self.rows), len(self.recent))
        return [self.recent[i] for i in range(len(self.recent) - older, len(self.recent))] + self.rows, end

    def phone_rows(self, mac: str) -> list[tuple]:
        """One phone's rows still in memory (recently written, and not yet written)."""
        if self._story_rows:
            return [*self.by_phone.get(mac, ()), *(row for row in self.rows if row[1] == mac)]
        return [row for source in (self.recent, self.rows) for row in source if row[1] == mac]

    def dhcp(self, t: float, mac: str, direction: str, message: dhcp.DhcpMessage) -> None:
        self.rows.append((t, mac, "dhcp", direction, message.message_type, message.xid, message.yiaddr))
        if self.series is not None and direction == "out":
            self.series.request("dhcp", t)

    def fetch_started(self, t: float, mac: str, url: str) -> int:
        self._token += 1
        self.in_flight[self._token] = (t, mac, url, "fetch", 0, "")
        if self.series is not None:
            self.series.fetch(url, t)
        return self._token

    def upload_started(self, t: float, mac: str, url: str, size: int, md5: str = "") -> int:
        self._token += 1
        self.in_flight[self._token] = (t, mac, url, "upload", size, md5)
        if self.series is not None:
            self.series.fetch(url, t)
        return self._token


    def fetch_finished(self, token: int, t: float, result) -> None:
        """The end of a download or an upload (``token`` says which)."""
        entry = self.in_flight.pop(token, None)
        if entry is None:
            return
        started, mac, url, kind, size, md5 = entry
        if kind == "fetch":
            # ~1 µs for a configuration file: the phone's story and events.jsonl show what it got.
            size, md5 = (len(result.body), md5_hex(result.body)) if result.body is not None else (0, "")
        self.rows.append((t, mac, kind, url, result.status, size, t - started, result.detail, md5))

    def unfinished(self, now: float) -> list[tuple]:
        """Fetch and upload rows for the transfers still running at ``now``."""
        return [(now, mac, kind, url, "unfinished", size, now - started, "the run ended first", md5)
                for started, mac, url, kind, size, md5 in self.in_flight.values()]


# URLs and details hold what servers and clients sent (paths, error texts): escaped by the
# one shared rule; long enough for any real URL or message.
URL_LIMIT = DETAIL_LIMIT = 2000


_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode


def _verbatim(text) -> bool:
    """Whether ``text`` goes into a line as it is: a str, printable (client_text leaves it
    alone), without the two characters JSON escapes among printable ones, and no longer
    than client_text keeps (else the line goes through the encoder, which writes the same
    for anything that passes here)."""
    return (type(text) is str and len(text) <= URL_LIMIT and text.isprintable() and '"' not in text
            and "\\" not in text)


# The parts of a line after its MAC, by the row's texts: a fleet's lines repeat a few
# thousand (kind, state, detail) and (kind, url, status, detail, md5) combinations, each
# checked and formatted once; None when a text is not verbatim (the encoder writes it).
# Keys hold only texts (a str equals no other type), so an entry fits every row it is found for.
def _state_rest(key: tuple) -> str | None:
    kind, state, detail = key
    if _verbatim(state) and _verbatim(detail):
        return f'", "kind": "{kind}", "state": "{state}", "detail": "{detail}"}}'
    return None


def _transfer_rest(key: tuple) -> tuple[str, str] | None:
    kind, url, status, detail, md5 = key
    if _verbatim(url) and _verbatim(status) and _verbatim(detail) and _verbatim(md5):
        return (f'", "kind": "{kind}", "url": "{url}", "status": "{status}", "bytes": ',
                f', "detail": "{detail}", "md5": "{md5}"}}')
    return None


_STATE_RESTS = SharedValues(1 << 17, _state_rest)
_TRANSFER_RESTS = SharedValues(1 << 17, _transfer_rest)
_MACS = SharedValues(1 << 17, _verbatim)
_last_time = [1.0, "1.0"]  # the last line's time (a float of at least 0.001) and its text


def seconds_text(x) -> str:
    """``round(x, 6)`` as the JSON encoder writes it (its ``repr``), at half the cost for
    the times and latencies of a run (a float from 0.001 to 1e9): ``%.6f`` rounds the
    exact binary value to six places as ``round`` does (both correctly rounded), and a
    decimal of at most 15 significant digits is what ``repr`` writes for the float
    nearest it (two such decimals never share a float), trailing zeros aside. Anything
    else (ints, tiny or huge values, -0.0, NaN) goes through ``round`` and ``repr``."""
    if type(x) is float and 0.001 <= x < 1e9:
        text = ("%.6f" % x).rstrip("0")
        return text + "0" if text[-1] == "." else text
    return repr(round(x, 6))


# Latency (a float of at least 0.001) -> its text: a fleet's downloads take the same few
# latencies (the lab's hop, a fault's delay) over and over. Only floats go in and are
# looked up (an int equal to a float would find the float's text).
_latency_texts = SharedValues(4096, seconds_text)


def _latency_text(latency) -> str:
    if type(latency) is float and latency >= 0.001:
        return _latency_texts[latency]
    return seconds_text(latency)


def _time_text(t) -> str:
    """``seconds_text(t)``; a run's lines come in time order, many at one moment."""
    last = _last_time
    if t is last[0] or (type(t) is float and t == last[0]):
        return last[1]
    text = seconds_text(t)
    if type(t) is float and t >= 0.001:
        last[0], last[1] = t, text
    return text


def row_line(row: tuple) -> str:
    """One line of events.jsonl (without its newline). The rows a long run is made of
    (DHCP, downloads, the phones' states and steps) are formatted directly when every
    text in them is plain (``_verbatim``: nothing client_text or the encoder would change),
    so the line is what the JSON encoder would write, at a fraction of its cost."""
    kind = row[2]
    try:
        if kind == "state" or kind == "step":
            rest = _STATE_RESTS[row[2:]]
            if rest is not None and _MACS[row[1]]:
                return f'{{"t": {_time_text(row[0])}, "mac": "{row[1]}{rest}'
        elif kind == "dhcp":
            t, mac, _, direction, message_type, xid, yiaddr = row
            kind = DHCP_TYPES.get(message_type)
            if kind is not None and mac is not None:
                return (f'{{"t": {_time_text(t)}, "mac": "{mac}", "kind": "dhcp", "dir": "{direction}", '
                        f'"type": "{kind}", "xid": "0x{xid:08x}", "yiaddr": "{yiaddr}"}}')
        elif kind == "fetch" or kind == "upload":
            t, mac, _, url, status, size, latency, detail, md5 = row
            parts = _TRANSFER_RESTS[(kind, url, status, detail, md5)]
            if parts is not None and type(size) is int and _MACS[mac]:
                return (f'{{"t": {_time_text(t)}, "mac": "{mac}{parts[0]}{size!r}, '
                        f'"latency_s": {_latency_text(latency)}{parts[1]}')
    except (TypeError, ValueError):  # an unhashable text, a row of another shape: the encoder's way
        pass
    return _DUMPS(row_to_json(row))


def row_to_json(row: tuple) -> dict:
    kind = row[2]
    if kind == "dhcp":
        t, mac, _, direction, message_type, xid, yiaddr = row
        return {"t": round(t, 6), "mac": mac, "kind": "dhcp", "dir": direction,
                "type": DHCP_TYPES.get(message_type, str(message_type)), "xid": f"0x{xid:08x}", "yiaddr": yiaddr}
    if kind == "fetch" or kind == "upload":
        t, mac, _, url, status, size, latency, detail, md5 = row
        return {"t": round(t, 6), "mac": mac, "kind": kind, "url": client_text(url, URL_LIMIT), "status": status,
                "bytes": size, "latency_s": round(latency, 6), "detail": client_text(detail, DETAIL_LIMIT), "md5": md5}
    if kind == "action":
        t, _, _, entry, action, outcome = row
        return {"t": round(t, 6), "mac": None, "kind": "action", "entry": entry, "action": action,
                "outcome": client_text(outcome, DETAIL_LIMIT)}
    t, mac, kind, state, detail = row
    return {"t": round(t, 6), "mac": mac, "kind": kind, "state": state, "detail": client_text(detail, DETAIL_LIMIT)}


def write_events(rows: list[tuple], report_dir: str, *, complete: bool, end_reason: str,
                 end_t: float) -> str:
    """Writes ``events.jsonl`` atomically (a reader never sees half a file)."""
    os.makedirs(report_dir, exist_ok=True)
    path = os.path.join(report_dir, "events.jsonl")
    temporary = path + ".tmp"
    dumps = _DUMPS
    with open(temporary, "w", encoding="utf-8", buffering=1 << 20) as handle:
        for row in rows:
            handle.write(row_line(row))
            handle.write("\n")
        handle.write(dumps({"t": round(end_t, 6), "mac": None, "kind": "run", "complete": complete,
                            "end_reason": end_reason, "events": len(rows)}))
        handle.write("\n")
    os.replace(temporary, path)
    return path


class _Captured:
    """A download's or upload's flow in the capture, once its request has left (None
    until then, and for good when it never does)."""

    __slots__ = ("flow",)

    def __init__(self):
        self.flow = None


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

    def sip_received(self, message, source: tuple[str, int], data: bytes | None = None) -> None:
        """``data``: the datagram as received, when the network has it (the capture shows
        those bytes; without them, the message encoded again)."""
        self.link.sip_in(message, source, data)
        self.driver.sip_received(message, source)

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

    def _address(self) -> str | None:
        lease = self.driver_side.phone.lease
        return lease.address if lease is not None else None

    def _fetch_begins(self, request):
        """Record a download's start: the log's token, and (capturing) the holder of its
        flow with the network's ``connecting`` callback that writes it (else None, None)."""
        token = self.log.fetch_started(self.clock.seconds() - self.epoch, self.mac, request.url)
        if self.capture is None:
            return token, None, None
        return (token, *self._captured(self.capture.fetch_started, request))

    def _captured(self, started, request, *body):
        """(the holder of a capture flow, the ``connecting`` callback that opens it with
        ``started``: the capture's fetch_started, or upload_started with the ``body``)."""
        captured = _Captured()

        def connecting(address: str) -> None:
            # The request leaves now, for the address the lab's DNS gave: its frames start
            # here. One that never left (its name did not resolve) has none.
            captured.flow = started(self.clock.seconds(), self.driver_side.phone.mac_bytes, self._address(),
                                    request.url, *body, request.user_agent, request.credentials, server_ip=address)
        return captured, connecting

    def fetch(self, request):
        token, captured, connecting = self._fetch_begins(request)
        if connecting is None:
            deferred = self.network.fetch(request)
        else:
            deferred = self.network.fetch(request, connecting=connecting)
        deferred.addBoth(self._fetched, token, captured, False)
        return deferred

    @property
    def fetch_into(self):
        """The network's Deferred-free download (see PhoneDriver), recorded, when it has one."""
        return self._fetch_into if getattr(self.network, "fetch_into", None) is not None else None

    def _fetch_into(self, request, deliver) -> None:
        if self.capture is None:  # the common case, with two calls fewer a download
            log, clock, epoch = self.log, self.clock, self.epoch
            token = log.fetch_started(clock.seconds() - epoch, self.mac, request.url)

            def answered_uncaptured(request, result) -> None:
                log.fetch_finished(token, clock.seconds() - epoch, result)
                deliver(request, result)

            self.network.fetch_into(request, answered_uncaptured)
            return
        token, captured, connecting = self._fetch_begins(request)

        def answered(request, result) -> None:
            self._fetched(result, token, captured, False)
            deliver(request, result)

        self.network.fetch_into(request, answered, connecting)

    def upload(self, request):
        """A ``Put`` (Polycom's logs and overrides): recorded and captured like a download."""
        upload = getattr(self.network, "upload", None)
        if upload is None:  # answered as PhoneDriver answers for a network without uploads
            return defer.succeed(FetchResult("error", detail="this network does not carry uploads"))
        body = request.body or b""
        token = self.log.upload_started(self.clock.seconds() - self.epoch, self.mac, request.url, len(body),
                                        hashlib.md5(body).hexdigest())
        if self.capture is None:
            deferred = upload(request)
            captured = None
        else:
            captured, connecting = self._captured(self.capture.upload_started, request, body)
            deferred = upload(request, connecting=connecting)
        deferred.addBoth(self._fetched, token, captured, True)
        return deferred

    def _fetched(self, outcome, token: int, captured, is_upload: bool):
        # A failure goes on to the driver unchanged (it makes it an "error" result);
        # the log records it the same way.
        result = outcome if isinstance(outcome, FetchResult) else FetchResult(
            "error", detail=outcome.getErrorMessage() if isinstance(outcome, Failure) else repr(outcome))
        now = self.clock.seconds()
        self.log.fetch_finished(token, now - self.epoch, result)
        if captured is not None:
            if is_upload:
                self.capture.upload_finished(captured.flow, now, result)
            else:
                self.capture.fetch_finished(captured.flow, now, result)
        return outcome

    def send_sip(self, driver, message, to) -> None:
        if self.capture is not None:
            self.capture.sip_from_phone(self.clock.seconds(), self.driver_side.phone.mac_bytes, self._address(),
                                        message.encode(), to)
        # The network answers the phone through what it was given at attach time, so
        # replies come back through the link too (InMemoryNetwork answers its argument).
        self.network.send_sip(self.driver_side, message, to)

    def sip_in(self, message, source: tuple[str, int], data: bytes | None) -> None:
        if self.capture is not None:
            self.capture.sip_to_phone(self.clock.seconds(), self.driver_side.phone.mac_bytes, self._address(),
                                      data if data is not None else message.encode(), source)

    def __getattr__(self, name):
        # Whatever else a network offers a driver (stats, close, later additions).
        return getattr(self.network, name)

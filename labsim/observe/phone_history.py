"""One phone's whole history from a run's ``events.jsonl``: ``labsim story REPORT_DIR MAC``.

``report.json`` keeps a long run's first and last events of each phone (``events_dropped``
says how many it left out); ``events.jsonl`` keeps every line: a week of 2,000 phones is
~1.5 million lines. This finds one phone's lines, and the timeline's actions (which
concern every phone), and says each as the dashboard's phone story does, at its moment
on the run's calendar: the simulated calendar of a virtual run, the wall clock (UTC) of a
run on sockets, so that a line reads beside a real server's log.

The file is searched where it lies (``mmap``, the bytes compared in C), not parsed: the
lines that name the phone are the only ones decoded.
"""

from __future__ import annotations

import json
import mmap
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator

from labsim.observe.story_words import dhcp_words, fetch_words

EVENTS = "events.jsonl"
KINDS = ("state", "step", "dhcp", "fetch", "upload", "action")
_MAC = re.compile(r"^[0-9a-f]{12}$")
_ACTION = b'"mac": null, "kind": "action"'
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class HistoryError(ValueError):
    """A report folder, MAC or window that cannot be read: said naming it."""


def normal_mac(text: str) -> str:
    """A MAC in any spelling (``00:15:65:00:00:01``, ``00-15-65-00-00-01``, ``001565000001``,
    upper or lower case) as events.jsonl writes it."""
    bare = re.sub(r"[:.\-]", "", text.strip()).lower()
    if not _MAC.match(bare):
        raise HistoryError(f"{text!r} is not a MAC address (e.g. 00:15:65:00:00:01)")
    return ":".join(bare[i:i + 2] for i in range(0, 12, 2))


@dataclass(frozen=True)
class RunCalendar:
    """Where a run's ``t`` = 0 lies (epoch seconds, UTC), and on which clock."""

    start: float | None  # None: the report did not say (a run still going, no report.json yet)
    virtual: bool

    def moment(self, t: float) -> str:
        if self.start is None:
            return ""
        moment = _EPOCH + timedelta(milliseconds=round((self.start + t) * 1000))  # rounded as offset_text rounds
        return moment.strftime("%a %Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def run_calendar(report_dir: str) -> RunCalendar:
    """The calendar of the run in ``report_dir``, from the head of its report.json (the
    fields before the phones: the file of a large run is tens of MB), or of a shard's
    folder from its shard.json (``start_at``: the instant its t = 0 is, wall clock or
    the virtual clock's epoch, which is then where the lab's calendar starts)."""
    try:
        with open(os.path.join(report_dir, "report.json"), encoding="utf-8") as handle:
            head = handle.read(16384)
    except OSError:
        return _shard_calendar(report_dir)
    simulated = re.search(r'"simulated":\s*\{\s*"from":\s*"([^"]+)"', head)
    started = re.search(r'"started":\s*"([^"]+)"', head)
    found = simulated or started
    if found is None:
        return RunCalendar(None, False)
    try:
        return RunCalendar(datetime.fromisoformat(found.group(1)).timestamp(), simulated is not None)
    except ValueError:
        return RunCalendar(None, False)


def _shard_calendar(report_dir: str) -> RunCalendar:
    try:
        with open(os.path.join(report_dir, "shard.json"), encoding="utf-8") as handle:
            head = handle.read(65536)
    except OSError:
        return RunCalendar(None, False)
    start = re.search(r'"start_at":\s*(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)', head)
    calendar = re.search(r'"calendar_from":\s*(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)', head)
    if start is None:
        return RunCalendar(None, False)
    at = float(start.group(1))
    return RunCalendar(at, calendar is not None and float(calendar.group(1)) == at)


def events_path(report_dir: str) -> str:
    """The run's events.jsonl. A run still going writes ``events.jsonl.tmp`` (renamed when
    it ends), and a lab the dashboard keeps open also copies it so far to events.jsonl
    each time it writes its report: the newer of the two has every line so far."""
    if not os.path.isdir(report_dir):
        raise HistoryError(f"{report_dir}: no such folder (give a run's --report-dir)")
    found = [path for path in (os.path.join(report_dir, EVENTS), os.path.join(report_dir, EVENTS + ".tmp"))
             if os.path.isfile(path)]
    if not found:
        raise HistoryError(f"{report_dir}: no {EVENTS} here (labsim run writes one into its --report-dir)")
    return max(found, key=os.path.getmtime)


def phone_lines(path: str, mac: str, *, actions: bool = True) -> Iterator[dict]:
    """The lines of ``path`` that name ``mac`` (and the timeline's actions), decoded, in
    file order: time order."""
    if os.path.getsize(path) == 0:
        return
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        needles = [b'"mac": "' + mac.encode() + b'"'] + ([_ACTION] if actions else [])
        found = [data.find(needle) for needle in needles]
        while True:
            live = [(position, index) for index, position in enumerate(found) if position >= 0]
            if not live:
                return
            position, index = min(live)
            start = data.rfind(b"\n", 0, position) + 1
            end = data.find(b"\n", position)
            end = len(data) if end < 0 else end
            try:
                yield json.loads(data[start:end])
            except ValueError:  # the last line of a file still being written
                return
            found[index] = data.find(needles[index], end)


@dataclass(frozen=True)
class Window:
    """The part of the run to show: ``t`` from ``since`` to ``until`` (seconds from the start)."""

    since: float = 0.0
    until: float = float("inf")

    def holds(self, t: float) -> bool:
        return self.since <= t <= self.until


def window_bound(text: str, calendar: RunCalendar, option: str) -> float:
    """``--from``/``--to``: a duration after the start (90s, 36h, 2d12h) or a date and time
    on the run's calendar (2026-01-10 06:00), as seconds from the start."""
    from labsim.scenario.calendar_start import is_calendar_moment, parse_start
    from labsim.scenario.durations import parse_moment

    try:
        if not is_calendar_moment(text):
            return parse_moment(text)
        if calendar.start is None:
            raise HistoryError(f"{option} {text}: this run's report.json does not say when it started; "
                               "give a time after the start (36h, 2d12h)")
        return parse_start(text) - calendar.start
    except ValueError as exc:
        raise HistoryError(f"{option}: {exc}") from None


def offset_text(t: float) -> str:
    """``+1d 14:00:03.123``: how long after the run's start."""
    whole, milliseconds = divmod(round(t * 1000), 1000)  # to the millisecond, as the moment beside it
    days, rest = divmod(whole, 86400)
    return f"+{days}d {rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}.{milliseconds:03d}"


def line_words(line: dict) -> str:
    """One line of events.jsonl as the dashboard's phone story says it."""
    kind = line.get("kind")
    if kind == "state":
        return line.get("state", "") + (f": {line['detail']}" if line.get("detail") else "")
    if kind == "step":
        return line.get("detail", "")
    if kind == "dhcp":
        return dhcp_words(line.get("type", "?"), line.get("dir", ""), line.get("yiaddr", ""), line.get("xid", ""))
    if kind in ("fetch", "upload"):
        return fetch_words(kind, line.get("url", ""), line.get("status", ""), line.get("bytes", 0),
                           line.get("latency_s", 0.0), line.get("detail", ""), line.get("md5", ""))
    if kind == "action":
        return f"{line.get('action')} ({line.get('entry')}): {line.get('outcome')}"
    return json.dumps(line)


def history_text(line: dict, calendar: RunCalendar) -> str:
    t = float(line.get("t") or 0.0)
    moment = calendar.moment(t)
    return (f"{moment}  " if moment else "") + f"{offset_text(t)}  {line.get('kind', ''):<6}  {line_words(line)}"

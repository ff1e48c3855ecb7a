"""``events.jsonl`` written while the run goes on, so memory holds seconds of it, not all of it.

Every run records its events in an ``EventLog`` (the phones' state changes and steps, the
DHCP messages, the downloads and uploads, in the order they happened) and writes them
here every few seconds (``flush``): the timeline's actions since the last flush and the
log's rows, sorted stably by time, then let go of. Rows are recorded when they happen
(a download's row when it ends, at its end time), so each flush's rows come after the
previous flush's in time. A run on sockets flushes every few wall seconds; a run in
virtual time every simulated hour. The file is complete and in time order when the run
ends, written under a temporary name and renamed (a reader never sees half a file); a
lab the dashboard keeps open gets a copy of it so far (``snapshot``).

A shard's stream (``index=True``) also writes ``events.jsonl.index`` (``observe.events_index``):
where each line ends and its time, so the merge of the shards' files copies their bytes
without reading their lines.

Every ``archive_every`` flushes, the phones' older download timings move into the
run's ``StageArchive`` (numbers, not objects), so a long run's phones stay small too.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import deque
from operator import itemgetter

from labsim.observe.events_index import INDEX_NAME, index_record
from labsim.observe.events_log import row_line


class EventStream:
    def __init__(self, report_dir: str, log, members=(), *, archive=None, archive_every: int = 1,
                 index: bool = False):
        os.makedirs(report_dir, exist_ok=True)
        self.path = os.path.join(report_dir, "events.jsonl")
        self._temporary = self.path + ".tmp"
        self.index_path = os.path.join(report_dir, INDEX_NAME)
        # Opened first: a reader that finds events.jsonl finds the index, if there is one.
        self._index = open(self.index_path + ".tmp", "wb", buffering=1 << 16) if index else None
        if not index:  # an earlier run's index would describe another file
            for stale in (self.index_path, self.index_path + ".tmp"):
                if os.path.exists(stale):
                    os.remove(stale)
        self._handle = open(self._temporary, "w", encoding="utf-8", buffering=1 << 20)
        self._dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
        self.log = log
        self.members = members
        self._actions = 0
        self.rows_written = 0
        self.archive = archive  # observe.stage_archive.StageArchive: phones' older timings go there
        self.archive_every = archive_every
        self._flushes = 0
        self._queued: deque[list[tuple]] = deque()  # taken, sorted, not written yet
        self._offset = 0  # rows of the first queued list already written
        self.queued = 0  # rows taken and not written yet

    def flush(self, actions=()) -> None:
        self.take(actions)
        self.write_some(None)

    def take(self, actions=()) -> None:
        """Queue what was recorded since the last take, sorted, for ``write_some`` (no
        formatting yet: cheap)."""
        rows: list[tuple] = [(record.t, None, "action", record.entry, record.action, record.outcome)
                             for record in actions[self._actions:]]
        self._actions = len(actions)
        self._flushes += 1
        if self.archive is not None and self._flushes % self.archive_every == 0:
            take = self.archive.take
            for member in self.members:
                take(member.phone)
        rows.extend(self.log.take())
        rows.sort(key=itemgetter(0))
        if rows:
            self._queued.append(rows)
            self.queued += len(rows)

    def write_some(self, limit: int | None) -> bool:
        """Write up to ``limit`` queued rows (None: all), in order; True while rows remain.
        A run on sockets writes a few thousand a reactor turn: two seconds of a 5,000
        phones/s fleet's rows written in one turn stalled its power-on pacer by ~0.5 s."""
        queued = self._queued
        while queued and (limit is None or limit > 0):
            rows, start = queued[0], self._offset
            end = len(rows) if limit is None else min(len(rows), start + limit)
            part = rows if start == 0 and end == len(rows) else rows[start:end]  # no copy of the rest
            if end == len(rows):
                queued.popleft()
                self._offset = 0
            else:
                self._offset = end
            if limit is not None:
                limit -= len(part)
            self.queued -= len(part)
            self._write(part)
        return bool(queued)

    def _write(self, rows: list[tuple]) -> None:
        """Write ``rows``, already in time order: each queued list was sorted when taken
        and a part of it is a slice of it (the unfinished rows at close are sorted there)."""
        if rows:  # an hour of a fleet in one write of a few MB, not two writes a line
            lines = [row_line(row) for row in rows]
            text = "\n".join(lines) + "\n"
            self._handle.write(text)
            if self._index is not None:  # after its lines: a reader waits for the bytes it names
                self._index.write(index_record([row[0] for row in rows], lines, text))
        self.rows_written += len(rows)

    def _run_line(self, *, end_t: float, complete: bool, end_reason: str, events: int) -> str:
        return self._dumps({"t": round(end_t, 6), "mac": None, "kind": "run", "complete": complete,
                            "end_reason": end_reason, "events": events}) + "\n"

    def snapshot(self, *, end_t: float, complete: bool, end_reason: str, actions=()) -> str:
        """events.jsonl as it stands (a lab the dashboard keeps open): everything so far,
        the transfers still running as unfinished, and a run line; recording goes on."""
        self.flush(actions)
        self._handle.flush()
        partial = self.path + ".part"
        shutil.copyfile(self._temporary, partial)
        unfinished = sorted(self.log.unfinished(end_t), key=itemgetter(0))
        with open(partial, "a", encoding="utf-8") as handle:
            for row in unfinished:
                handle.write(row_line(row) + "\n")
            handle.write(self._run_line(end_t=end_t, complete=complete, end_reason=end_reason,
                                        events=self.rows_written + len(unfinished)))
        os.replace(partial, self.path)
        return self.path

    def close(self, *, end_t: float, complete: bool, end_reason: str, actions=()) -> str:
        self.flush(actions)
        self._write(sorted(self.log.unfinished(end_t), key=itemgetter(0)))
        self._handle.write(self._run_line(end_t=end_t, complete=complete, end_reason=end_reason,
                                          events=self.rows_written))
        self._handle.close()
        if self._index is not None:
            self._index.close()
            os.replace(self.index_path + ".tmp", self.index_path)
        os.replace(self._temporary, self.path)
        return self.path


class ScheduledWriter:
    """An ``EventStream`` written on a clock while the run goes on.

    Every ``period`` seconds it takes what was recorded (cheap: no formatting), then writes
    it a bounded part a clock turn, so the phones' timers and sockets are served between
    parts: two seconds of a 5,000 phones/s fleet's rows written in one turn stalled its
    power-on pacer by ~0.5 s. A part is ``rows_per_turn`` plus as many rows as the fleet
    recorded since the part before, so the writing keeps up with a fleet that records more
    than ``rows_per_turn`` a turn (a saturated 100,000-phone run writing 1,000 rows a turn
    had written 38 MB of events.jsonl after 13 minutes and held the rest, ~250 MB, in
    memory), while a run whose turns are short writes small parts: a part of an eighth of
    what waits, as before, was ~8,700 rows a turn at 5,000 phones/s (1.9 µs of CPU a row
    measured: ~16 ms), a late tick for the pacer every 2 s. The clock is the reactor (wall seconds) or the virtual clock
    (simulated seconds): only ``period`` differs.
    """

    def __init__(self, stream: EventStream, clock, *, period: float, rows_per_turn: int, actions=tuple):
        self.stream = stream
        self.clock = clock
        self.period = period
        self.rows_per_turn = rows_per_turn
        self.actions = actions  # () -> the timeline's log so far (its actions go in the file too)
        self._timer = None
        self._recorded = 0  # the log's rows recorded so far, at the last part

    def _recorded_now(self) -> int:
        log = self.stream.log
        return log.written + len(log.rows)

    def start(self) -> None:
        self._timer = self.clock.callLater(self.period, self._take)

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _take(self) -> None:
        self.stream.take(self.actions())
        self._recorded = self._recorded_now()
        self._write()

    def _write(self) -> None:
        recorded = self._recorded_now()
        since, self._recorded = recorded - self._recorded, recorded
        more = self.stream.write_some(self.rows_per_turn + max(0, since))
        self._timer = self.clock.callLater(0 if more else self.period, self._write if more else self._take)

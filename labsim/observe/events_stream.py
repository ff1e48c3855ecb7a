"""``events.jsonl`` written while a long run goes on, so memory holds an hour of it, not a week.

A run on sockets writes the file at the end from everything it kept (events_log). A run
in virtual time can last a simulated week: there ``EventStream.flush`` runs every
simulated hour, writes the rows recorded since the last flush in time order (the same
order ``merged_rows`` gives: timeline actions, then each phone's own events in fleet
order, then the exchanges, sorted stably by time), and lets go of them: the exchange
rows are dropped and each phone keeps only its first and last ``keep // 2`` events
(``phone.events_dropped`` counts the rest) for the report. The file is complete and in
time order when the run ends, written to a temporary name and renamed, as always.
"""

from __future__ import annotations

import json
import os
from operator import itemgetter

from labsim.observe.events_log import row_line


class EventStream:
    def __init__(self, report_dir: str, log, members, *, keep: int = 1000, archive=None):
        os.makedirs(report_dir, exist_ok=True)
        self.path = os.path.join(report_dir, "events.jsonl")
        self._temporary = self.path + ".tmp"
        self._handle = open(self._temporary, "w", encoding="utf-8", buffering=1 << 20)
        self._dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
        self.log = log
        self.members = members
        self.head = keep // 2
        self.tail = keep - self.head
        self._written = [0] * len(members)  # per phone: how many of its kept events are in the file
        self._actions = 0
        self.rows_written = 0
        self.archive = archive  # observe.stage_archive.StageArchive: phones' older timings go there

    def flush(self, actions=()) -> None:
        rows: list[tuple] = [(record.t, None, "action", record.entry, record.action, record.outcome)
                             for record in actions[self._actions:]]
        self._actions = len(actions)
        head, tail = self.head, self.tail
        written = self._written
        archive = self.archive
        for index, member in enumerate(self.members):
            phone = member.phone
            if archive is not None:
                archive.take(phone)
            events = phone.events
            start = written[index]
            if start < len(events):
                mac = phone.mac
                rows.extend((t, mac, kind, state, detail) for t, state, detail, kind in events[start:])
                if len(events) > head + tail:
                    drop = len(events) - head - tail
                    del events[head:head + drop]
                    phone.events_dropped += drop
                written[index] = len(events)
        rows.extend(self.log.rows)
        self.log.rows.clear()
        self._write(rows)

    def _write(self, rows: list[tuple]) -> None:
        rows.sort(key=itemgetter(0))
        write = self._handle.write
        for row in rows:
            write(row_line(row))
            write("\n")
        self.rows_written += len(rows)

    def close(self, *, end_t: float, complete: bool, end_reason: str, actions=()) -> str:
        self.flush(actions)
        self._write(self.log.unfinished(end_t))
        self._handle.write(self._dumps({"t": round(end_t, 6), "mac": None, "kind": "run", "complete": complete,
                                        "end_reason": end_reason, "events": self.rows_written}))
        self._handle.write("\n")
        self._handle.close()
        os.replace(self._temporary, self.path)
        return self.path

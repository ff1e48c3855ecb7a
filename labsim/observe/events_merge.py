"""The shards' ``events.jsonl`` merged into one, streamed: after the shards ended
(``labsim merge``) or while they still write them (``--clock virtual --workers N``).

The order is one rule, whatever the batches: time order, lines of the same time in shard
order (shard 0 first), then in each file's own order; so the same shards always give the
same bytes. Each shard's file is in time order (``observe.events_stream`` writes a
flush's rows after the previous flush's, and a shard's clock only goes forward), so every
line earlier than the horizon, the earliest of the last times read from the shards still
being read, is final: whatever a shard writes later comes at its last time or after.

A shard still running writes its file under ``events.jsonl.tmp`` (renamed when it ends),
an hour of simulated time at a time; ``EventsMerge.step`` reads what it has written so far
(whole lines only) and writes what is final, so when the last shard ends only its last
lines are left to merge. A file that is complete is read the same way, to its end.

Every shard of a virtual run logs the same timeline actions; whether they are kept once
(the first shard's, when every shard's timeline log is the same) is known only from the
shards' reports, at the end. So the other shards' action lines are held aside with the
place where they belong in the merged file (they are a handful) and either dropped or
put in their places at the end (``finish``), giving the bytes a merge that knew it from
the start would have written.
"""

from __future__ import annotations

import json
import os
from bisect import bisect_left

_PREFIX = b'{"t": '  # every line labsim writes starts so: its time is read without a JSON parse
_NULL_MAC = b'"mac": null, "kind": "'  # a run or action line (every other line names a phone)
_ACTION = _NULL_MAC + b'action"'
_NEXT_LINE = b"\n" + _PREFIX  # where every line but a block's first starts


class EventsMergeError(ValueError):
    """A shard's events.jsonl that is missing or holds a line labsim did not write."""


def _not_ours() -> float:
    raise ValueError("a line labsim did not write")


class ShardEvents:
    """One shard's events.jsonl, read as far as it is written: its whole lines not merged
    yet and their times (without its ``run`` line). ``writing()`` says whether the shard
    may still add to it (None: a finished file); ``position`` > 0 marks its action lines
    as held (see the module's doc)."""

    def __init__(self, directory: str, position: int, *, writing=None, chunk_bytes: int = 1 << 22):
        self.path = os.path.join(directory, "events.jsonl")
        self.position = position
        self.writing = writing
        self.chunk_bytes = chunk_bytes
        self.handle = None
        self.rest = b""  # the start of a line not written whole yet
        self.lines: list[bytes] = []
        self.times: list[float] = []
        self.held: set[int] = set()  # indexes in ``lines`` of held action lines
        self.last_t = float("-inf")  # the time of the last line read: nothing later comes earlier
        self.read = 0  # lines read so far, for errors
        self.done = False

    def _open(self, ended: bool) -> bool:
        for path in (self.path + ".tmp", self.path):  # written under .tmp, renamed at the shard's end
            try:
                self.handle = open(path, "rb")
                return True
            except FileNotFoundError:
                continue
        if ended:
            raise EventsMergeError(f"{self.path}: missing (every shard writes events.jsonl beside shard.json)")
        return False  # the shard has not opened it yet

    def fill(self) -> bool:
        """Read the next chunk written; True if anything changed (lines read, or the end)."""
        if self.done:
            return False
        ended = self.writing is None or not self.writing()  # before reading: then the end read is the end
        if self.handle is None and not self._open(ended):
            return False
        chunk = self.handle.read(self.chunk_bytes)
        if not chunk:
            if not ended:
                return False
            self.done = True
            self.handle.close()
            if not self.rest:
                return True
            chunk = b"\n"  # a last line without its newline
        cut = chunk.rfind(b"\n") + 1
        if not cut:
            self.rest += chunk
            return True
        block = self.rest + chunk[:cut]
        self.rest = chunk[cut:]
        self._add(block)
        return True

    def _add(self, block: bytes) -> None:
        """Take the whole lines of ``block``. What can be is asked of the whole block at
        once, in C (its lines, whether any is a run or action line, whether every line
        starts as labsim's do), not line by line: a week of a 10,000-phone fleet is ~22
        million lines (a 4 MiB block: ~17 instead of ~30 ms)."""
        if b"\r" in block:  # splitlines would cut there too (JSON escapes it: never in a line labsim writes)
            raw = [line + b"\n" for line in block.split(b"\n")[:-1]]
        else:
            raw = block.splitlines(keepends=True)
        first = self.read + 1
        self.read += len(raw)
        lines = raw
        # Rare: a run or action line (the block is searched first, in one scan).
        marked = _NULL_MAC in block and any([line.find(_NULL_MAC, 0, 80) >= 0 for line in raw])
        if marked:
            lines = [line for line in raw if line.find(_NULL_MAC, 0, 80) < 0 or line.find(_ACTION, 0, 90) >= 0]
        try:
            if not marked and block.startswith(_PREFIX) and block.count(_NEXT_LINE) == len(raw) - 1:
                # Every line starts as labsim's lines do (counted in one scan of the block).
                times = [float(line[6:line.index(b",", 6)]) for line in lines]
            else:
                times = [float(line[6:line.index(b",", 6)]) if line.startswith(_PREFIX) else _not_ours()
                         for line in lines]
        except ValueError:  # slowly, line by line: which line is it?
            lines, times = [], []
            for number, line in enumerate(raw, first):
                if line.find(_NULL_MAC, 0, 80) >= 0 and line.find(_ACTION, 0, 90) < 0:
                    continue
                lines.append(line)
                times.append(self._time(line, number))
        if marked and self.position:
            base = len(self.lines)
            self.held.update(base + index for index, line in enumerate(lines) if line.find(_ACTION, 0, 90) >= 0)
        self.lines += lines
        self.times += times
        if times:
            self.last_t = times[-1]

    def _time(self, line: bytes, number: int) -> float:
        try:
            if line.startswith(_PREFIX):
                return float(line[6:line.index(b",", 6)])
            return float(json.loads(line)["t"])
        except (ValueError, KeyError, TypeError) as exc:
            raise EventsMergeError(f"{self.path}:{number}: not an events.jsonl line ({exc!r})") from None

    def take(self, cut: int) -> tuple[list[bytes], list[float], list[int]]:
        """The first ``cut`` lines, their times and which of them are held; gone from here."""
        lines, times = self.lines[:cut], self.times[:cut]
        del self.lines[:cut], self.times[:cut]
        held = []
        if self.held:
            held = sorted(index for index in self.held if index < cut)
            self.held = {index - cut for index in self.held if index >= cut}
        return lines, times, held

    def close(self) -> None:
        if self.handle is not None and not self.handle.closed:
            self.handle.close()


class EventsMerge:
    """The merged events.jsonl of the shards in ``directories`` (shard order), written
    under ``REPORT_DIR/events.jsonl.tmp`` as far as it is final (``step``), completed and
    renamed by ``finish``. ``writing[i]()`` says whether shard i may still write (None:
    every file is complete)."""

    def __init__(self, directories: list[str], report_dir: str, *, writing=None, chunk_bytes: int = 1 << 22):
        self.directories = [os.path.abspath(directory) for directory in directories]
        self.sources = [ShardEvents(directory, position, writing=writing[position] if writing else None,
                                    chunk_bytes=chunk_bytes) for position, directory in enumerate(directories)]
        os.makedirs(report_dir, exist_ok=True)
        self.path = os.path.join(report_dir, "events.jsonl")
        self._temporary = self.path + ".tmp"
        self.handle = open(self._temporary, "wb", buffering=1 << 20)
        self.written = 0
        self.held: list[tuple[int, bytes]] = []  # (offset in the merged file, line): other shards' actions

    def step(self) -> bool:
        """Read what the shards wrote and write what is final; False when nothing could be
        (the shards have not written further yet, or everything is merged)."""
        sources = self.sources
        for source in sources:
            if len(source.lines) < 1 << 14:
                source.fill()
        while True:
            open_ones = [source for source in sources if not source.done]
            horizon = min(source.last_t for source in open_ones) if open_ones else float("inf")
            cuts = [bisect_left(source.times, horizon) for source in sources]
            if any(cuts):
                self._write([source.take(cut) for source, cut in zip(sources, cuts)])
                return True
            # Nothing is final: the shards at the horizon must be read further (all of
            # what they read waits there), or have not written further yet.
            if not open_ones or not any([source.fill() for source in open_ones if source.last_t == horizon]):
                return False

    def _write(self, parts) -> None:
        lines = [line for part_lines, _, _ in parts for line in part_lines]
        times = [t for _, part_times, _ in parts for t in part_times]
        order = sorted(range(len(times)), key=times.__getitem__)  # stable: shard order, then file order
        held, base = set(), 0
        for part_lines, _, part_held in parts:
            held.update(base + index for index in part_held)
            base += len(part_lines)
        if not held:
            self.handle.writelines([lines[index] for index in order])
            self.written += len(lines)
            return
        for index in order:
            if index in held:
                self.held.append((self.handle.tell(), lines[index]))
            else:
                self.handle.write(lines[index])
                self.written += 1

    def run_to_end(self) -> None:
        """Every shard's file has ended (or ends while this runs): merge all of it."""
        while not all(source.done for source in self.sources) or any(source.lines for source in self.sources):
            if not self.step() and not all(source.done for source in self.sources):
                import time

                time.sleep(0.05)  # a shard still writing: wait for its next lines

    def finish(self, *, complete: bool, end_reason: str, end_t: float, actions_of_first_only: bool) -> str:
        """The rest merged, the held action lines dropped (``actions_of_first_only``) or put
        in their places, the run line; the file renamed to events.jsonl."""
        self.run_to_end()
        count = self.written
        if self.held and not actions_of_first_only:
            self._put_held_in_place()
            count += len(self.held)
        self.handle.write(json.dumps({"t": round(end_t, 6), "mac": None, "kind": "run", "complete": complete,
                                      "end_reason": end_reason, "events": count},
                                     ensure_ascii=False, separators=(", ", ": ")).encode("utf-8") + b"\n")
        self.handle.close()
        os.replace(self._temporary, self.path)
        return self.path

    def _put_held_in_place(self) -> None:
        self.handle.close()
        spliced = self._temporary + ".held"
        with open(self._temporary, "rb") as source, open(spliced, "wb", buffering=1 << 20) as target:
            at = 0
            for offset, line in self.held:
                while at < offset:
                    block = source.read(min(1 << 22, offset - at))
                    target.write(block)
                    at += len(block)
                target.write(line)
            while block := source.read(1 << 22):
                target.write(block)
        os.replace(spliced, self._temporary)
        self.handle = open(self._temporary, "ab", buffering=1 << 20)

    def abandon(self) -> None:
        """Stop (the merge is done again from the finished files, or not at all)."""
        for source in self.sources:
            source.close()
        self.handle.close()
        if os.path.exists(self._temporary):
            os.remove(self._temporary)

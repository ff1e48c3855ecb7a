"""The shards' ``events.jsonl`` merged into one, streamed: after the shards ended
(``labsim merge``) or while they still write them (``--clock virtual --workers N``).

The order is one rule, whatever the batches: time order (a line's time as written, to
the microsecond), lines of the same time in shard order (shard 0 first), then in each
file's own order; so the same shards always give the same bytes. Each shard's file is in
time order (``observe.events_stream`` writes a flush's rows after the previous flush's,
and a shard's clock only goes forward), so every line earlier than the horizon, the
earliest of the last times read from the shards still being read, is final: whatever a
shard writes later comes at its last time or after.

A shard still running writes its file under ``events.jsonl.tmp`` (renamed when it ends),
an hour of simulated time at a time; ``EventsMerge.step`` reads what it has written so far
(whole lines only) and writes what is final, so when the last shard ends only its last
lines are left to merge. A file that is complete is read the same way, to its end.

A shard's stream also writes ``events.jsonl.index``: for each block it wrote, the number
of lines, each line's time as recorded (unrounded) and its length. With it the merge never
looks inside a line: it knows where each line ends and when it happened, and copies the
shards' bytes in runs (the lines of one shard that come together: a phone's pass is a
dozen lines), a few microseconds a run instead of about one a line (a week of 10,000
phones is ~22 million lines). A recorded time orders as its written text does once both
are rounded to the microsecond, which the merge does at the edges of each run only. A
file without an index (another tool's, an older labsim's) is read line by line, its times
parsed from the text; bytes past the index (a stopped shard's, the run line) too.

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
from array import array
from bisect import bisect_left, bisect_right
from itertools import accumulate, islice

from labsim.observe.events_index import INDEX_NAME, IndexReader

_PREFIX = b'{"t": '  # every line labsim writes starts so: its time is read without a JSON parse
_NULL_MAC = b'"mac": null, "kind": "'  # a run or action line (every other line names a phone)
_ACTION = _NULL_MAC + b'action"'
_NEXT_LINE = b"\n" + _PREFIX  # where every line but a block's first starts


class EventsMergeError(ValueError):
    """A shard's events.jsonl that is missing or holds a line labsim did not write."""


def _not_ours() -> float:
    raise ValueError("a line labsim did not write")


def _open_written(path: str):
    """``path`` for reading as its writer leaves it: under ``.tmp`` while it writes, renamed
    when it ends (tried in that order, so a rename between the two is no miss); or None."""
    for suffix in (".tmp", ""):
        try:
            return open(path + suffix, "rb")
        except FileNotFoundError:
            continue
    return None


def _written(t: float) -> float:
    """A time as a line's text holds it (``observe.events_log.seconds_text``)."""
    return round(t, 6)


def _count_before(times, value: float, start: int, end: int) -> int:
    """Where in ``times[start:end]`` (sorted) the lines whose written time is earlier than
    ``value`` (a written time) end."""
    at = bisect_left(times, value, start, end)  # later ones are at or after value, written too
    while at > start and _written(times[at - 1]) >= value:  # just below value: rounds up to it
        at -= 1
    return at


def _count_up_to(times, value: float, start: int, end: int) -> int:
    """Where in ``times[start:end]`` the lines written at ``value`` or earlier end."""
    at = bisect_right(times, value, start, end)
    while at < end and _written(times[at]) <= value:  # just above value: rounds down to it
        at += 1
    return at


class Part:
    """Lines of one shard taken for writing: their bytes (from offset ``base`` of the
    shard's file), where each ends in the file, their times, and which are held (indexes)."""

    __slots__ = ("data", "base", "ends", "times", "held")

    def __init__(self, data: bytes, base: int, ends, times, held: list[int]):
        self.data, self.base, self.ends, self.times, self.held = data, base, ends, times, held

    def __len__(self) -> int:
        return len(self.times)

    def start(self, line: int) -> int:
        """Where line ``line`` starts in ``data``."""
        return self.ends[line - 1] - self.base if line else 0


class ShardEvents:
    """One shard's events.jsonl, read as far as it is written: its whole lines not merged
    yet (their bytes, where each ends, their times), without its ``run`` line.
    ``writing()`` says whether the shard may still add to it (None: a finished file);
    ``position`` > 0 marks its action lines as held (see the module's doc).

    Offsets count the bytes kept from the file (a dropped line's are not): ``data`` holds
    them from ``base`` on; the lines not merged yet start at ``start`` and end at ``ends``;
    from ``known`` to the end of ``data`` are bytes read that are not lines yet."""

    def __init__(self, directory: str, position: int, *, writing=None, chunk_bytes: int = 1 << 22):
        self.path = os.path.join(directory, "events.jsonl")
        self.index_path = os.path.join(directory, INDEX_NAME)
        self.position = position
        self.writing = writing
        self.chunk_bytes = chunk_bytes
        self.handle = None
        self.index = None  # the index's handle, if the shard writes one
        self.index_reader = None
        self.records: list[tuple[array, array]] = []  # indexed blocks whose bytes are not all read yet
        self.data = bytearray()
        self.base = self.start = self.known = 0
        self.ends = array("q")
        self.times = array("d")  # each line's time (as recorded, or as parsed: the same once rounded)
        self.held: set[int] = set()  # indexes of held action lines
        self.last_t = float("-inf")  # the written time of the last line read: nothing later comes earlier
        self.read = 0  # lines read so far, for errors
        self.parsed = 0  # of which read from their text (past the index, or no index)
        self.done = False

    def __len__(self) -> int:
        return len(self.times)

    def _open(self, ended: bool) -> bool:
        self.handle = _open_written(self.path)
        if self.handle is None:
            if ended:
                raise EventsMergeError(f"{self.path}: missing (every shard writes events.jsonl beside shard.json)")
            return False  # the shard has not opened it yet
        self.index = _open_written(self.index_path)  # a stream opens its index before its events.jsonl
        self.index_reader = IndexReader() if self.index is not None else None
        return True

    def fill(self) -> bool:
        """Read the next chunk written; True if anything changed (bytes read, or the end)."""
        if self.done:
            return False
        ended = self.writing is None or not self.writing()  # before reading: then the end read is the end
        if self.handle is None and not self._open(ended):
            return False
        chunk = self.handle.read(self.chunk_bytes)
        if chunk:
            self.data += chunk
        if self.index is not None:
            records = self.index_reader.feed(self.index.read(self.chunk_bytes))
            self.records += records
            self._take_indexed()
            if chunk or records:
                return True
            if ended:  # a stopped shard's index may name bytes it never wrote: read what it did
                self.records = []
        elif chunk:
            cut = self.data.rfind(b"\n", self.known - self.base) + 1
            if cut:
                self._add(self.base + cut)
            return True
        if not ended:
            return False
        self.done = True  # both files read to their end
        self.close()
        if self.known < self.base + len(self.data):  # past the index, or a last line without its newline
            if not self.data.endswith(b"\n"):
                self.data += b"\n"
            self._add(self.base + len(self.data))
        return True

    def _take_indexed(self) -> None:
        """The indexed blocks whose bytes have all been read become lines. A block is
        checked where it is cheap to (its first and last line start as labsim's lines do,
        and it ends with a newline), not line by line."""
        data = self.data
        while self.records:
            times, lengths = self.records[0]
            size = sum(lengths) + len(lengths)
            at = self.known - self.base
            stop = at + size
            if stop > len(data):
                break
            del self.records[0]
            if not (data.startswith(_PREFIX, at) and data[stop - 1] == 10
                    and data.startswith(_PREFIX, stop - lengths[-1] - 1)):
                raise EventsMergeError(f"{self.path}:{self.read + 1}: the lines do not match {self.index_path}")
            if data.find(_NULL_MAC, at, stop) >= 0:  # rare: an action line (held, or not) or a run line (dropped)
                self._add(self.base + stop, times)
                continue
            self.read += len(lengths)
            self._append(map((1).__add__, lengths), times)

    def _add(self, stop: int, recorded=None) -> None:
        """The bytes from ``known`` to ``stop`` (whole lines) become lines, their times from
        ``recorded`` (the index's) or read from their text; run lines dropped. What can be
        is asked of the whole block at once, in C (its lines, whether any is a run or
        action line, whether every line starts as labsim's do), not line by line."""
        at = self.known - self.base
        block = bytes(self.data[at:stop - self.base])
        if b"\r" in block:  # splitlines would cut there too (JSON escapes it: never in a line labsim writes)
            raw = [line + b"\n" for line in block.split(b"\n")[:-1]]
        else:
            raw = block.splitlines(keepends=True)
        first = self.read + 1
        if recorded is not None and len(recorded) != len(raw):
            raise EventsMergeError(f"{self.path}:{first}: the lines do not match {self.index_path}")
        self.read += len(raw)
        if recorded is None:
            self.parsed += len(raw)
        lines = raw
        # Rare: a run or action line (the block is searched first, in one scan).
        marked = _NULL_MAC in block and any([line.find(_NULL_MAC, 0, 80) >= 0 for line in raw])
        if marked:
            keep = [line.find(_NULL_MAC, 0, 80) < 0 or line.find(_ACTION, 0, 90) >= 0 for line in raw]
            lines = [line for line, kept in zip(raw, keep) if kept]
            if recorded is not None:
                recorded = [t for t, kept in zip(recorded, keep) if kept]
        try:
            if recorded is not None:
                times = recorded
            elif not marked and block.startswith(_PREFIX) and block.count(_NEXT_LINE) == len(raw) - 1:
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
        if len(lines) < len(raw):  # the dropped lines' bytes go
            self.data[at:stop - self.base] = b"".join(lines)
        if marked and self.position:
            base = len(self.times)
            self.held.update(base + index for index, line in enumerate(lines) if line.find(_ACTION, 0, 90) >= 0)
        if lines:
            self._append(map(len, lines), times)

    def _append(self, sizes, times) -> None:
        """Lines of ``sizes`` bytes (newline included) from ``known`` on, at ``times``."""
        self.ends.extend(islice(accumulate(sizes, initial=self.known), 1, None))
        self.known = self.ends[-1]
        self.times.extend(times)
        self.last_t = _written(times[-1])

    def _time(self, line: bytes, number: int) -> float:
        try:
            if line.startswith(_PREFIX):
                return float(line[6:line.index(b",", 6)])
            return float(json.loads(line)["t"])
        except (ValueError, KeyError, TypeError) as exc:
            raise EventsMergeError(f"{self.path}:{number}: not an events.jsonl line ({exc!r})") from None

    def final_count(self, horizon: float) -> int:
        """How many of the lines read are written earlier than ``horizon`` (a written time)."""
        return _count_before(self.times, horizon, 0, len(self.times))

    def take(self, cut: int) -> Part:
        """The first ``cut`` lines as a ``Part``; gone from here."""
        if not cut:
            return Part(b"", self.start, self.ends[:0], self.times[:0], [])
        end = self.ends[cut - 1]
        part = Part(bytes(self.data[self.start - self.base:end - self.base]), self.start, self.ends[:cut],
                    self.times[:cut], [])
        del self.ends[:cut], self.times[:cut]
        self.start = end
        if end - self.base > max(1 << 20, len(self.data) // 2):  # what is taken goes, now and then
            del self.data[:end - self.base]
            self.base = end
        if self.held:
            part.held = sorted(index for index in self.held if index < cut)
            self.held = {index - cut for index in self.held if index >= cut}
        return part

    def close(self) -> None:
        for handle in (self.handle, self.index):
            if handle is not None and not handle.closed:
                handle.close()


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
        self.written = 0  # lines
        self.size = 0  # bytes
        self.held: list[tuple[int, bytes]] = []  # (offset in the merged file, line): other shards' actions

    def step(self) -> bool:
        """Read what the shards wrote and write what is final; False when nothing could be
        (the shards have not written further yet, or everything is merged)."""
        sources = self.sources
        for source in sources:
            if len(source) < 1 << 14:
                source.fill()
        while True:
            open_ones = [source for source in sources if not source.done]
            horizon = min(source.last_t for source in open_ones) if open_ones else float("inf")
            cuts = [source.final_count(horizon) for source in sources]
            if any(cuts):
                self._write([source.take(cut) for source, cut in zip(sources, cuts)])
                return True
            # Nothing is final: the shards at the horizon must be read further (all of
            # what they read waits there), or have not written further yet.
            if not open_ones or not any([source.fill() for source in open_ones if source.last_t == horizon]):
                return False

    def _write(self, parts: list[Part]) -> None:
        """The parts' lines in merged order: runs of one shard's lines (``_runs``) copied as
        they are, in one write; a held line aside, with where it belongs."""
        views = [memoryview(part.data) for part in parts]
        pieces, at = [], self.size
        for index, start, end in _runs(parts):
            part = parts[index]
            self.written += end - start
            if part.held:  # rare: a held action line inside the run
                for line in part.held[bisect_left(part.held, start):bisect_left(part.held, end)]:
                    piece = views[index][part.start(start):part.start(line)]
                    pieces.append(piece)
                    at += len(piece)
                    self.held.append((at, part.data[part.start(line):part.start(line + 1)]))
                    self.written -= 1
                    start = line + 1
            piece = views[index][part.start(start):part.start(end)]
            pieces.append(piece)
            at += len(piece)
        self.handle.writelines(pieces)
        self.size = at

    def run_to_end(self) -> None:
        """Every shard's file has ended (or ends while this runs): merge all of it."""
        while not all(source.done for source in self.sources) or any(len(source) for source in self.sources):
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


def _runs(parts: list[Part]) -> list[tuple[int, int, int]]:
    """(part, first line, end) of each run, in merged order. A run of shard s ends before
    its first line written later than another shard's next line (or at the same time,
    when that shard comes first)."""
    present = [index for index, part in enumerate(parts) if len(part)]
    if len(present) == 2:
        return _runs_of_two(parts, *present)
    runs = []
    heads = [[index, 0, _written(parts[index].times[0])] for index in present]
    while heads:
        head = min(heads, key=_head_order)
        index, line, _ = head
        part = parts[index]
        end = len(part)
        for other, _, other_t in heads:
            if other != index:
                end = (_count_up_to if index < other else _count_before)(part.times, other_t, line, end)
        runs.append((index, line, end))
        if end == len(part):
            heads.remove(head)
        else:
            head[1], head[2] = end, _written(part.times[end])
    return runs


def _runs_of_two(parts: list[Part], first: int, second: int) -> list[tuple[int, int, int]]:
    """``_runs`` of two shards (``first`` before ``second``), taking turns: the first's
    lines written at or before the second's next, then the second's written before the
    first's next (each turn takes one line at least: the other's next line is later)."""
    times_a, times_b = parts[first].times, parts[second].times
    count_a, count_b = len(times_a), len(times_b)
    runs = []
    a = b = 0
    while True:
        end = _count_up_to(times_a, _written(times_b[b]), a, count_a)
        if end > a:
            runs.append((first, a, end))
            a = end
        if a == count_a:
            break
        end = _count_before(times_b, _written(times_a[a]), b, count_b)
        runs.append((second, b, end))
        b = end
        if b == count_b:
            break
    if a < count_a:
        runs.append((first, a, count_a))
    if b < count_b:
        runs.append((second, b, count_b))
    return runs


def _head_order(head: list) -> tuple[float, int]:
    return head[2], head[0]  # the earliest written time; on a tie, the earlier shard

"""``events.jsonl.index``: where each line of a stream's ``events.jsonl`` ends and when it
happened, so a merge of shards' files need not look inside their lines.

``observe.events_stream`` writes it beside a shard's events.jsonl (under
``events.jsonl.index.tmp`` until the stream closes, as events.jsonl is under ``.tmp``),
one record for each block of lines it writes, after the block; ``observe.events_merge``
reads it. A record: the number of lines ``n`` (uint32), the ``n`` lines' times as the run
recorded them (float64: a line's text holds the time rounded to the microsecond), then the
``n`` lines' lengths in bytes without their newline (uint32); little-endian. The run line
a stream ends with is in no record.
"""

from __future__ import annotations

import struct
import sys
from array import array

INDEX_NAME = "events.jsonl.index"
_COUNT = struct.Struct("<I")
_LITTLE = sys.byteorder == "little"


def index_record(times: list[float], lines: list[str], text: str) -> bytes:
    """The record of one block: ``lines`` (without newlines) joined as ``text``, UTF-8."""
    recorded = array("d", times)
    if text.isascii():  # what labsim writes, nearly always: a character is a byte
        lengths = array("I", map(len, lines))
    else:
        lengths = array("I", [len(line.encode("utf-8")) for line in lines])
    if not _LITTLE:
        recorded.byteswap()
        lengths.byteswap()
    return _COUNT.pack(len(lines)) + recorded.tobytes() + lengths.tobytes()


class IndexReader:
    """Records from an index read in pieces: ``feed`` what was read, get the records now
    whole, each as (times, lengths)."""

    def __init__(self):
        self.rest = b""

    def feed(self, data: bytes) -> list[tuple[array, array]]:
        buffer = self.rest + data if self.rest else data
        records, at = [], 0
        while len(buffer) - at >= 4:
            (count,) = _COUNT.unpack_from(buffer, at)
            end = at + 4 + 12 * count
            if end > len(buffer):
                break
            times, lengths = array("d"), array("I")
            times.frombytes(buffer[at + 4:at + 4 + 8 * count])
            lengths.frombytes(buffer[at + 4 + 8 * count:end])
            if not _LITTLE:
                times.byteswap()
                lengths.byteswap()
            records.append((times, lengths))
            at = end
        self.rest = buffer[at:]
        return records

"""A phone's kept records (its events, its download timings) packed into columns.

A fleet keeps tens of records a phone for the whole run (issue 12 §5: a 100,000-phone
run holds millions). As tuples or small objects each costs ~100 bytes and its floats
~24 more each; here a record costs its times as 8-byte floats in one ``array`` and one
reference to its texts: a download timing's (stage, status, server) is a tuple shared by
every timing, of any phone, with the same texts; an event's detail is its own (already
interned: most read alike across a fleet, some name the phone's address or file) and its
(state, kind) pair one byte. So a record is ~17-24 bytes. Records are made again when
read: a sequence of them as before (``len``, indexes and slices, ``del`` of a slice,
iteration both ways), so readers need not know.
"""

from __future__ import annotations

import hashlib
from array import array

class SharedValues(dict):
    """Equal values kept once across a fleet: ``one(key)`` is the value first made for an
    equal key (``make(key)``; the key itself by default). Values that recur (texts, a
    model's DHCP identity, a class's options) are then one object for every phone; one
    that does not is shared with nothing and only costs its entry until the table holds
    ``limit``, when it starts again (what holds a value keeps it). A dict whose missing
    entries are made: ``one`` is its own lookup, with no Python call when the key is there."""

    __slots__ = ("limit", "make", "one")

    def __init__(self, limit: int, make=None):
        super().__init__()
        self.limit = limit
        self.make = make
        self.one = self.__getitem__

    def __missing__(self, key):
        if len(self) >= self.limit:
            self.clear()
        found = self[key] = key if self.make is None else self.make(key)
        return found


class BodyValues(SharedValues):
    """SharedValues keyed by bodies (bytes), bounded also by the bytes the keys hold:
    it starts again when a new body would take it over ``max_bytes``. Callers keep
    large bodies out (``BODY_REMEMBERED_MAX``)."""

    __slots__ = ("max_bytes", "held")

    def __init__(self, limit: int, max_bytes: int, make):
        super().__init__(limit, make)
        self.max_bytes = max_bytes
        self.held = 0

    def __missing__(self, body: bytes):
        if len(self) >= self.limit or self.held + len(body) > self.max_bytes:
            self.clear()
            self.held = 0
        self.held += len(body)
        found = self[body] = self.make(body)
        return found


# Texts seen, each tuple kept once.
shared = SharedValues(1 << 16).one

# Values made from a downloaded body, remembered by its bytes: a fleet downloads the same
# files all run long (each phone its own and the common ones), and a lookup of bytes seen
# before costs a tenth of an MD5 (a bytes object keeps its hash; the same object, the
# site's cached body, compares by identity). Bodies of at most 64 KiB, 16 MiB in all.
BODY_REMEMBERED_MAX = 64 * 1024
BODY_TABLE_ENTRIES, BODY_TABLE_BYTES = 1 << 15, 16 << 20
_md5s = BodyValues(BODY_TABLE_ENTRIES, BODY_TABLE_BYTES, lambda body: hashlib.md5(body).hexdigest()).one


def md5_hex(body: bytes) -> str:
    """``hashlib.md5(body).hexdigest()``: the phone compares its files with flash and
    events.jsonl writes their MD5s, every file every pass."""
    if len(body) <= BODY_REMEMBERED_MAX and type(body) is bytes:
        return _md5s(body)
    return hashlib.md5(body).hexdigest()


class PackedRecords:
    """Records of one shape: ``WIDTH`` floats and a tuple of texts each. A subclass says
    how a record is packed (``append``) and made again (``_record``)."""

    __slots__ = ("_times", "_texts")
    WIDTH = 1

    def __init__(self, records=()):
        self._times = array("d")
        self._texts: list[tuple] = []
        for record in records:
            self.append(record)

    def append(self, record) -> None:
        raise NotImplementedError

    def _record(self, index: int):
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._texts)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._record(i) for i in range(*index.indices(len(self._texts)))]
        if index < 0:
            index += len(self._texts)
        if not 0 <= index < len(self._texts):
            raise IndexError("record index out of range")
        return self._record(index)

    def __delitem__(self, index) -> None:
        if not isinstance(index, slice):
            index = len(self._texts) + index if index < 0 else index
            index = slice(index, index + 1)
        start, stop, step = index.indices(len(self._texts))
        if step != 1:
            raise ValueError("only a contiguous slice of records can be deleted")
        if stop > start:
            self._delete(start, stop)

    def _delete(self, start: int, stop: int) -> None:
        del self._texts[start:stop]
        del self._times[start * self.WIDTH:stop * self.WIDTH]

    def pop_oldest(self, count: int) -> tuple[array, list[tuple]]:
        """Remove the first ``count`` records and return them packed: their ``WIDTH``
        floats each, in order, and their texts (for a reader that wants numbers, not
        records: observe.stage_archive)."""
        times, texts = self._times[:count * self.WIDTH], self._texts[:count]
        self._delete(0, count)
        return times, texts

    def __iter__(self):
        for index in range(len(self._texts)):
            yield self._record(index)

    def __reversed__(self):
        for index in range(len(self._texts) - 1, -1, -1):
            yield self._record(index)

    def __eq__(self, other) -> bool:
        try:
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        except TypeError:
            return NotImplemented

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"


# An event's (state, kind) as one byte: a phone has seven states and two kinds of event.
_pairs: list[tuple[str, str]] = []


class _PairTags(dict):
    def __missing__(self, pair: tuple[str, str]) -> int:
        if len(_pairs) > 255:
            raise ValueError(f"more than 256 (state, kind) pairs in phone events: {pair[0]!r}, {pair[1]!r}")
        tag = self[pair] = len(_pairs)
        _pairs.append(pair)
        return tag


_pair_tags = _PairTags()


class EventList(PackedRecords):
    """A phone's events, ``(t, state, detail, kind)`` each: the time, the detail text, and
    the (state, kind) pair's tag."""

    __slots__ = ("_tags",)
    WIDTH = 1

    def __init__(self, records=()):
        self._tags = bytearray()
        super().__init__(records)

    def append(self, event: tuple[float, str, str, str]) -> None:
        self.add(*event)

    def add(self, t: float, state: str, detail: str, kind: str) -> int:
        """``append((t, state, detail, kind))``, and how many events there are now (the
        phone's hot path: one call per event, the count for the journal's trimming)."""
        self._times.append(t)
        texts = self._texts
        texts.append(detail)
        self._tags.append(_pair_tags[state, kind])
        return len(texts)

    def _record(self, index: int) -> tuple[float, str, str, str]:
        state, kind = _pairs[self._tags[index]]
        return (self._times[index], state, self._texts[index], kind)

    def _delete(self, start: int, stop: int) -> None:
        super()._delete(start, stop)
        del self._tags[start:stop]

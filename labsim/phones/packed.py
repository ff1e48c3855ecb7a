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

from array import array

class SharedValues:
    """Equal values kept once across a fleet: ``one(key)`` is the value first made for an
    equal key (``make(key)``; the key itself by default). Values that recur (texts, a
    model's DHCP identity, a class's options) are then one object for every phone; one
    that does not is shared with nothing and only costs its entry until the table holds
    ``limit``, when it starts again (what holds a value keeps it)."""

    __slots__ = ("limit", "make", "_values")

    def __init__(self, limit: int, make=None):
        self.limit = limit
        self.make = make
        self._values: dict = {}

    def one(self, key):
        found = self._values.get(key)
        if found is None:
            if len(self._values) >= self.limit:
                self._values.clear()
            found = self._values[key] = key if self.make is None else self.make(key)
        return found


# Texts seen, each tuple kept once.
shared = SharedValues(1 << 16).one


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
_pair_tags: dict[tuple[str, str], int] = {}


def _pair_tag(state: str, kind: str) -> int:
    tag = _pair_tags.get((state, kind))
    if tag is None:
        if len(_pairs) > 255:
            raise ValueError(f"more than 256 (state, kind) pairs in phone events: {state!r}, {kind!r}")
        tag = _pair_tags[(state, kind)] = len(_pairs)
        _pairs.append((state, kind))
    return tag


class EventList(PackedRecords):
    """A phone's events, ``(t, state, detail, kind)`` each: the time, the detail text, and
    the (state, kind) pair's tag."""

    __slots__ = ("_tags",)
    WIDTH = 1

    def __init__(self, records=()):
        self._tags = bytearray()
        super().__init__(records)

    def append(self, event: tuple[float, str, str, str]) -> None:
        t, state, detail, kind = event
        self._times.append(t)
        self._texts.append(detail)
        self._tags.append(_pair_tag(state, kind))

    def _record(self, index: int) -> tuple[float, str, str, str]:
        state, kind = _pairs[self._tags[index]]
        return (self._times[index], state, self._texts[index], kind)

    def _delete(self, start: int, stop: int) -> None:
        super()._delete(start, stop)
        del self._tags[start:stop]

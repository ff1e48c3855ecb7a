"""Faults injected between the phones and a service: the network and the server
misbehaving on purpose.

A ``FaultSet`` holds the active faults (from the scenario, and added or removed by the
timeline). A ``FaultyLink`` is one service's view of it, in one of two shapes the
transport forces:

- datagrams (DHCP on the fleet's relay; TFTP, DNS over UDP, PnP in the servers):
  ``carry`` decides for each datagram in one direction whether it arrives, when, how
  often and intact or not (loss, delay, jitter, duplicate, reorder, corrupt, bandwidth,
  down);
- streams (DNS over TCP, FTP): TCP delivers every byte in order or none, so only what a
  stream can suffer applies: ``refuses`` (down: a new connection is closed at once),
  ``answer_delay`` (delay_s + jitter_s + slow_s before each answer) and
  ``bandwidth_kbps`` (a capped data line, paced by ``Pacer``).

For HTTP, the set answers whether a path gets a forced status code or a slow response.

Directions are seen from the service: ``in`` is towards it (requests), ``out`` is its
replies. A stream's down and delays apply whatever the direction (a connection has one
answer delay); its bandwidth cap follows the direction of the data. With no active fault
for a service, a link forwards at once: the cost of an idle fault layer is one dict
lookup per datagram (and a service with no link at all pays one None check).
"""

from __future__ import annotations

import fnmatch
import random
from dataclasses import dataclass, field

DHCP_TYPES = {"DISCOVER": 1, "OFFER": 2, "REQUEST": 3, "DECLINE": 4, "ACK": 5, "NAK": 6, "RELEASE": 7, "INFORM": 8}


@dataclass
class ActiveFault:
    name: str
    service: str
    direction: str = "both"  # "in", "out", "both"
    loss: float = 0.0
    delay_s: float = 0.0
    jitter_s: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    bandwidth_kbps: float | None = None
    drop_dhcp: frozenset = frozenset()  # DHCP message type numbers
    http_status: int | None = None
    path: str = "*"
    slow_s: float = 0.0
    down: bool = False
    # a token bucket per direction for the bandwidth cap: when the line is next free
    _line_free_at: dict = field(default_factory=dict)

    def applies(self, service: str, direction: str) -> bool:
        return self.service == service and self.direction in ("both", direction)


def fault_from_spec(spec, index: int = 0) -> ActiveFault:
    """An ActiveFault from the scenario's ``Fault`` model."""
    return ActiveFault(
        name=spec.name or f"fault{index + 1}",
        service=spec.service,
        direction=spec.direction,
        loss=spec.loss,
        delay_s=spec.delay_s,
        jitter_s=spec.jitter_s,
        duplicate=spec.duplicate,
        reorder=spec.reorder,
        corrupt=spec.corrupt,
        bandwidth_kbps=spec.bandwidth_kbps,
        drop_dhcp=frozenset(DHCP_TYPES[name] for name in spec.drop_dhcp),
        http_status=spec.http_status,
        path=spec.path,
        slow_s=spec.slow_s,
        down=spec.down,
    )


class FaultSet:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.faults: dict[str, ActiveFault] = {}
        self._by_service: dict[str, list[ActiveFault]] = {}
        self.stats = {"dropped": 0, "delayed": 0, "duplicated": 0, "corrupted": 0, "reordered": 0, "http_forced": 0,
                      "refused": 0, "throttled": 0}

    def add(self, fault: ActiveFault) -> None:
        self.faults[fault.name] = fault
        self._reindex()

    def remove(self, name: str) -> bool:
        if name == "all":
            found = bool(self.faults)
            self.faults.clear()
        else:
            found = self.faults.pop(name, None) is not None
        self._reindex()
        return found

    def _reindex(self) -> None:
        self._by_service = {}
        for fault in self.faults.values():
            self._by_service.setdefault(fault.service, []).append(fault)

    def active(self, service: str, direction: str) -> list[ActiveFault]:
        faults = self._by_service.get(service)
        if not faults:
            return []
        return [fault for fault in faults if fault.applies(service, direction)]

    # --- datagrams ----------------------------------------------------------------------

    def plan(self, service: str, direction: str, data: bytes, now: float) -> list[tuple[float, bytes]]:
        """What becomes of one datagram: (delay, bytes) per copy delivered; [] = lost."""
        faults = self.active(service, direction)
        if not faults:
            return [(0.0, data)]
        rng = self.rng
        copies = [(0.0, data)]
        for fault in faults:
            if fault.down or (fault.loss and rng.random() < fault.loss) or self._dhcp_type_dropped(fault, data):
                self.stats["dropped"] += 1
                return []
            if fault.duplicate and rng.random() < fault.duplicate:
                self.stats["duplicated"] += 1
                copies = copies + [copies[-1]]
            delay = fault.delay_s + (rng.uniform(-fault.jitter_s, fault.jitter_s) if fault.jitter_s else 0.0)
            if fault.reorder and rng.random() < fault.reorder:
                # Held back long enough for the datagrams behind it to overtake it.
                self.stats["reordered"] += 1
                delay += max(0.05, 2 * fault.delay_s)
            if fault.bandwidth_kbps:
                delay += self._queue(fault, direction, len(data), now)
            if fault.corrupt and rng.random() < fault.corrupt:
                self.stats["corrupted"] += 1
                copies = [(d, _flip_a_byte(payload, rng)) for d, payload in copies]
            if delay > 0:
                self.stats["delayed"] += 1
            copies = [(d + max(0.0, delay), payload) for d, payload in copies]
        return copies

    @staticmethod
    def _dhcp_type_dropped(fault: ActiveFault, data: bytes) -> bool:
        return bool(fault.drop_dhcp) and dhcp_message_type(data) in fault.drop_dhcp

    @staticmethod
    def _queue(fault: ActiveFault, direction: str, size: int, now: float) -> float:
        """Serialisation delay on a capped line: packets queue behind each other."""
        transmit = size * 8 / (fault.bandwidth_kbps * 1000)
        free_at = max(now, fault._line_free_at.get(direction, now))
        fault._line_free_at[direction] = free_at + transmit
        return free_at + transmit - now

    # --- HTTP ---------------------------------------------------------------------------

    def http(self, path: str, size: int = 0, now: float = 0.0) -> tuple[int | None, float]:
        """(forced status code or None, extra seconds before answering) for one request."""
        status, delay = None, 0.0
        for fault in self.active("http", "out"):
            if not fnmatch.fnmatchcase(path, fault.path):
                continue
            if fault.down or (fault.loss and self.rng.random() < fault.loss):
                status = status or 503
            if fault.http_status is not None:
                status = fault.http_status
            delay += fault.slow_s + fault.delay_s + self._jitter(fault)
            if fault.bandwidth_kbps and size:
                delay += self._queue(fault, "out", size, now)
        if status is not None:
            self.stats["http_forced"] += 1
        return status, max(0.0, delay)

    # --- streams (TCP: DNS over TCP, FTP) -----------------------------------------------

    def stream_down(self, service: str) -> bool:
        """Whether a new connection to ``service`` is to be closed at once."""
        return any(fault.down for fault in self._by_service.get(service, ()))

    def answer_delay(self, service: str) -> float:
        """Seconds to hold each answer on a stream: delay_s + jitter_s + slow_s of every
        fault on the service, whatever its direction."""
        delay = 0.0
        for fault in self._by_service.get(service, ()):
            delay += fault.delay_s + fault.slow_s + self._jitter(fault)
        return max(0.0, delay)

    def bandwidth_kbps(self, service: str, direction: str) -> float | None:
        """The tightest cap on a stream's data in ``direction`` (None: uncapped)."""
        caps = [fault.bandwidth_kbps for fault in self.active(service, direction) if fault.bandwidth_kbps]
        return min(caps) if caps else None

    def _jitter(self, fault: ActiveFault) -> float:
        return self.rng.uniform(-fault.jitter_s, fault.jitter_s) if fault.jitter_s else 0.0


def dhcp_message_type(data: bytes) -> int | None:
    """Option 53 of a raw DHCP datagram, found without decoding the rest."""
    index = 240
    while index + 1 < len(data):
        code = data[index]
        if code == 0:
            index += 1
            continue
        if code == 255:
            return None
        length = data[index + 1]
        if code == 53 and length == 1 and index + 2 < len(data):
            return data[index + 2]
        index += 2 + length
    return None


def _flip_a_byte(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    position = rng.randrange(len(data))
    return data[:position] + bytes([data[position] ^ (1 << rng.randrange(8))]) + data[position + 1 :]


class FaultyLink:
    """One service's path through the fault set, on a clock: ``carry`` for datagrams;
    ``refuses``, ``answer_delay`` and ``bandwidth_kbps`` for streams."""

    def __init__(self, faults: FaultSet, service: str, clock):
        self.faults = faults
        self.service = service
        self.clock = clock

    def carry(self, direction: str, data: bytes, forward) -> None:
        """Hand ``data`` to ``forward`` as the active faults say (now, later, twice, never)."""
        if not self.faults._by_service.get(self.service):
            forward(data)
            return
        for delay, payload in self.faults.plan(self.service, direction, data, self.clock.seconds()):
            if delay <= 0:
                forward(payload)
            else:
                self.clock.callLater(delay, forward, payload)

    # --- streams ------------------------------------------------------------------------

    def refuses(self) -> bool:
        """A new connection arrived: True when the service is down (counted as refused)."""
        faults = self.faults
        if not faults._by_service.get(self.service) or not faults.stream_down(self.service):
            return False
        faults.stats["refused"] += 1
        return True

    def answer_delay(self) -> float:
        """Seconds to hold the next answer on a stream (0: answer now)."""
        faults = self.faults
        if not faults._by_service.get(self.service):
            return 0.0
        delay = faults.answer_delay(self.service)
        if delay > 0:
            faults.stats["delayed"] += 1
        return delay

    def count(self, what: str) -> None:
        """One more of ``what`` in the fault counters (e.g. ``throttled``: a transfer paced)."""
        self.faults.stats[what] = self.faults.stats.get(what, 0) + 1

    def bandwidth_kbps(self, direction: str) -> float | None:
        """The cap on a stream's data in ``direction`` now (None: uncapped)."""
        if not self.faults._by_service.get(self.service):
            return None
        return self.faults.bandwidth_kbps(self.service, direction)


class Pacer:
    """A capped line for one stream's data, without I/O: each chunk waits its own
    transmission time (size / bandwidth) behind the chunks before it, then goes.

    ``wait(now, size, kbps)`` is asked before sending a chunk: 0 means send it now; a
    positive number means come back that much later (the same chunk, or a smaller one).
    Waiting before the chunk rather than after it matters for the last one: a stream
    closed right after its last write would otherwise finish early by a whole chunk."""

    def __init__(self):
        self._due: float | None = None  # when the chunk being "transmitted" may go
        self._free_at = 0.0  # when the line finished the previous chunk

    def wait(self, now: float, size: int, kbps: float) -> float:
        if self._due is None:
            self._due = max(now, self._free_at) + size * 8 / (kbps * 1000)
        if now < self._due:
            return self._due - now
        self._free_at, self._due = self._due, None
        return 0.0

    def after(self, now: float, size: int, kbps: float) -> float:
        """``size`` bytes have just arrived: how long the line stays busy with them (the
        receiving side paces after the fact: it cannot know a size before reading)."""
        self._free_at = max(now, self._free_at) + size * 8 / (kbps * 1000)
        return self._free_at - now

    @staticmethod
    def chunk_size(kbps: float, slice_s: float = 0.05) -> int:
        """Bytes per chunk: about ``slice_s`` of line time, so the pace is smooth (at
        least 64 bytes, at most 64 KB)."""
        return max(64, min(65536, int(kbps * 1000 / 8 * slice_s)))

"""Faults injected between the phones and a service: the network and the server
misbehaving on purpose.

A ``FaultSet`` holds the active faults (from the scenario, and added or removed by the
timeline). A ``FaultyLink`` sits on one service's datagram path and decides, for each
datagram in one direction, whether it arrives, when, how often and intact or not. For
HTTP, the set answers whether a path gets a forced status code or a slow response.

Directions are seen from the service: ``in`` is towards it (requests), ``out`` is its
replies. With no active fault for a service, a link forwards at once: the cost of an
idle fault layer is one dict lookup per datagram.
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
        self.stats = {"dropped": 0, "delayed": 0, "duplicated": 0, "corrupted": 0, "reordered": 0, "http_forced": 0}

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
            delay += fault.slow_s + fault.delay_s
            if fault.bandwidth_kbps and size:
                delay += self._queue(fault, "out", size, now)
        if status is not None:
            self.stats["http_forced"] += 1
        return status, delay


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
    """One service's datagram path through the fault set, on a clock."""

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

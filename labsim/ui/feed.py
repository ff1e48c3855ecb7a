"""The dashboard's change feed: what the page is told, when, and how much it may cost.

I/O-free (the Twisted adapter in ``labsim.ui.web`` moves the bytes). A phone's state
change costs one dict store (``phone_changed``); a few times a second ``flush`` turns
everything that changed since the last flush into one frame: each phone that changed
once, with its latest state (coalescing: a phone that went dhcp → provisioning → ready
in 200 ms is sent as ready), the counts per state and, when a chart point is due, the
requests per service so far.

The charts' request rates are not sent: the page works them out from those running
totals (``requestRates`` in ``static/app.js``: over the last second, or since the point
before once points are further apart). Running totals, because a series that is thinned
to stay short (``MAX_SERIES_POINTS``) then loses no request: a rate sampled at each
point would show only the last frame's quarter second of each longer step.

The frame is encoded once and offered to every subscriber.

A subscriber that cannot keep up (its socket is full, the Twisted producer is paused)
keeps at most ``max_pending_bytes`` of frames; beyond that they are dropped and it is
marked stale, and when it can take bytes again it gets one snapshot of the current
state instead of the backlog. So a slow page costs a bounded amount of memory, and it
catches up at once. A page that reconnects (EventSource does by itself) is a new
subscriber, and the first thing any subscriber gets is the snapshot.

Frames are Server-Sent Events (``event: NAME``, ``data: JSON``), chosen over a WebSocket
because the page only listens (controls are plain POSTs that get plain status codes,
403 without the token), twisted.web serves SSE with no extra dependency, and the
browser's EventSource reconnects by itself.
"""

from __future__ import annotations

import json

from labsim.phones.phone import STATES

STATE_CODES = {state: index for index, state in enumerate(STATES)}
FLUSH_INTERVAL_S = 0.25  # at most four frames a second, however busy the fleet is
MAX_SERIES_POINTS = 1200  # then every other point is dropped and points are taken half as often


def sse(event: str, data) -> bytes:
    """One Server-Sent Event; JSON never contains a raw newline, so one data line."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Subscriber:
    """One page's queue: frames it has not taken yet, bounded."""

    def __init__(self, feed: "ChangeFeed", max_pending_bytes: int = 256 * 1024):
        self.feed = feed
        self.max_pending_bytes = max_pending_bytes
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.stale = True  # nothing sent yet: the first take is a snapshot
        self.dropped_frames = 0

    def offer(self, frame: bytes) -> None:
        if self.stale:
            return  # the snapshot it will get includes this
        if self.pending_bytes + len(frame) > self.max_pending_bytes:
            self.dropped_frames += len(self.pending) + 1
            self.pending.clear()
            self.pending_bytes = 0
            self.stale = True
            return
        self.pending.append(frame)
        self.pending_bytes += len(frame)

    def take(self) -> bytes:
        """Everything to send now: the snapshot if stale, else the queued frames."""
        if self.stale:
            self.stale = False
            return self.feed.snapshot_frame()
        data = b"".join(self.pending)
        self.pending.clear()
        self.pending_bytes = 0
        return data


class ChangeFeed:
    """Phones (index → state), the changes since the last flush, and the series the
    charts draw: phones per state and requests per service so far, over time."""

    def __init__(self, phones: list[dict], *, totals=None):
        # phones: [{"mac", "vendor", "model", "fleet"}] in the run's order; the index is the phone's id.
        self.phones = phones
        self.index_of = {phone["mac"]: index for index, phone in enumerate(phones)}
        # Sent once per snapshot, in columns: a MAC per phone and the index of its
        # (fleet, vendor, model) group, not 10,000 repeated objects.
        groups: dict[tuple, int] = {}
        self.group_of = [groups.setdefault((p["fleet"], p["vendor"], p["model"]), len(groups)) for p in phones]
        self.groups = [{"fleet": f, "vendor": v, "model": m} for (f, v, m) in groups]
        self.states = [STATE_CODES["off"]] * len(phones)
        self.counts = [0] * len(STATES)
        self.counts[STATE_CODES["off"]] = len(phones)
        self.changed: dict[int, int] = {}
        self.subscribers: list[Subscriber] = []
        self.seq = 0
        self.totals = totals  # () -> {service: requests so far}, or None
        self.series_t: list[float] = []
        self.series_counts: list[list[int]] = []
        self.series_totals: list[dict[str, int]] = []
        self._series_every = 1
        self._flushes = 0
        self.extra: dict[str, object] = {}  # small facts the page shows (run status, faults in force)

    # --- the hot path: one call per state change ----------------------------------

    def phone_changed(self, index: int, state: str) -> None:
        code = STATE_CODES[state]
        old = self.states[index]
        if old == code:
            return
        self.counts[old] -= 1
        self.counts[code] += 1
        self.states[index] = code
        self.changed[index] = code

    # --- a few times a second -----------------------------------------------------

    def flush(self, t: float) -> bytes | None:
        """The frame for everything since the last flush (None when nothing changed and
        no chart point is due), offered to every subscriber."""
        self._flushes += 1
        point_due = self._flushes % self._series_every == 0
        point = {}
        if point_due:
            totals = self.totals() if self.totals is not None else {}
            self._add_point(t, totals)
            point = {"totals": totals}
        if not self.changed and not point_due:
            return None
        flat: list[int] = []
        for index, code in self.changed.items():
            flat += (index, code)
        self.changed.clear()
        self.seq += 1
        frame = sse("changes", {"seq": self.seq, "t": round(t, 3), "c": flat, "counts": self.counts,
                                "point": point_due, **point, **self.extra})
        for subscriber in self.subscribers:
            subscriber.offer(frame)
        return frame

    def _add_point(self, t: float, totals: dict[str, int]) -> None:
        self.series_t.append(round(t, 3))
        self.series_counts.append(list(self.counts))
        self.series_totals.append(dict(totals))
        if len(self.series_t) > MAX_SERIES_POINTS:  # keep the whole run, at a coarser step
            for series in (self.series_t, self.series_counts, self.series_totals):
                del series[1::2]
            self._series_every *= 2

    def snapshot(self) -> dict:
        return {"seq": self.seq, "states": list(STATES), "macs": [p["mac"] for p in self.phones],
                "group": self.group_of, "groups": self.groups,
                "s": "".join(chr(48 + code) for code in self.states), "counts": self.counts,
                "series": {"t": self.series_t, "counts": self.series_counts, "totals": self.series_totals},
                **self.extra}

    def snapshot_frame(self) -> bytes:
        return sse("snapshot", self.snapshot())

    def subscribe(self, max_pending_bytes: int = 256 * 1024) -> Subscriber:
        subscriber = Subscriber(self, max_pending_bytes)
        self.subscribers.append(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self.subscribers:
            self.subscribers.remove(subscriber)

"""Progress while a run goes on: phones by state, and how fast they get ready.

On a terminal one line is redrawn in place every second; otherwise (CI logs, pipes) a
plain line is printed every few seconds so logs stay readable.
"""

from __future__ import annotations

from collections import Counter

from labsim.phones.phone import STATES


class StateCounter:
    """Counts phones by state as they change; the run's observer."""

    def __init__(self, total: int):
        self.total = total
        self.counts = Counter({"off": total})
        self.listeners = []

    def state_changed(self, driver, old: str, new: str) -> None:
        self.counts[old] -= 1
        self.counts[new] += 1
        for listener in self.listeners:
            listener(driver, old, new)

    def line(self, elapsed: float, rates: dict[str, float] | None = None, stamp: str | None = None) -> str:
        """``[  12.5s] 500 phones: dhcp 20, ready 480``; ``stamp`` in place of the seconds."""
        parts = [f"{state} {self.counts[state]}" for state in STATES if self.counts[state]]
        text = f"[{stamp or f'{elapsed:7.1f}s'}] {self.total} phones: " + ", ".join(parts)
        if rates:
            text += "  | " + ", ".join(f"{name} {value:.0f}/s" for name, value in rates.items())
        return text

    def counters(self) -> dict[str, int]:
        return {"ready": self.counts["ready"]}


class ProgressPrinter:
    """``counters`` returns running totals (phones ready, DHCP messages, HTTP requests,
    TFTP transfers ...); each line shows how fast each grew since the last line."""

    def __init__(self, counter: StateCounter, stream, clock, epoch: float, *, interactive: bool, counters=None):
        self.counter = counter
        self.stream = stream
        self.clock = clock
        self.epoch = epoch
        self.interactive = interactive
        self.interval = 1.0 if interactive else 5.0
        self.counters = counters or counter.counters
        self._last = (clock.seconds(), self.counters())
        self._call = None

    def start(self) -> None:
        self._call = self.clock.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        self.show()
        self._call = self.clock.callLater(self.interval, self._tick)

    def rates(self) -> dict[str, float]:
        now, totals = self.clock.seconds(), self.counters()
        then, before = self._last
        self._last = (now, totals)
        span = now - then
        if span <= 0:
            return {}
        return {name: (value - before.get(name, 0)) / span for name, value in totals.items()}

    def show(self) -> None:
        line = self.counter.line(self.clock.seconds() - self.epoch, self.rates())
        if self.interactive:
            self.stream.write("\r\x1b[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self.show()
        if self.interactive:
            self.stream.write("\n")
        self.stream.flush()

"""A long run's download timings, kept as numbers instead of one object each.

Every download a phone makes is a ``StageTiming`` in ``phone.stages`` (stage, start,
end, status, server): the report's stage latencies and per-server statistics come from
them. A week of 10,000 phones resyncing hourly makes millions; a virtual run moves all
but each phone's last few into this archive every simulated hour: per stage an array of
latencies (8 bytes each), per server its latencies and a count by status. The report
reads the archive and the phones' remaining timings together, so its numbers are the
same as if nothing had been moved.
"""

from __future__ import annotations

from array import array
from collections import Counter

KEEP_PER_PHONE = 20  # the last timings stay with the phone (its latest failure, for the report's causes)


class StageArchive:
    def __init__(self):
        self.latencies: dict[str, array] = {}
        self.server_latencies: dict[str, array] = {}
        self.server_status: dict[str, Counter] = {}

    def take(self, phone, keep: int = KEEP_PER_PHONE) -> None:
        stages = phone.stages
        if len(stages) <= keep:
            return
        moved = stages[: len(stages) - keep]
        del stages[: len(stages) - keep]
        for timing in moved:
            latency = timing.ended - timing.started
            values = self.latencies.get(timing.stage)
            if values is None:
                values = self.latencies[timing.stage] = array("d")
            values.append(latency)
            if timing.server:
                server = self.server_latencies.get(timing.server)
                if server is None:
                    server = self.server_latencies[timing.server] = array("d")
                    self.server_status[timing.server] = Counter()
                server.append(latency)
                self.server_status[timing.server][timing.status] += 1

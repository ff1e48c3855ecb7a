"""A long run's download timings, kept as numbers instead of one object each.

Every download a phone makes is a ``StageTiming`` in ``phone.stages`` (stage, start,
end, status, server): the report's stage latencies and per-server statistics come from
them. A week of 10,000 phones resyncing hourly makes millions; a virtual run moves all
but each phone's last few into this archive every simulated hour: per stage its
latencies (``observe.latencies``: each distinct value once with its count, or 8 bytes a
value when they are all different), per server its latencies and a count by status. The report
reads the archive and the phones' remaining timings together, so its numbers are the
same as if nothing had been moved.
"""

from __future__ import annotations

from collections import Counter

from labsim.observe.latencies import Latencies
from labsim.phones.events import NEVER_SENT

FOLD_EVERY = 4096  # takes between countings of what was gathered (~16,000 latencies a stage)
KEEP_PER_PHONE = 20  # the last timings stay with the phone (its latest failure, for the report's causes)


class StageArchive:
    def __init__(self):
        self.latencies: dict[str, Latencies] = {}
        self.server_latencies: dict[str, Latencies] = {}
        self.server_status: dict[str, Counter] = {}
        self._takes = 0

    def fold(self) -> None:
        """Count the latencies gathered since (``Latencies.fold``)."""
        for kept in (self.latencies, self.server_latencies):
            for values in kept.values():
                values.fold()

    def take(self, phone, keep: int = KEEP_PER_PHONE) -> None:
        stages = phone.stages
        count = len(stages) - keep
        if count <= 0:
            return
        # The timings as numbers and shared (stage, status, server) texts, not made into
        # StageTimings again: the archive takes a phone's older ones every simulated hour.
        if hasattr(stages, "pop_oldest"):  # a phone's StageList
            times, texts = stages.pop_oldest(count)
            pairs = iter(times)
            moved = zip(texts, pairs, pairs)
        else:  # any list of StageTimings
            moved = [((timing.stage, timing.status, timing.server), timing.started, timing.ended)
                     for timing in stages[:count]]
            del stages[:count]
        latencies, server_latencies, server_status = self.latencies, self.server_latencies, self.server_status
        for (stage, status, server), started, ended in moved:
            latency = ended - started
            values = latencies.get(stage)
            if values is None:
                values = latencies[stage] = Latencies()
            values.append(latency)
            if server:
                values = server_latencies.get(server)
                if values is None:
                    values = server_latencies[server] = Latencies()
                    server_status[server] = Counter()
                if status not in NEVER_SENT:  # as report.server_statistics: the DNS's time, not the server's
                    values.append(latency)
                server_status[server][status] += 1
        self._takes += 1
        if not self._takes % FOLD_EVERY:
            self.fold()

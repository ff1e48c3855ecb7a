"""The dashboard of a ``--workers`` run (``labsim run FILE --workers N --ui PORT``).

The parent of a --workers run runs the lab's services and the timeline; the phones live
in the workers. What the page shows comes from where it lives:

- the tiles, the legend and /metrics' phone counts: the parent's mirror of every phone,
  fed by the workers' ``Changes`` stream (each changed phone once per 0.2 s, coalesced
  in the worker; the page gets its own coalesced frames four times a second, as in one
  process);
- the request-rate chart: the requests per service each worker adds to that stream (a
  worker's counts come in a bunch after its reactor stalled; the page's rates, taken over
  at least a second, spread such a bunch instead of drawing a spike);
- a phone's story and its packets: asked of the one worker that holds the phone, over
  the same AMP connection (``PhoneStory``; ``FlushCapture``, then the parent reads that
  shard's capture through its index), only when a page opens the phone, so the stream
  carries no events;
- the services view and the trainer controls: the parent's own services and timeline;
  an action on phones is sent to the shards that hold them (``Deliver``), a fault to
  every shard (``ChangeFault``).
"""

from __future__ import annotations

import json

from twisted.internet import defer

from labsim.fleet.shard import Shard
from labsim.scale.protocol import FlushCapture, JudgeFlash, PhoneStory
from labsim.ui.hub import Dashboard


class ShardedDashboard(Dashboard):
    def _keep_stories(self) -> None:
        pass  # the workers keep their phones' exchanges (Begin with stay_open)

    def request_totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for counters in self.run.shard_counters.values():
            for service, count in counters.get("requests", {}).items():
                totals[service] = totals.get(service, 0) + count
        return totals

    def capture_on(self) -> bool:
        return bool(self.run.pcap_path)

    def _holder(self, mac: str):
        """(mac, the worker's AMP side) of the phone, or None."""
        mac = mac.lower().replace("-", ":")
        driver = self.run.by_mac.get(mac)
        if driver is None or driver.shard >= len(self.run.sides):
            return None
        return mac, self.run.sides[driver.shard]

    def story(self, mac: str) -> defer.Deferred:
        held = self._holder(mac)
        if held is None:
            return defer.succeed(None)
        asked = held[1].callRemote(PhoneStory, mac=held[0])
        return asked.addCallback(lambda answer: json.loads(answer["story"]))

    def phone_capture(self, mac: str) -> defer.Deferred:
        from labsim.observe.pcap_merge import shard_capture_path
        held = self._holder(mac)
        if held is None or not self.run.pcap_path:
            return defer.succeed(None)
        shard = self.run.by_mac[held[0]].shard
        path = shard_capture_path(self.run.pcap_path, Shard(shard, self.run.count).label)
        flushed = held[1].callRemote(FlushCapture)  # the worker's buffered frames reach its file first
        return flushed.addCallback(lambda _: self.frames_in(path, held[0]))

    def packets(self, mac: str) -> defer.Deferred:
        from labsim.ui.packets import packet_rows

        found = self.phone_capture(mac)
        return found.addCallback(lambda found: None if found is None else packet_rows(found[1], self._epoch))

    def check(self) -> defer.Deferred | list[dict]:
        """The exercise's check on what the fleet holds now, as one process judges it: phone
        counts, reboots and times to ready on the parent's mirror; the request series and
        the stage latencies on what the workers tell; a flash check asked of every worker
        (``JudgeFlash``: the phones it selects in its shard and those that fail it), which
        makes the answer a Deferred."""
        from labsim.ui.exercise import check_results, expectations_of, judged_now

        expectations = expectations_of(self.run.scenario)
        verdicts = judged_now(self.run, [e for e in expectations if not hasattr(e, "flash")])
        if len(verdicts) == len(expectations):
            return check_results(expectations, verdicts)
        asked = defer.gatherResults([side.callRemote(JudgeFlash) for side in self.run.sides], consumeErrors=True)
        return asked.addCallback(self._with_flash, expectations, verdicts)

    def _with_flash(self, answers: list[dict], expectations: list, verdicts: dict) -> list[dict]:
        from labsim.scenario.expectations import flash_verdict
        from labsim.ui.exercise import check_results, flash_checks

        flash = flash_checks(self.run.scenario)  # in the order each worker answered them
        shards = [json.loads(answer["results"]) for answer in answers]
        order = {driver.phone.mac: index for index, driver in enumerate(self.run.fleet)}  # one process's order
        for number, expectation in enumerate(flash):
            selected = sum(results[number][0] for results in shards)
            failing = sorted((mac for results in shards for mac in results[number][1]), key=order.__getitem__)
            verdicts[id(expectation)] = flash_verdict(expectation.flash, selected, failing, expectation.name)
        return check_results(expectations, verdicts)

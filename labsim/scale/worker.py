"""A worker of ``--workers``: one ``ShardRun`` driven by its parent over AMP
(``labsim.scale.protocol``), in its own process with its own reactor.

The worker ignores Ctrl-C (the terminal sends it to the whole process group): the parent
decides, and asks each worker to finish, so every shard's report is written once. If the
parent goes away (its end of the pipes closes), the worker writes its shard report as
interrupted and exits: no worker outlives its parent.
"""

from __future__ import annotations

import json

from twisted.internet import task
from twisted.protocols import amp

from labsim.phones.events import CheckSync, FactoryReset, PowerCycle
from labsim.scale.fleet_metrics import TIMING_PREFIXES, RequestsOutbox, StagesOutbox, reads_requests, reads_stages
from labsim.scale.protocol import (Begin, ChangeFault, Changes, ControlService, Deliver, Finish, FlushCapture, Hello,
                                  JudgeFlash, PhoneStory, WriteShard, chunks)

FLUSH_INTERVAL_S = 0.2


class WorkerSide(amp.AMP):
    def __init__(self, run, reactor):
        super().__init__()
        self.run = run
        self.reactor = reactor
        self._dirty: dict[str, object] = {}  # mac -> driver, changed since the last flush
        self._flusher = task.LoopingCall(self.flush)
        self._flusher.clock = reactor
        self._by_mac: dict[str, object] = {}
        self._counters_sent = ""
        self._members: dict | None = None  # mac -> member, built when a dashboard first asks
        self.exit_code = 1
        run.changes = self._changed
        # A when: on the request series or on stage latencies: the parent adds up every
        # worker's requests per second, and keeps every worker's latencies.
        self._requests = RequestsOutbox(run) if reads_requests(run.scenario) else None
        self._stages = StagesOutbox(run.members) if reads_stages(run.scenario) else None

    def connectionMade(self):
        super().connectionMade()
        self.callRemote(Hello, shard=self.run.shard.index, phones=len(self.run.members))

    def _changed(self, driver, old: str, new: str) -> None:
        self._dirty[driver.phone.mac] = driver

    def flush(self) -> None:
        totals = self.counters()
        counters = json.dumps(totals)
        moved = {}  # told once: the parent adds them up (the first message of the flush carries them)
        if self._requests is not None:
            moved["requests_per_second"] = self._requests.since_last()
        if self._stages is not None:
            moved["stage_latencies"] = self._stages.since_last()
            moved["download_outcomes"] = self._stages.outcomes_since_last()
        moved = {name: value for name, value in moved.items() if value}
        told = json.dumps({**totals, **moved}) if moved else counters
        if not self._dirty:
            if counters != self._counters_sent or moved:  # requests and downloads go on while no phone changes state
                self._counters_sent = counters
                self.callRemote(Changes, shard=self.run.shard.index, phones="[]", counters=told)
            return
        self._counters_sent = counters
        entries = []
        for mac, driver in self._dirty.items():
            phone = driver.phone
            entries.append([mac, phone.state, phone.reboots, phone.powered_on_at, phone.ready_at])
        self._dirty.clear()
        for number, part in enumerate(chunks(entries, 80)):
            self.callRemote(Changes, shard=self.run.shard.index, phones=part, counters=told if number == 0 else counters)

    def counters(self) -> dict:
        from labsim.scale.shared_services import live_counters

        network, services = self.run._network, self.run.lab_services
        if network is None:
            return {}
        # Requests per service so far (the series report.html draws): a dashboard's rates.
        requests = {service: sum(seconds) for service, seconds in self.run.series.per_second.items()}
        totals = {"dhcp": network.relay.stats["sent"], "requests": requests}
        if services is not None:  # what this worker's own file services answered (the progress line)
            totals.update(live_counters(services.stats()))
        return totals

    @Begin.responder
    def begin(self, start_at: float, targets: str, stay_open: bool | None = None):
        self.run.stay_open = bool(stay_open)  # --ui: a settled lab stays up; Finish ends it
        if stay_open:  # a dashboard may ask for any phone's story (PhoneStory)
            self.run._events.keep_for_story()
            from labsim.ui.exercise import check_reads

            # and judge its check on the fleet's requests (service.*) and timings (stage.*
            # latencies, downloads.* outcomes): told from the start, before any phone has run
            if self._requests is None and check_reads(self.run.scenario, "service."):
                self._requests = RequestsOutbox(self.run)
            if self._stages is None and check_reads(self.run.scenario, TIMING_PREFIXES):
                self._stages = StagesOutbox(self.run.members)
        self.run.start_at = start_at
        self.run.targets = {name: tuple(value) for name, value in json.loads(targets).items()}
        started = self.run.start()
        started.addCallback(self._started)
        return started.addCallback(lambda _: {})

    def _started(self, _):
        self._by_mac = {driver.phone.mac: driver for driver in self.run._drivers}
        self._flusher.start(FLUSH_INTERVAL_S, now=False)

    @Deliver.responder
    def deliver(self, kind: str, macs: str, reboot: bool):
        event = {"power_cycle": PowerCycle, "factory_reset": FactoryReset}.get(kind)
        delivered = 0
        for mac in json.loads(macs):
            driver = self._by_mac.get(mac)
            if driver is not None:
                driver.deliver(event() if event else CheckSync(reboot))
                delivered += 1
        self.flush()  # what the action changed reaches the parent before this answer
        return {"delivered": delivered}

    @ChangeFault.responder
    def change_fault(self, verb: str, spec: str):
        from labsim.faults import fault_from_spec
        from labsim.scenario.schema import Fault

        faults = self.run.faults
        if verb == "add":
            faults.add(fault_from_spec(Fault.model_validate(json.loads(spec)), len(faults.faults)))
        else:
            faults.remove(spec)
        return {}

    # --- what a dashboard on the parent asks for (run --workers N --ui) -------------------

    @PhoneStory.responder
    def phone_story(self, mac: str):
        from labsim.ui.story import phone_story

        if self._members is None:
            self._members = {member.phone.mac: member for member in self.run.members}
        member = self._members.get(mac)
        found = None if member is None else phone_story(self.run, member)
        return {"story": json.dumps(found, separators=(",", ":"))}

    @JudgeFlash.responder
    def judge_flash(self):
        from labsim.scenario.expectations import flash_failures
        from labsim.ui.exercise import flash_checks

        members = self.run.members
        results = [flash_failures(expectation.flash, members) for expectation in flash_checks(self.run.scenario)]
        return {"results": json.dumps(results, separators=(",", ":"))}

    @FlushCapture.responder
    def flush_capture(self):
        if self.run._capture is not None:
            self.run._capture.flush()
        return {}

    @WriteShard.responder
    def write_shard(self, reason: str, complete: bool):
        self.flush()
        self.run._end(reason, complete, final=False)  # shard.json and events.jsonl; the phones go on
        return {}

    @ControlService.responder
    def control_service(self, verb: str, name: str):
        try:
            return {"outcome": self.run.lab_services.control(verb, name)}
        except Exception as exc:  # said to the parent, which says it on the run's stream
            return {"outcome": f"error: {exc}"}

    @Finish.responder
    def finish(self, reason: str, complete: bool):
        self.flush()
        if self._flusher.running:
            self._flusher.stop()
        self.run._end(reason, complete, final=True)
        self.exit_code = self.run.exit_code
        self.reactor.callLater(0, self._shut_down)
        return {"code": self.run.exit_code}

    def _shut_down(self):
        closing = self.run.close()
        closing.addBoth(lambda _: self.reactor.stop() if self.reactor.running else None)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        # The parent is gone (also after a report of a lab kept open for its dashboard):
        # keep what was done, then leave.
        if not self.run.closed:
            self.run.interrupt("interrupted (the --workers parent went away)")
            self._shut_down()


def serve_worker(reactor, run, fds: str) -> int:
    """Runs ``run`` under a parent's control over ``fds`` ("3,4": read, write). Returns
    the exit code."""
    import signal

    from twisted.internet import stdio

    read_fd, write_fd = (int(fd) for fd in fds.split(","))
    side = WorkerSide(run, reactor)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    def connect():
        try:
            run.start_lab_services()  # the parent's file service ports, joined before Hello
        except Exception as exc:  # the parent shows a worker's stdout when it ends while starting
            print(f"labsim: worker {run.shard}: {exc}", flush=True)
            side.exit_code = 2
            reactor.stop()
            return
        stdio.StandardIO(side, stdin=read_fd, stdout=write_fd, reactor=reactor)

    reactor.callWhenRunning(connect)
    reactor.run(installSignalHandlers=False)
    return side.exit_code

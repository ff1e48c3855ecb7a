"""``labsim run FILE --workers N``: one run on N processes, one report.

The layout: the parent runs labsim's DHCP (the one lease authority) and PnP; the file
services (TFTP, HTTP, FTP, DNS) run in every process on their shared ports
(``labsim.scale.shared_services``: same files, uploads, faults; a ``stop_service``
reaches every process; counters summed); and N workers run the phones, each ``labsim run FILE --shard i/N`` with
its own reactor and its own DHCP relay address, started on one shared instant. The
parent keeps a mirror of every phone's state from the workers' ``Changes`` stream, and
from it the progress line, the timeline (``when:`` judged on the whole fleet; phone
actions picked over the whole fleet as one process picks them, then sent to the shards
that hold the phones), the time limit and the end of the run. At the end each worker
writes its shard (``shard.json``, ``events.jsonl``) under ``REPORT_DIR/shards/`` and the
parent merges them into the report folder (``observe.merge``).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import sys
import time
from datetime import datetime, timezone

from twisted.internet import defer, protocol
from twisted.protocols import amp

from labsim.faults import FaultSet, fault_from_spec
from labsim.fleet.shard import Shard, roster
from labsim.lab_control import LabServicesControl
from labsim.observe.merge import MergeError, merge_report
from labsim.observe.pcap_merge import shard_capture_path
from labsim.observe.progress import ProgressPrinter, StateCounter
from labsim.observe.report import phone_metrics
from labsim.phones.events import CheckSync, FactoryReset, PowerCycle
from labsim.run import EXIT_FAILED, UploadFolders, materialize_provisioning
from labsim.scale.fleet_metrics import FleetRequests, FleetStages, reads
from labsim.scale.protocol import (Begin, ChangeFault, Changes, ControlService, Deliver, Finish, Hello, WriteShard,
                                  chunks)
from labsim.scale.shared_services import live_counters, served_by_workers, worker_lab
from labsim.scenario import calendar_start
from labsim.scenario.durations import format_duration
from labsim.scratch import ScratchFolder
from labsim.services.lab import LabServices
from labsim.timeline import Timeline

START_MARGIN_S = 0.5  # from "every worker is ready" to the shared start instant
HELLO_TIMEOUT_S = 120.0
FINISH_TIMEOUT_S = 120.0
_NO_STAGES = ()
_ACTION_KINDS = {PowerCycle: "power_cycle", FactoryReset: "factory_reset", CheckSync: "check_sync"}


def refuse_what_workers_cannot_keep(scenario) -> None:
    """What needs the phones in the process that owns the network. (A ``when:`` reads the
    parent's mirror of states, reboots and times, and what the workers tell while a
    condition reads it: their requests per second and their stage latencies.)"""
    from labsim.scale.shard_run import refuse_real_network

    refuse_real_network(scenario, "--workers")
    if scenario.services.dhcp is not None and scenario.services.dhcp.interface:
        raise ValueError("--workers: services.dhcp.interface (broadcast DHCP in a namespace lab) needs the phones "
                         "in the process that owns the interface; run without --workers")
    if scenario.network.interface:
        raise ValueError("--workers: network.interface (phones on a real segment) keeps one DHCP rate cap and one "
                         "release at the end in one process; run without --workers")


class MirrorPhone:
    """What the parent knows of a phone the workers run."""

    __slots__ = ("mac", "model", "state", "reboots", "powered_on_at", "ready_at")
    stages = _NO_STAGES

    def __init__(self, mac: str, model: str):
        self.mac, self.model = mac, model
        self.state, self.reboots, self.powered_on_at, self.ready_at = "off", 0, None, None


class MirrorDriver:
    """A phone of a shard, as the timeline and the expectations see it."""

    __slots__ = ("fleet", "phone", "shard", "outbox", "vendor", "order")

    def __init__(self, entry, outbox: dict):
        self.fleet, self.shard, self.vendor, self.order = entry.fleet, entry.shard, entry.vendor, entry.order
        self.phone = MirrorPhone(entry.phone.mac, entry.phone.model)
        self.outbox = outbox

    def deliver(self, event) -> None:
        kind = _ACTION_KINDS[type(event)]
        reboot = bool(event.reboot) if kind == "check_sync" else False
        self.outbox.setdefault((self.shard, kind, reboot), []).append(self.phone.mac)


class ParentSide(amp.AMP):
    def __init__(self, parent: "WorkersRun", index: int):
        super().__init__()
        self.parent, self.index = parent, index

    @Hello.responder
    def hello(self, shard: int, phones: int):
        self.parent._hello(self.index, phones)
        return {}

    @Changes.responder
    def changes(self, shard: int, phones: str, counters: str):
        self.parent._changes(self.index, json.loads(phones), json.loads(counters))
        return {}


class WorkerProcess(protocol.ProcessProtocol):
    """A worker process with AMP on its fds 3 (to the worker) and 4 (from it). This object
    is the AMP protocol's transport."""

    disconnecting = False

    def __init__(self, amp_protocol, index: int):
        self.amp, self.index = amp_protocol, index
        self.ended = defer.Deferred()
        self.exit_code = None
        self.how = ""
        self.output = b""

    def connectionMade(self):
        self.amp.makeConnection(self)

    def write(self, data: bytes) -> None:
        self.transport.writeToChild(3, data)

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self.transport.closeChildFD(3)
        self.transport.closeChildFD(4)

    def getPeer(self):
        return ("labsim-worker", self.index)

    def getHost(self):
        return ("labsim-parent",)

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd == 4:
            self.amp.dataReceived(data)
        else:
            self.output = (self.output + data)[-4000:]  # the worker's own words, for an error

    def processEnded(self, reason) -> None:
        self.exit_code = getattr(reason.value, "exitCode", None)
        signal_number = getattr(reason.value, "signal", None)
        self.how = f"killed by signal {signal_number}" if self.exit_code is None and signal_number \
            else f"exit code {self.exit_code}"
        self.amp.connectionLost(reason)
        self.ended.callback(self.exit_code)


class WorkersRun:
    def __init__(self, reactor, loaded, *, workers: int, report_dir: str, argv_extra: list[str],
                 stream=sys.stdout, interactive: bool | None = None, state_dir: str | None = None,
                 pcap_path: str | None = None, uploads_dir: str | None = None, ports_file: str | None = None):
        self.reactor = reactor
        self.loaded = loaded
        self.scenario = loaded.scenario
        refuse_what_workers_cannot_keep(self.scenario)
        self.count = workers
        self.report_dir = report_dir
        self.argv_extra = argv_extra
        self.stream = stream
        self.interactive = stream.isatty() if interactive is None else interactive
        self.state_dir = state_dir
        self.pcap_path = pcap_path
        self.uploads = UploadFolders(loaded, report_dir, uploads_dir)
        self.ports_file = ports_file
        self.outbox: dict = {}  # (shard, action, reboot) -> MACs the timeline just picked
        self.deliveries = 0  # Deliver calls not answered yet
        self.fleet = [MirrorDriver(entry, self.outbox) for entry in roster(self.scenario, workers)]
        self.by_mac = {driver.phone.mac: driver for driver in self.fleet}
        self.counter = StateCounter(len(self.fleet))
        self.counter.listeners.append(self._on_state_change)
        self.unsettled = len(self.fleet)
        self.faults = FaultSet(random.Random(f"{self.scenario.seed}:faults"))
        for index, spec in enumerate(self.scenario.faults):
            self.faults.add(fault_from_spec(spec, index))
        self.finished = defer.Deferred()
        self.exit_code = EXIT_FAILED
        self.timeline: Timeline | None = None
        self.shard_counters: dict[int, dict] = {}
        # What one process's run holds of its phones, from what the workers tell while a
        # when: or a dashboard's check reads it: the requests per second (service.*), the
        # stage latencies (stage.*).
        self.series = FleetRequests()
        self.stage_archive = FleetStages()
        self.processes: list[WorkerProcess] = []
        self.sides: list[ParentSide] = []
        self.shard_dirs = [os.path.join(report_dir, "shards", Shard(i, workers).label) for i in range(workers)]
        self._hellos: dict[int, int] = {}
        self._all_ready = defer.Deferred()
        self._scratch = ScratchFolder(loaded)  # where the served provisioning tree goes, made as the run starts
        self._services: LabServices | None = None
        self.shared = served_by_workers(self.scenario)  # the services every worker serves too
        self._lab = ""  # what the workers need to serve them (--worker-lab)
        self._described = ""
        self._deadline = self._progress = None
        self._epoch = 0.0
        self._started_wall = ""
        self._started_monotonic = 0.0
        self._ending = False
        self.report_written = False
        # --ui (labsim.ui.shards): a settled lab stays up, its report written, until Ctrl-C.
        self.stay_open = False
        self.closed = False
        self.report: dict | None = None  # {"end_reason"} once a merged report is written
        self.before_report: list = []  # called before the report is written (the dashboard flushes its feed)
        self.control = _WorkersControl(self)
        self._writing: defer.Deferred | None = None  # a report of the open lab being written
        self._closing: defer.Deferred | None = None

    @property
    def members(self) -> list[MirrorDriver]:
        """The whole fleet as the parent sees it (what a dashboard and its controls read)."""
        return self.fleet

    def elapsed_s(self) -> float:
        """Seconds since the run started (the phones' start, ``Begin.start_at``)."""
        return self.reactor.seconds() - self._epoch if self._epoch else 0.0

    def calendar_from(self) -> float:
        """Where the run starts on the lab's calendar (epoch seconds, UTC): ``clock_starts``."""
        return calendar_start.calendar_from(self.scenario.clock_starts)

    # --- starting --------------------------------------------------------------------------

    @defer.inlineCallbacks
    def start(self):
        try:
            yield self._start()
        except Exception:
            self._scratch.remove()  # a run that cannot start (a port in use …) leaves no tree behind
            raise

    @defer.inlineCallbacks
    def _start(self):
        root = materialize_provisioning(self.loaded, self._scratch.make(), self.fleet)
        if self.stay_open:  # --ui: the dashboard's live log and service counters read the parent's services
            self.shared = ()
        self._services = LabServices(self.reactor, self.scenario.services, root, cert_dir=self.report_dir,
                                     own_fleet=True, share_ports="open", shared=self.shared,
                                     faults=self.faults, upload_folders=self.uploads)
        self._services.auth_secret = secrets.token_bytes(32)  # one Digest nonce key for every process
        yield self._services.start()
        self._services.attach_faults()
        if self.ports_file:
            self._services.write_ports_file(self.ports_file)
        self._described = self._services.describe()
        self._lab = worker_lab(self._services, self.scenario.services, self.shared, report_dir=self.report_dir,
                               uploads_override=self.uploads.override)
        for index in range(self.count):
            self._spawn(index)
        ready = self._all_ready
        timeout = self.reactor.callLater(HELLO_TIMEOUT_S, lambda: ready.called or ready.errback(
            RuntimeError(f"the workers did not start within {HELLO_TIMEOUT_S:g}s")))
        yield ready
        if timeout.active():
            timeout.cancel()
        yield self._services.hand_over(self.shared)  # every worker serves them now: the parent leaves
        self._epoch = self.reactor.seconds() + START_MARGIN_S
        self._started_wall = datetime.fromtimestamp(self._epoch, timezone.utc).isoformat(timespec="seconds")
        self._started_monotonic = time.monotonic() + START_MARGIN_S
        targets = json.dumps(self._targets())
        yield defer.gatherResults([side.callRemote(Begin, start_at=self._epoch, targets=targets,
                                                   stay_open=self.stay_open or None)
                                   for side in self.sides], consumeErrors=True)
        dhcp = self._targets().get("dhcp")
        self.stream.write(
            f"labsim: {self.scenario.name}: {len(self.fleet)} phones in {self.count} workers "
            f"({', '.join(str(n) for _, n in sorted(self._hellos.items()))}); services: "
            f"{self._described or 'none (external servers)'}"
            + (f" ({', '.join(name.upper() for name in self.shared)} in every worker)" if self.shared else "")
            + f"; DHCP via relays "
            f"{self.scenario.network.relay_address}+0..{self.count - 1}"
            + (f" -> {dhcp[0]}:{dhcp[1]}" if dhcp else "") + "\n")
        lead = max(0.0, self._epoch - self.reactor.seconds())
        self.timeline = Timeline(self.scenario.timeline, self.control, self.reactor, self._epoch,
                                 self.scenario.seed)
        self.timeline.start()
        self._deadline = self.reactor.callLater(lead + self.scenario.time_limit_s, self._time_up)
        if self.scenario.duration is not None:  # as one process: the run goes on to its duration, then ends
            self.reactor.callLater(lead + self.scenario.duration, self._end,
                                   f"duration of {format_duration(self.scenario.duration)} reached")
        self._progress = ProgressPrinter(self.counter, self.stream, self.reactor, self._epoch,
                                         interactive=self.interactive, counters=self._live_counters)
        self._progress.start()
        if not self.fleet:
            self._end("no phones")

    def _spawn(self, index: int) -> None:
        shard = Shard(index, self.count)
        args = [sys.executable, "-m", "labsim", "run", self.loaded.path, "--shard", str(shard),
                "--report-dir", self.shard_dirs[index], "--control-fds", "3,4", *self.argv_extra]
        if self.shared:
            args += ["--worker-lab", self._lab]
        if self.state_dir:
            args += ["--state-dir", self.state_dir]
        if self.pcap_path:
            args += ["--pcap", shard_capture_path(self.pcap_path, shard.label)]
        side = ParentSide(self, index)
        process = WorkerProcess(side, index)
        process.ended.addCallback(self._worker_ended, index)
        self.sides.append(side)
        self.processes.append(process)
        self.reactor.spawnProcess(process, sys.executable, args, env=dict(os.environ),
                                  childFDs={0: "w", 1: "r", 2: 2, 3: "w", 4: "r"})

    def _targets(self) -> dict:
        """Where the workers' phones find labsim's services (the ports the parent bound)."""
        spec, network, targets = self.scenario.services, self.scenario.network, {}
        if self._services.dhcp is not None and not network.dhcp_server:
            targets["dhcp"] = (spec.dhcp.address, network.dhcp_port or self._services.dhcp_port)
        if spec.dns is not None and not network.dns_server:
            targets["dns"] = (spec.dns.address, self._services.bound_ports["dns"])
        if self._services.pnp is not None and not network.pnp_server:
            targets["pnp"] = (spec.pnp.address, self._services.pnp.port)
        return targets

    def _hello(self, index: int, phones: int) -> None:
        self._hellos[index] = phones
        if len(self._hellos) == self.count and not self._all_ready.called:
            self._all_ready.callback(None)

    def _worker_ended(self, code, index: int):
        how = self.processes[index].how
        if not self._ending:
            words = self.processes[index].output.decode(errors="replace").strip()
            self.stream.write(f"\nlabsim: worker {index} (shard {index}/{self.count}) ended ({how}) "
                              "before the run ended" + (f": {words[-600:]}" if words else "") + "\n")
            if not self._all_ready.called:
                self._all_ready.errback(RuntimeError(f"worker {index} ended ({how}) while starting"))
            else:
                self._end(f"worker {index} ended ({how})", complete=False)
        return code

    # --- during the run ---------------------------------------------------------------------

    def _changes(self, index: int, entries: list, counters: dict) -> None:
        requests = counters.pop("requests_per_second", None)
        if requests:
            self.series.take(index, requests)
        stages, outcomes = counters.pop("stage_latencies", None), counters.pop("download_outcomes", None)
        if stages or outcomes:
            self.stage_archive.take(stages or {}, outcomes)
        self.shard_counters[index] = counters
        for mac, state, reboots, powered_on_at, ready_at in entries:
            driver = self.by_mac.get(mac)
            if driver is None:
                continue
            phone = driver.phone
            phone.reboots, phone.powered_on_at, phone.ready_at = reboots, powered_on_at, ready_at
            if phone.state != state:
                old, phone.state = phone.state, state
                self.counter.state_changed(driver, old, state)

    def _live_counters(self) -> dict[str, int]:
        totals = {"ready": self.counter.counts["ready"],
                  "dhcp": sum(c.get("dhcp", 0) for c in self.shard_counters.values())}
        for counters in [live_counters(self._services.stats()), *self.shard_counters.values()]:
            for name in ("http", "tftp"):
                if name in counters:
                    totals[name] = totals.get(name, 0) + counters[name]
        return totals

    def _on_state_change(self, driver, old: str, new: str) -> None:
        was, now = old in ("ready", "failed"), new in ("ready", "failed")
        if was != now:
            self.unsettled += -1 if now else 1
        if self.unsettled == 0:
            self.reactor.callLater(0, self._end_if_settled)

    def _end_if_settled(self) -> None:
        if self.scenario.duration is not None:
            return  # a run with a duration goes on until it is over, as in one process
        if self.unsettled == 0 and self.timeline is not None:
            self.timeline.check_conditions_now()
        if self.unsettled == 0 and not (self.timeline and self.timeline.timed_actions_left) \
                and not self.outbox and not self.deliveries:
            self._end("all phones settled")

    def send_outbox(self) -> None:
        """The phone actions the timeline just picked, to the shards that hold them."""
        batches = list(self.outbox.items())
        self.outbox.clear()
        for (shard, kind, reboot), macs in batches:
            for part in chunks(macs, 20):
                # The worker sends the changes the action caused before it answers, so the
                # run cannot end on a mirror that does not show them yet.
                self.deliveries += 1
                asked = self.sides[shard].callRemote(Deliver, kind=kind, macs=part, reboot=reboot)
                asked.addBoth(self._delivered)

    def _delivered(self, _):
        self.deliveries -= 1
        if self.unsettled == 0:
            self.reactor.callLater(0, self._end_if_settled)

    def _time_up(self) -> None:
        self._end(f"time limit of {self.scenario.time_limit_s:g}s reached", complete=False)

    # --- the end ---------------------------------------------------------------------------

    def interrupt(self, why: str = "interrupted") -> defer.Deferred:
        if self.stay_open and self.unsettled == 0 and self.fleet:
            # The dashboard kept a settled lab open: closing it is the normal end.
            return self._end(f"all phones settled; lab closed ({why})", final=True)
        return self._end(why, complete=False, final=True)

    def _end(self, reason: str, complete: bool = True, final: bool = False) -> defer.Deferred:
        if self._ending:
            return self.finished
        if self.stay_open and not final:
            return self._write_while_open(reason, complete)
        self._ending = self.closed = True
        if self.timeline is not None:
            self.timeline.stop()
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        if self._progress is not None:
            self._progress.stop()
        asks = [self._finish_one(side, process, reason, complete)
                for side, process in zip(self.sides, self.processes)]
        done = defer.gatherResults(asks, consumeErrors=True)
        done.addCallback(lambda _: self._merge(reason, complete))
        done.addErrback(self._merge_failed)
        done.addCallback(self._finished)
        return self.finished

    def _write_while_open(self, reason: str, complete: bool) -> defer.Deferred:
        """--ui: the fleet settled (or the time limit passed): every shard writes what it
        has, the parent merges the report, and the lab (services, phones, timeline) stays
        up for the dashboard until Ctrl-C, which writes it again."""
        if self._writing is not None:
            return self._writing
        if self._deadline is not None and self._deadline.active() and self.unsettled == 0:
            self._deadline.cancel()
        if self._progress is not None:
            self._progress.stop()
        for hook in self.before_report:
            hook()
        asks = [side.callRemote(WriteShard, reason=reason, complete=complete)
                for side, process in zip(self.sides, self.processes) if not process.ended.called]
        writing = self._writing = defer.gatherResults(asks, consumeErrors=True)

        def merge(_):
            if self._ending:  # Ctrl-C came meanwhile: the final report follows
                return None
            self._merge(reason, complete)
            self.stream.write("  labsim: the lab stays open for the dashboard; Ctrl-C to close it (the report is "
                              "written again then)\n")
            return None

        writing.addCallback(merge)
        writing.addErrback(self._merge_failed)

        def written(result):
            self._writing = None
            self.stream.flush()
            return result

        return writing.addBoth(written)

    def _finish_one(self, side, process, reason: str, complete: bool) -> defer.Deferred:
        """Ask one worker to finish; fires once it has answered and exited (it is killed if
        it has not exited within FINISH_TIMEOUT_S)."""
        if process.ended.called:
            return defer.succeed(None)
        asked = side.callRemote(Finish, reason=reason, complete=complete)
        asked.addErrback(lambda failure: None)  # a worker gone already: the merge stands in for it
        exited = defer.Deferred()
        killer = self.reactor.callLater(FINISH_TIMEOUT_S, self._kill, process)

        def on_exit(code):
            if killer.active():
                killer.cancel()
            exited.callback(code)
            return code

        process.ended.addBoth(on_exit)
        return defer.gatherResults([asked, exited], consumeErrors=True)

    def _kill(self, process) -> None:
        if not process.ended.called:
            self.stream.write(f"labsim: worker {process.index} did not finish in {FINISH_TIMEOUT_S:g}s: killed\n")
            process.transport.signalProcess("KILL")

    def _merge(self, reason: str, complete: bool) -> int:
        duration = time.monotonic() - self._started_monotonic if self._started_monotonic else 0.0
        overrides = {"timeline": [vars(record) for record in self.timeline.log] if self.timeline else [],
                     "complete": complete, "end_reason": reason, "duration_s": max(0.0, duration),
                     "uploads": self.uploads.listing()}
        if self._started_wall:
            overrides["started"] = self._started_wall
        self.exit_code = merge_report(self.shard_dirs, self.report_dir, self.stream, overrides=overrides,
                                      extra_network={"faults": dict(self.faults.stats)},
                                      extra_services=self._services.stats() if self._services else {},
                                      state_dir=self.state_dir, pcap_path=self.pcap_path,
                                      stand_ins=self._as_last_seen)
        self.report_written = True
        self.report = {"end_reason": reason, "complete": complete}
        return self.exit_code

    def _as_last_seen(self, index: int) -> list:
        """The phones of a shard that wrote no report (its worker died), from the mirror."""
        from labsim.observe.merge import RecordedMember, RecordedPhone
        from labsim.phones.flash import Flash

        return [RecordedMember(driver.fleet, driver.vendor, RecordedPhone(
                    mac=phone.mac, model=phone.model, state=phone.state, failure="", reboots=phone.reboots,
                    power_cycles=0, powered_on_at=phone.powered_on_at, ready_at=phone.ready_at, flash=Flash(),
                    events=[], stages=[]), driver.order)
                for driver in self.fleet if driver.shard == index for phone in (driver.phone,)]

    def _merge_failed(self, failure):
        error = failure.value
        if isinstance(error, defer.FirstError):
            error = error.subFailure.value
        what = str(error) if isinstance(error, (MergeError, OSError, ValueError)) else repr(error)
        self.stream.write(f"labsim: no merged report: {what}\n")
        self.stream.flush()
        self.exit_code = EXIT_FAILED
        return self.exit_code

    def _finished(self, code):
        self._scratch.remove()
        if not self.finished.called:
            self.finished.callback(code)

    def close(self) -> defer.Deferred:
        """Stop the services and any worker left; once, however often it is asked (Ctrl-C
        both ends the run and shuts the reactor down)."""
        if self._closing is None:
            self._closing = self._close()
        done = defer.Deferred()

        def closed(result):
            done.callback(None)
            return result

        self._closing.addBoth(closed)
        return done

    @defer.inlineCallbacks
    def _close(self):
        if self._services is not None:
            yield self._services.stop()
        for process in self.processes:
            if not process.ended.called:
                process.transport.signalProcess("KILL")
                yield process.ended


class _WorkersControl(LabServicesControl):
    """What the timeline may do: the lab's services here and in the workers that run
    them too, the phones in their shards."""

    def drivers(self):
        return self.run.fleet

    def metrics(self, wanted=None):
        metrics, per_phone = phone_metrics(self.run.fleet, self.run.stage_archive, wanted=wanted)
        if wanted is None or reads(wanted, ("service.",)):
            metrics.update(self.run.series.metrics(self.run.elapsed_s()))
        return metrics, per_phone, len(self.run.fleet)

    def service(self, verb: str, name: str) -> str:
        if name not in self.run.shared:
            return self.run._services.control(verb, name)
        for side, process in zip(self.run.sides, self.run.processes):  # every process serving it
            if not process.ended.called:
                asked = side.callRemote(ControlService, verb=verb, name=name)
                asked.addCallback(self._controlled, process.index)
                asked.addErrback(lambda failure, index=process.index: self._controlled(
                    {"outcome": f"error: {failure.getErrorMessage()}"}, index))
        return f"{verb} {name}"

    def _controlled(self, answer: dict, index: int) -> None:
        if answer["outcome"].startswith("error"):
            self.run.stream.write(f"\nlabsim: worker {index}: {answer['outcome']}\n")

    def fault_added(self, spec) -> None:
        payload = json.dumps(spec.model_dump(mode="json", exclude_none=True))
        for side in self.run.sides:  # DHCP faults sit on each shard's relay
            side.callRemote(ChangeFault, verb="add", spec=payload)

    def fault_removed(self, name: str) -> None:
        for side in self.run.sides:
            side.callRemote(ChangeFault, verb="remove", spec=name)

    def timeline_changed(self) -> None:
        self.run.send_outbox()


def auto_workers() -> int:
    """``--workers auto``: the CPUs this process may run on (its affinity mask, which a
    container's cpuset or ``taskset`` narrows), not the machine's count."""
    return len(os.sched_getaffinity(0))


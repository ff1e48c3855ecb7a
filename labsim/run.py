"""One run of a scenario: start the services, boot the fleet, judge, report.

Everything happens on one reactor in one process. The run ends when every phone has
settled (ready or failed), when the time limit passes, or on Ctrl-C / SIGTERM; the
report is written in every case, marked incomplete when the run did not finish.
"""

from __future__ import annotations

import gc
import hashlib
import os
import random
import shutil
import sys
import time
from datetime import datetime, timezone

from twisted.internet import defer

from labsim.faults import FaultSet, FaultyLink, fault_from_spec
from labsim.fleet.fleet import build_fleets, fleet_devices
from labsim.fleet.collector import FullCollectionsHeld, SurvivorsFrozen
from labsim.fleet.pacer import Pacer
from labsim.fleet.state_dir import load_flash, save_flash
from labsim.scenario.timeline import entry_facts
from labsim.lab_control import LabServicesControl
from labsim.observe.progress import ProgressPrinter, StateCounter
# --- run outputs: events.jsonl, junit.xml, report.html, --pcap ----------------------
from labsim.observe.events_log import EventLog, RecordingLink
from labsim.observe.events_stream import EventStream, ScheduledWriter
from labsim.observe.html_report import PageFacts, write_html_report
from labsim.observe.junit import write_junit
from labsim.observe.pcap import PcapCapture
from labsim.observe.report import stage_latencies
from labsim.observe.series import TimeSeries
from labsim.observe.stage_archive import StageArchive
# --- end run outputs ----------------------------------------------------------------
from labsim.observe.report import RunRecord, build_report, judge, phone_metrics, summary_table, write_report
from labsim.scenario import calendar_start
from labsim.scenario.durations import format_duration
from labsim.scratch import ScratchFolder
from labsim.services.lab import LabServices
from labsim.timeline import Timeline, condition_metric
from labsim.transport.driver import PhoneDriver
from labsim.transport.loopback import LoopbackNetwork
from labsim.wire import cisco_crypt, yealink_aes

EXIT_PASSED, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
# A phone keeps its first and last events up to this many, in memory and in report.json
# (a boot is ~25; an hour of resyncs every minute ~800, a week of hourly ones thousands);
# events.jsonl has them all. 100: a run of resyncing phones stops growing after a few
# passes, and a phone still sees its recent failures (Snom counts them for its back-off).
EVENTS_PER_PHONE_IN_REPORT = 100


def materialize_provisioning(loaded, into: str, members=()) -> str:
    """The provisioning root the services serve: the scenario's folder, then its inline
    files written over it, then the per-phone files made from templates."""
    spec = loaded.scenario.provisioning
    root = os.path.join(into, "provisioning")
    if spec.directory:
        source = os.path.join(loaded.base_dir, spec.directory)
        shutil.copytree(source, root, symlinks=True)
    else:
        os.makedirs(root)
    for name, text in spec.files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    for template in spec.per_phone:
        wanted = set(template.fleets) if template.fleets else None
        counters: dict[str, int] = {}
        for member in members:
            index = counters[member.fleet] = counters.get(member.fleet, 0) + 1
            if wanted is not None and member.fleet not in wanted:
                continue
            bare = member.phone.mac.replace(":", "")
            values = {"mac": bare, "MAC": bare.upper(), "mac_colons": member.phone.mac,
                      "model": member.phone.model, "fleet": member.fleet, "index": index}
            name = template.name.format(**values)
            path = os.path.join(root, name)
            body = template.text.format(**values).encode("utf-8")
            if template.yealink_aes_key is not None:
                body = yealink_aes.encrypt_file(body, template.yealink_aes_key)
            elif template.cisco_key is not None:
                # The salt from the file's name and phrase, not at random: the same scenario
                # makes the same files, so a replay's MD5s and events stay byte-identical.
                phrase = template.cisco_key.format(**values)
                salt = hashlib.md5(f"{name}\0{phrase}".encode()).digest()[:cisco_crypt.SALT_BYTES]
                body = cisco_crypt.encrypt(body, phrase, salt=salt)
            with open(path, "wb") as handle:
                handle.write(body)
    return root


class UploadFolders:
    """Where the lab's uploads (HTTP PUT, TFTP WRQ, FTP STOR) are stored: never in the
    temporary copy the services serve, so they outlive the run.

    ``--uploads DIR`` on the command line: every service's uploads go to DIR. Otherwise a
    service's ``upload_dir`` inside the scenario's ``provisioning.directory`` (the folder
    the phones would have written to were it served directly), or, for a scenario with no
    directory, inside the report folder."""

    def __init__(self, loaded, report_dir: str, override: str | None = None):
        directory = loaded.scenario.provisioning.directory
        self.override = os.path.abspath(override) if override else None
        self.base = os.path.join(loaded.base_dir, directory) if directory else os.path.abspath(report_dir)
        self.used: set[str] = set()

    def folder(self, upload_dir: str) -> str:
        path = self.override or os.path.normpath(os.path.join(self.base, upload_dir))
        self.used.add(path)
        return path

    def listing(self) -> list[dict]:
        """Every file in the folders the services stored uploads in: path and size."""
        files = []
        for folder in sorted(self.used):
            for where, _, names in os.walk(folder):
                for name in sorted(names):
                    if ".part-" in name:  # an upload cut off mid-write
                        continue
                    path = os.path.join(where, name)
                    try:
                        files.append({"path": path, "bytes": os.path.getsize(path)})
                    except OSError:
                        pass
        return files


class ScenarioRun:
    # A run with a duration ends itself there; a --workers worker is ended by its parent.
    ends_at_its_duration = True
    # events.jsonl is written every this many seconds of the run's clock (so memory holds
    # seconds of events), and the phones' older download timings archived every so many writes.
    EVENTS_FLUSH_S = 2.0
    ARCHIVE_EVERY = 30
    EVENTS_INDEX = False  # events.jsonl.index beside events.jsonl: a shard's, for the merge
    EVENT_ROWS_PER_TURN = 1000
    # How long a settled fleet's run waits before it looks whether to end: what the phones
    # sent last (a TFTP transfer's final ACK, after the phone has its file) reaches the
    # services in far less on loopback, so their counters say every transfer ended (not
    # "transfers_ok 79, active 1"). Virtual time ends at the instant (virtual/run.py).
    LAST_PACKETS_S = 0.05
    SETTLED = "all phones settled"  # the end_reason of a run that ended because its phones settled

    def __init__(self, reactor, loaded, *, report_dir: str, stream=sys.stdout, interactive: bool | None = None,
                 state_dir: str | None = None, pcap_path: str | None = None, uploads_dir: str | None = None,
                 ports_file: str | None = None, stay_open: bool = False, duration_s: float | None = None):
        self.reactor = reactor
        self.ports_file = ports_file  # where the services' bound ports go (--ports-file)
        self.loaded = loaded
        self.scenario = loaded.scenario
        # Run this long whether or not the phones settle (--duration, the scenario's duration).
        self.duration_s = duration_s if duration_s is not None else self.scenario.duration
        self.report_dir = report_dir
        self.state_dir = state_dir
        self.stream = stream
        self.interactive = stream.isatty() if interactive is None else interactive
        saved = load_flash(state_dir, fleet_devices(self.scenario)) if state_dir else {}
        self.members = self._build_members(saved)
        self.relay_address = self.scenario.network.relay_address
        self.faults = FaultSet(random.Random(f"{self.scenario.seed}:faults"))
        for index, spec in enumerate(self.scenario.faults):
            self.faults.add(fault_from_spec(spec, index))
        self.timeline: Timeline | None = None
        self.counter = StateCounter(len(self.members))
        self.counter.listeners.append(self._on_state_change)
        self.unsettled = len(self.members)
        self.finished = defer.Deferred()
        self.report: dict | None = None
        # --ui: when the fleet settles (or the time limit passes) the report is written
        # and the lab stays up for the dashboard until Ctrl-C, which writes it again.
        self.stay_open = stay_open
        self.closed = False
        self.control = _LabControl(self)
        self.before_report: list = []  # called before the report is written (the dashboard flushes its feed)
        self._drivers: list[PhoneDriver] = []
        # While phones power on, the collector's full passes mostly wait (fleet/collector.py).
        self._collections = FullCollectionsHeld()
        self._survivors = SurvivorsFrozen()  # and later, full collections walk only what is new
        self._pacer = Pacer(reactor, on_done=self._collections.release)
        self._scratch = ScratchFolder(loaded)  # where the served provisioning tree goes, made as the run starts
        self.uploads = UploadFolders(loaded, report_dir, uploads_dir)
        self._services: LabServices | None = None
        self._network: LoopbackNetwork | None = None
        self._deadline = None
        self._progress = None
        self.releasing: defer.Deferred | None = None  # a real network's DHCPRELEASEs, until sent
        self._epoch = 0.0
        self._started_wall = ""
        self._started_monotonic = 0.0
        # --- run outputs: every phone's exchanges are recorded (events.jsonl), and
        # captured as frames when a pcap file is asked for.
        self.pcap_path = pcap_path
        self._events = EventLog(keep_per_phone=EVENTS_PER_PHONE_IN_REPORT)
        self._stream: EventStream | None = None  # writes the log to events.jsonl as the run goes
        self._page_facts: PageFacts | None = None  # what report.html reads of the report's phones
        self._event_writer: ScheduledWriter | None = None  # events.jsonl written as the run goes
        self.state_changes = 0  # phone state changes so far (the timeline's conditions look when it moves)
        self.stage_archive = None  # the phones' older download timings, as numbers (observe.stage_archive)
        # Requests per service and phones per state over time, counted as they happen.
        self.series = TimeSeries(self.duration_s or self.scenario.time_limit_s, len(self.members))
        self._events.series = self.series
        self.counter.listeners.append(lambda driver, old, new: self.series.state_changed(driver.now(), old, new))
        self._capture: PcapCapture | None = None
        # --- end run outputs

    @defer.inlineCallbacks
    def start(self):
        """Start everything; ``self.finished`` fires with the exit code."""
        try:
            if self.pcap_path:  # run outputs: fail before anything starts if the file cannot be made
                self._capture = PcapCapture(self.pcap_path)
            yield self._start_services()
            where = self._start_network()
            if self._capture is not None:  # the fleet's DNS lookups, in the capture too
                self._network.set_dns_capture(self._capture)
        except Exception:
            self._scratch.remove()  # a run that cannot start (a port in use …) leaves no tree behind
            raise
        for member in self.members:
            # run outputs: the phone reaches the network through a link that records it.
            link = RecordingLink(self._network.phone_view(member.phone), self._events, self.reactor, 0.0,
                                 capture=self._capture)
            driver = PhoneDriver(member.phone, self.reactor, link, epoch=0.0, observer=self.counter)
            driver.fleet = member.fleet
            self._drivers.append(driver)
            member.phone.journal = self._events  # its state changes and steps go to events.jsonl too
        self._event_writer = ScheduledWriter(self._open_event_stream(), self.reactor, period=self.EVENTS_FLUSH_S,
                                             rows_per_turn=self.EVENT_ROWS_PER_TURN,
                                             actions=lambda: self.timeline.log if self.timeline else ())
        self._event_writer.start()
        # Everything built so far lives for the whole run: out of the collector's sight,
        # so a full collection does not walk every phone's objects and stall the run
        # (measured: stalls of ~200 ms at 2,000 phones, the power-on schedule's worst).
        gc.collect()
        gc.freeze()
        self._survivors.install()
        # The start instant comes after that set-up (seconds at 100,000 phones), or the
        # first phones would be late against their schedule before the run began.
        self._epoch = self._start_instant()
        lead = max(0.0, self._epoch - self.reactor.seconds())  # until a shared start instant (shards)
        self._started_wall = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._started_monotonic = time.monotonic()
        self.stream.write(
            f"labsim: {self.scenario.name}: {len(self.members)} phones; services: "
            f"{self._services.describe() or 'none (external servers)'}; {where}\n"
        )
        now, power_on = self.reactor.seconds(), []
        for member, driver in zip(self.members, self._drivers):
            driver.epoch = driver.network.epoch = self._epoch
            power_on.append((now + lead + member.power_on_at, driver.power_on))
        self._pacer.schedule(power_on)  # one timer for the whole arrival schedule (fleet/pacer.py)
        self._collections.hold()
        self._pacer.start()
        self.timeline = self._make_timeline()
        if self.timeline is not None:
            self.timeline.start()
        if self.duration_s is not None and self.ends_at_its_duration:
            self.reactor.callLater(lead + self.duration_s, self._end,
                                   f"duration of {format_duration(self.duration_s)} reached")
        self._start_watch(lead)
        if not self.members:
            self._end("no phones")

    def _open_event_stream(self) -> EventStream:
        if self._stream is None:
            self.stage_archive = StageArchive()
            self._stream = EventStream(self.report_dir, self._events, self.members, archive=self.stage_archive,
                                       archive_every=self.ARCHIVE_EVERY, index=self.EVENTS_INDEX)
        return self._stream

    def _start_network(self) -> str:
        """The phones' network; returns how it reaches DHCP, for the first line."""
        if self.scenario.network.interface:  # real-network mode (README: Testing your own servers)
            from labsim.transport.realnet import RealNetwork

            self._network = RealNetwork(self.reactor, self.scenario.network, dns_server=self._dns_target(),
                                        dhcp_link=FaultyLink(self.faults, "dhcp", self.reactor))
            return self._network.describe(len(self.members))
        server = self._dhcp_target()
        self._network = LoopbackNetwork(self.reactor, dhcp_server=server,
                                        relay_address=self.relay_address,
                                        dhcp_link=FaultyLink(self.faults, "dhcp", self.reactor),
                                        pnp_server=self._pnp_target(), dns_server=self._dns_target(),
                                        http_connections=self.scenario.network.http_connections)
        return f"DHCP via relay {self.relay_address} -> {server[0]}:{server[1]}"

    def _start_watch(self, lead: float) -> None:
        """The time limit and the progress line, on the reactor's (wall) clock."""
        self._deadline = self.reactor.callLater(lead + self.scenario.time_limit_s, self._time_up)
        self._progress = ProgressPrinter(self.counter, self.stream, self.reactor, self._epoch,
                                         interactive=self.interactive, counters=self._live_counters)
        self._progress.start()

    # --- what a shard (labsim.scale.shard_run) does differently ---------------------------

    def _build_members(self, saved_flash):
        return build_fleets(self.scenario, saved_flash)

    def _provisioning_root(self, members) -> str:
        """The tree the services serve, written into a scratch folder of the run's own
        (``labsim/scratch.py``), removed when the run ends or cannot start."""
        return materialize_provisioning(self.loaded, self._scratch.make(), members)

    def _start_services(self):
        root = self._provisioning_root(self.members)
        self._services = LabServices(self.reactor, self.scenario.services, root, cert_dir=self.report_dir,
                                     own_fleet=True,
                                     faults=self.faults, upload_folders=self.uploads)
        started = self._services.start()
        started.addCallback(lambda _: self._services.attach_faults())
        if self.ports_file:
            started.addCallback(lambda _: self._services.write_ports_file(self.ports_file))
        return started

    def _start_instant(self) -> float:
        return self.reactor.seconds()

    def elapsed_s(self) -> float:
        """Seconds since the run started, on its clock (simulated in a virtual run)."""
        return self.reactor.seconds() - self._epoch if self._epoch else 0.0

    def calendar_from(self) -> float:
        """Where the run starts on the lab's calendar (epoch seconds, UTC): ``clock_starts``."""
        return calendar_start.calendar_from(self.scenario.clock_starts)

    def _simulated_from(self) -> float | None:
        """Where a virtual run's clock started (its calendar); None: the real clock."""
        return None

    def _make_timeline(self):
        return self._timeline(self.control)

    def _timeline(self, control) -> Timeline:
        """The scenario's timeline acting through ``control``, which keeps what the ``when:``
        conditions read as the phones move (made before any phone has run)."""
        control.watch_conditions(self.scenario.timeline)
        return Timeline(self.scenario.timeline, control, self.reactor, self._epoch, self.scenario.seed)

    def _report(self, record) -> str:
        """Judge the run, write report.json, save the flash; the summary table."""
        self.report = build_report(record, judge(record))
        self._page_facts = PageFacts(self.report)  # what report.html reads of the phones, gathered now
        path = write_report(self.report, self.report_dir, each_phone=self._page_facts.add)
        self._save_state()
        table = summary_table(self.report)
        self.stream.write(table + f"\n  report: {path}\n")
        return table

    def _save_state(self) -> None:
        if self.state_dir:
            save_flash(self.state_dir, self.members)

    def _live_counters(self) -> dict[str, int]:
        """Running totals for the progress line's rates."""
        totals = {"ready": self.counter.counts["ready"], "dhcp": self._network.relay.stats["sent"]}
        stats = self._services.stats()
        if "http" in stats:
            totals["http"] = stats["http"]["requests"]
        if "tftp" in stats:
            totals["tftp"] = stats["tftp"].get("transfers_ok", 0)
        return totals

    def _dns_target(self) -> tuple[str, int] | None:
        """The DNS server phones resolve names with: network.dns_server, else labsim's own."""
        from labsim.scenario.schema import parse_host_port

        if self.scenario.network.dns_server:
            return parse_host_port(self.scenario.network.dns_server, 53)
        if self._services.dns is not None:
            return self.scenario.services.dns.address, self._services.dns.port
        return None

    def _pnp_target(self) -> tuple[str, int] | None:
        """Where the phones' PnP SUBSCRIBE goes: network.pnp_server, else labsim's own
        responder, else nowhere (no multicast on loopback)."""
        from labsim.scenario.schema import parse_host_port

        if self.scenario.network.pnp_server:
            return parse_host_port(self.scenario.network.pnp_server, 5060)
        if self._services.pnp is not None:
            return self.scenario.services.pnp.address, self._services.pnp.port
        return None

    def _dhcp_target(self) -> tuple[str, int]:
        network, dhcp = self.scenario.network, self.scenario.services.dhcp
        host = network.dhcp_server or dhcp.address
        port = network.dhcp_port or (self._services.dhcp_port if dhcp is not None else 67)
        return host, port

    def _on_state_change(self, driver, old: str, new: str) -> None:
        self.state_changes += 1
        was = old in ("ready", "failed")
        now = new in ("ready", "failed")
        if was != now:
            self.unsettled += -1 if now else 1
        if self.unsettled == 0:
            # Let the phone finish its own step, and its last packets reach the services
            # (a TFTP transfer's final ACK comes after the phone has its file), before the
            # run reads their counters and tears things down.
            self.reactor.callLater(self.LAST_PACKETS_S, self._end_if_settled)

    def _end_if_settled(self) -> None:
        if self.duration_s is not None:
            return  # a run with a duration goes on until it is over
        if self.unsettled == 0 and self.timeline is not None:
            self.timeline.check_conditions_now()  # may start phones again
        if self.unsettled == 0 and not (self.timeline and self.timeline.timed_actions_left):
            self._end(self.SETTLED)

    def _on_timeline_action(self) -> None:
        # An action at the end of a settled run may be the last thing it waited for.
        if self.unsettled == 0:
            self.reactor.callLater(0, self._end_if_settled)

    def _deliver_last_packets(self) -> None:
        """The phones have settled and stopped: let what they sent last reach the services
        before the run reads their counters. On sockets the run already waited for it
        (``LAST_PACKETS_S``, before it looked whether to end)."""

    def _time_up(self) -> None:
        self._end(f"time limit of {self.scenario.time_limit_s:g}s reached", complete=False)

    def interrupt(self, why: str = "interrupted") -> int:
        """Stop now and write the report (Ctrl-C, SIGTERM). Returns the exit code."""
        if self.stay_open and self.unsettled == 0 and self.members:
            # The dashboard kept a settled lab open: closing it is the normal end.
            self._end(f"all phones settled; lab closed ({why})", final=True)
        else:
            self._end(why, complete=False, final=True)
        return self.exit_code

    def _end(self, reason: str, complete: bool = True, final: bool = False) -> None:
        if self.closed:
            return
        final = final or not self.stay_open
        if final:
            self.closed = True
            self._pacer.stop()  # phones not powered on yet stay off
            if self._event_writer is not None:
                self._event_writer.stop()
            for driver in self._drivers:
                driver.stop()
            if self.timeline is not None:
                self.timeline.stop()
            if reason == self.SETTLED:
                self._deliver_last_packets()
        if self._deadline is not None and self._deadline.active() and (final or self.unsettled == 0):
            self._deadline.cancel()
        if self._progress is not None:
            self._progress.stop()
        for hook in self.before_report:
            hook()
        release_all = getattr(self._network, "release_all", None)
        if release_all is not None and final:  # a real network: give back every lease (close() waits)
            self.releasing = release_all()
        self._reporting_since = time.process_time()
        record = RunRecord(
            scenario_name=self.scenario.name,
            scenario_file=self.loaded.path,
            seed=self.scenario.seed,
            started=self._started_wall,
            duration_s=time.monotonic() - self._started_monotonic if self._started_monotonic else 0.0,
            members=self.members,
            expectations=self.scenario.expectations(),
            services=self._services.stats() if self._services else {},
            network={"relay": dict(self._network.relay.stats), **self._network.stats,
                     "faults": dict(self.faults.stats),
                     "power_on_lateness_ms": dict(self._pacer.lateness_ms)} if self._network else {},
            timeline=[vars(record) for record in self.timeline.log] if self.timeline else [],
            complete=complete,
            end_reason=reason,
            uploads=self.uploads.listing(),
            series=self.series,
            end_t=self.elapsed_s(),
            events_cap=EVENTS_PER_PHONE_IN_REPORT,
            stage_archive=self.stage_archive,
            simulated_from=self._simulated_from(),
            calendar_from=self.calendar_from(),
            notes=list(self.loaded.notes),
            timeline_entries=entry_facts(self.scenario.timeline),
        )
        table = self._report(record)
        self._write_outputs(table)  # run outputs
        self.exit_code = EXIT_PASSED if self.report["passed"] and complete else EXIT_FAILED
        if not final:
            self.stream.write("  labsim: the lab stays open for the dashboard; Ctrl-C to close it "
                              "(the report is written again then)\n")
            self.stream.flush()
            return
        self.stream.flush()
        self._survivors.remove()
        gc.unfreeze()  # what start() froze may be collected again (after the report: a collection walks every phone)
        self._scratch.remove()
        if not self.finished.called:
            self.finished.callback(self.exit_code)

    # --- run outputs ------------------------------------------------------------------

    def _write_outputs(self, table: str) -> None:
        """events.jsonl, junit.xml, report.html and the capture, after report.json.

        One that cannot be written is said on the stream; the others are still written."""
        report = self.report
        end_t = self.reactor.seconds() - self._epoch if self._epoch else 0.0
        writers = [
            ("events.jsonl", lambda: self._write_event_file(end_t)),
            ("junit.xml", lambda: write_junit(report, self.report_dir, system_out=table)),
            ("report.html", lambda: write_html_report(report, self.report_dir,
                                                      stage_latencies=stage_latencies(self.members, self.stage_archive),
                                                      facts=self._page_facts)),
        ]
        if self._capture is not None:
            # A lab the dashboard keeps open keeps capturing: flushed now, closed at the end.
            writers.append((f"capture {self.pcap_path}", self._capture.close if self.closed else self._capture.flush))
        written = []
        for name, write in writers:
            try:
                write()
                written.append(name)
            except Exception as exc:  # one broken output must not cost the others
                self.stream.write(f"  labsim: could not write {name}: {exc!r}\n")
        self.stream.write(f"  also written: {', '.join(written)}"
                          + (f" ({self._capture.packets} packets)" if self._capture is not None else "")
                          + f"; reports took {time.process_time() - self._reporting_since:.1f} s of CPU\n")

    def _write_event_file(self, end_t: float) -> None:
        """The rest of events.jsonl and its run line (the stream wrote the rest as the run
        went); a lab the dashboard keeps open gets a copy so far, and recording goes on."""
        finish = self._open_event_stream().close if self.closed else self._stream.snapshot
        finish(end_t=end_t, complete=self.report["complete"], end_reason=self.report["end_reason"],
               actions=self.timeline.log if self.timeline else ())

    # --- end run outputs ---------------------------------------------------------------

    @defer.inlineCallbacks
    def close(self):
        if self.releasing is not None:
            yield self.releasing
        if self._network is not None:
            yield self._network.close()
        if self._services is not None:
            yield self._services.stop()


class _LabControl(LabServicesControl):
    """What the timeline may do to a running lab: its services (LabServicesControl) and
    its phones."""

    def changes(self) -> int:
        """What the timeline compares between looks: with none, the phones' state changes."""
        live = self.live
        return self.run.state_changes if live is None else live.outbox.changes()

    def nothing_due_before(self) -> float | None:
        """When the next call is due on a simulated clock (none before it can change a
        phone's state), or None (a real reactor does not say)."""
        next_time = getattr(self.run.reactor, "next_time", None)
        return next_time() if next_time is not None else None

    def drivers(self) -> list[PhoneDriver]:
        return self.run._drivers

    live = None  # scale.fleet_metrics.RunMetrics: what the scenario's when: conditions read, kept as it moves

    def watch_conditions(self, entries) -> None:
        """Keep what the ``when:`` conditions of ``entries`` read as the phones change
        (called before any phone has run)."""
        from labsim.scale.fleet_metrics import RunMetrics

        wanted = {condition_metric(entry) for entry in entries if entry.when is not None}
        if wanted:
            self.live = RunMetrics(self.run, wanted)

    def metrics(self, wanted=None):
        live = self.live
        if live is not None and live.covers(wanted):
            metrics, per_phone = live.metrics(wanted)
        else:  # every metric (a report), or one no condition of the scenario read: counted afresh
            metrics, per_phone = phone_metrics(self.run.members, self.run.stage_archive, wanted)
            if wanted is None or any(name.startswith("service.") for name in wanted):
                metrics.update(self.run.series.metrics(self.run.elapsed_s()))
        return metrics, per_phone, len(self.run.members)

    def timeline_changed(self) -> None:
        self.run._on_timeline_action()

"""``labsim run --clock virtual``: the same run (phones, timeline, faults, expectations,
report) over the in-memory lab, on labsim's heap clock, as fast as the CPU goes.

The loop here takes the reactor's place: it runs the clock from one due call to the
next until the run has ended. The time limit stays wall-clock (checked every few
thousand events), progress is printed every few wall seconds with the simulated time,
and Ctrl-C or SIGTERM end the run with its report written, as with sockets.
"""

from __future__ import annotations

import re
import signal
import sys
import time

from labsim.phones.local_time import CALENDAR_ORIGIN_S
from labsim.run import EXIT_BAD_INPUT, EXIT_FAILED, ScenarioRun
from labsim.scenario.durations import clock_text
from labsim.virtual.clock import HeapClock
from labsim.scenario.virtual_time import virtual_time_problems
from labsim.virtual.lab import VirtualNetwork, VirtualServices

# Where a virtual run's clock starts unless the scenario's clock_starts says otherwise:
# 2026-01-04 00:00:00 UTC, a Sunday, the origin of the phones' calendar (local_time).
VIRTUAL_EPOCH = float(CALENDAR_ORIGIN_S)
CHECK_EVERY = 4096  # events between looks at the wall clock
PROGRESS_EVERY_S = 5.0  # wall seconds between progress lines
# A progress line, "[6d 17:32:49] 500 phones: dhcp 500  | 5s wall": the simulated time it
# was written at (the parent of --workers shows each shard's from its log).
PROGRESS_SIMULATED = re.compile(r"^\[(\d+d \d\d:\d\d:\d\d)\] .*\| \d+s wall$", re.MULTILINE)


class VirtualScenarioRun(ScenarioRun):
    """A ScenarioRun whose services and network are in memory and whose clock is simulated."""

    EVENTS_FLUSH_S = 3600.0  # simulated seconds between writes of events.jsonl (a week does not fit in memory)
    ARCHIVE_EVERY = 1
    # A settled fleet's run ends at that instant, where --workers shards agree the whole
    # fleet settled (scale/fleet_conditions.py); then, its phones stopped, what they sent
    # last still reaches the services (_deliver_last_packets), at most this long after.
    LAST_PACKETS_S = 0.0
    LAST_PACKETS_WITHIN_S = 0.05  # as long as a settled run on sockets waits (ScenarioRun.LAST_PACKETS_S)

    services_class = VirtualServices  # a shard's hands out its part of the DHCP pool (scale/virtual_shards.py)

    def _start_services(self):
        root = self._provisioning_root(self._whole_fleet())
        self._services = self.services_class(self.reactor, self.scenario.services, root, faults=self.faults,
                                             upload_folders=self.uploads, cert_dir=self.report_dir)
        return self._services.start()

    def _whole_fleet(self):
        """The phones per-phone files are made for (a shard makes them for every phone)."""
        return self.members

    def _start_network(self) -> str:
        self._network = VirtualNetwork(self.reactor, self._services, faults=self.faults,
                                       relay_address=self.relay_address)
        return f"DHCP via an in-memory relay {self.relay_address}"

    def _deliver_last_packets(self) -> None:
        """What is still on its way when the phones settle (a TFTP transfer's final ACK,
        in its 1 ms hop after the phone has its file) reaches its server, so the counters
        say every transfer ended, as on sockets. The phones' timers are cancelled by now:
        only the network and the services act. The clock stops at the last thing that
        happened (the run ends there, in every --workers shard alike: each delivers its own
        phones' packets, and the parent's end is the latest shard's)."""
        clock = self.reactor
        limit = clock.seconds() + self.LAST_PACKETS_WITHIN_S
        while (due := clock.next_time()) is not None and due <= limit and not clock.only_background():
            clock.run_until(due)

    def _start_watch(self, lead: float) -> None:
        """The time limit and progress are wall-clock: the loop in ``run_virtual`` keeps them."""

    def _simulated_from(self) -> float | None:
        return self._epoch

    def _on_timeline_action(self) -> None:
        self._services.files_changed()  # an action may have edited, replaced or deleted a file
        super()._on_timeline_action()


def on_the_calendar(seconds: float, start: float = VIRTUAL_EPOCH) -> str:
    """Where ``seconds`` after ``start`` falls on the virtual clock's calendar (UTC, the
    phones' clock unless a time zone moves theirs): ``Monday 2026-01-12 12:00 UTC``."""
    return time.strftime("%A %Y-%m-%d %H:%M UTC", time.gmtime(start + seconds))


def virtual_epoch(scenario) -> float:
    """Where the scenario's virtual clock starts."""
    return VIRTUAL_EPOCH if scenario.clock_starts is None else scenario.clock_starts


def virtual_time_line(span: float, wall: float, start: float = VIRTUAL_EPOCH) -> str:
    """The run's last line: how much it simulated, to where on the calendar, in what wall time."""
    return (f"  virtual time: {clock_text(span)} simulated (to {on_the_calendar(span, start)}) in {wall:.1f}s wall "
            f"({span / wall if wall > 0 else 0:,.0f}x real time)")


def virtual_run(loaded, run_class=None, **run_options):
    """(the run, its clock) for the scenario in virtual time, or None when it cannot run
    there (said on stderr, naming the key or the problem)."""
    problems = virtual_time_problems(loaded.scenario)
    if problems:  # --clock virtual on the command line (a file saying clock: virtual did not load)
        from labsim.scenario.loader import marks_of, virtual_time_refusals

        for problem in virtual_time_refusals(loaded.scenario, loaded.path, marks_of(loaded.path)):
            print(problem, file=sys.stderr)
        return None
    clock = HeapClock(virtual_epoch(loaded.scenario))
    try:
        return (run_class or VirtualScenarioRun)(clock, loaded, interactive=False, **run_options), clock
    except ValueError as exc:
        print(f"{loaded.path}: {exc}", file=sys.stderr)
        return None


def run_virtual(loaded, *, report_dir: str, state_dir: str | None = None, pcap_path: str | None = None,
                uploads_dir: str | None = None, stream=sys.stdout, run_class=None, **run_options) -> int:
    """One run in virtual time (``run_class``: VirtualScenarioRun unless given, with
    ``run_options``: a shard, labsim.scale.virtual_shards)."""
    made = virtual_run(loaded, run_class, report_dir=report_dir, stream=stream, state_dir=state_dir,
                       pcap_path=pcap_path, uploads_dir=uploads_dir, **run_options)
    if made is None:
        return EXIT_BAD_INPUT
    run, clock = made
    started = run.start()
    failures = []
    started.addErrback(failures.append)
    if failures:
        print(f"labsim: cannot start: {failures[0].getErrorMessage()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    wall_start = time.monotonic()
    try:
        drive(run, clock, stream)
    except KeyboardInterrupt:
        run.interrupt("interrupted (signal)")
    finally:
        signal.signal(signal.SIGTERM, previous)
    run.close()
    span, wall = clock.seconds() - run._epoch, time.monotonic() - wall_start
    stream.write(virtual_time_line(span, wall, run._epoch) + "\n")
    return getattr(run, "exit_code", EXIT_FAILED)


def drive(run: ScenarioRun, clock: HeapClock, stream) -> None:
    """Run the clock from one due call to the next until the run has ended."""
    wall_start = time.monotonic()
    deadline = wall_start + run.scenario.time_limit_s
    next_line = wall_start + PROGRESS_EVERY_S
    finished = run.finished
    # A --workers shard of a run without a duration meets the others before an instant
    # where the fleet may have settled (scale/fleet_conditions.py); True: it did instead.
    meet = getattr(run, "before_instant", None)
    events = 0
    while not finished.called:
        due = clock.next_time()
        if due is None or clock._live == clock._background:  # only_background(), inlined: once per event
            if meet is not None and meet(None):
                continue
            run._end("nothing left to happen (no timer, no message in flight)")
            return
        if meet is not None and meet(due):
            continue
        clock.run_until(due)
        events += 1
        if events % CHECK_EVERY == 0:
            wall = time.monotonic()
            if wall >= deadline:
                run._end(f"time limit of {run.scenario.time_limit_s:g}s (wall clock) reached", complete=False)
                return
            if wall >= next_line:
                next_line = wall + PROGRESS_EVERY_S
                stream.write(progress_line(run.counter, clock.seconds() - run._epoch, wall - wall_start) + "\n")
                stream.flush()


def progress_line(counter, simulated_s: float, wall_s: float) -> str:
    """``[6d 17:32:49] 500 phones: dhcp 500  | 5s wall`` (``PROGRESS_SIMULATED`` reads it)."""
    return f"{counter.line(simulated_s, stamp=clock_text(simulated_s))}  | {wall_s:.0f}s wall"


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt

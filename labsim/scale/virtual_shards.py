"""Virtual time on every core: ``labsim run FILE --clock virtual --workers N`` (and one
shard of it, ``--clock virtual --shard i/N``).

A run in virtual time is bound by the CPU (~190 µs of CPython a provisioning pass), so
its only way to go faster is more processes. Each of N shards is its own process with
its own simulated clock and its own copy of labsim's in-memory services; its phones are
the ones the real-clock workers would give it (``fleet.shard``: position ``p`` of each
fleet to shard ``p % N``). Nothing passes between the shards while they run (but the
metrics a pending ``when:`` reads, at each condition tick, and, in a run without a
duration, whether the whole fleet has settled): the parent starts them, merges
their events.jsonl as they write them (``observe.events_merge``) and then their shard
reports as ``labsim merge`` does (``observe.merge``, from the counts each shard kept:
``observe.merge_series``).

What keeps N processes one run:

- **DHCP leases stay unique across the fleet**: each shard's DHCP server hands out only
  its own contiguous part of ``services.dhcp.pool`` (``pool_part``: the pool cut in N
  runs in shard order, ``size // N`` addresses each and one more for each of the first
  ``size % N``, as the shard rule gives the first shards one phone more); reservations stay
  with the one phone they name, in whichever shard holds it. A pool too small for a
  shard's share of the phones, where the whole pool would have held them all, is refused.
- **The timeline at fixed times applies in every shard**: a service action on each
  shard's copy of the services, a file action on each shard's copy of the files, a phone
  action on the phones picked over the whole fleet exactly as one process picks them
  (same order, same random stream), each shard acting on those it holds.
- **``when:`` is judged on the whole fleet** at every condition tick, where the
  shards meet through the parent (``fleet_conditions``); a run without a duration ends
  where the whole fleet has settled.
- What cannot be split is refused naming its key (``virtual_shard_problems``).

A fault's random draws come from the shard's own stream (the scenario seed and the
shard), so which request a 5 % loss hits differs between N values; the rate does not.
"""

from __future__ import annotations

import ipaddress
import os
import random
import resource
import signal
import subprocess
import sys
import time
from dataclasses import replace

from labsim.faults import FaultSet, fault_from_spec
from labsim.fleet.shard import Shard, roster
from labsim.observe.merge import shard_record, write_shard_record
from labsim.observe.merge_series import archive_record, series_record
from labsim.run import EXIT_BAD_INPUT, EXIT_FAILED
from labsim.scale.shard_run import ShardOfTheFleet, _ShardControl
from labsim.virtual.lab import VirtualServices
from labsim.virtual.run import (PROGRESS_EVERY_S, PROGRESS_SIMULATED, VirtualScenarioRun, run_virtual,
                                virtual_epoch, virtual_time_line)

SHARD_LOG = "shard.log"


def pool_part(start: str, end: str, shard: Shard) -> tuple[str, str]:
    """The contiguous part of the pool ``start``..``end`` that shard ``i`` of ``N`` hands
    out: ``size // N`` addresses, one more for each of the first ``size % N`` shards (as the
    shard rule gives the first shards one phone more), in shard order."""
    first, last = int(ipaddress.IPv4Address(start)), int(ipaddress.IPv4Address(end))
    size = last - first + 1
    base, extra = divmod(size, shard.count)
    low = first + shard.index * base + min(shard.index, extra)
    high = low + base + (1 if shard.index < extra else 0) - 1
    if base == 0:
        raise ValueError(f"services.dhcp.pool: {size} address(es) cannot be split into {shard.count} parts")
    return str(ipaddress.IPv4Address(low)), str(ipaddress.IPv4Address(high))


def virtual_shard_problems(scenario, count: int, *, parent: bool = True) -> list[tuple[str, str]]:
    """(key, why) for each part of the scenario N virtual-time shards cannot keep.
    ``parent``: the shards have a ``--workers`` parent to judge ``when:`` on the whole
    fleet (``fleet_conditions``); a ``--shard`` run alone has none."""
    if count == 1:
        return []  # one shard is the whole fleet: a one-process run
    problems = []
    for number, entry in enumerate(scenario.timeline, 1):
        label = f"timeline entry {number}" + (f" ({entry.name})" if entry.name else "")
        if entry.when is not None and not parent:
            problems.append((f"{label}: when", f"'{entry.when}' is judged on the whole fleet, which "
                             "a shard run alone does not see; use --workers, 'at:', or run without --shard"))
        for action in entry.actions():
            if action.kind == "add_fault" and getattr(action.argument, "bandwidth_kbps", None):
                problems.append((f"{label}: add_fault.bandwidth_kbps", "a link's bandwidth is shared by the whole "
                                 "fleet; each shard would have all of it"))
    for index, fault in enumerate(scenario.faults):
        if fault.bandwidth_kbps:
            problems.append((f"faults[{index}].bandwidth_kbps", "a link's bandwidth is shared by the whole fleet; "
                             "each shard would have all of it"))
    dhcp = scenario.services.dhcp
    if dhcp is not None:
        if dhcp.lease_file:
            problems.append(("services.dhcp.lease_file", "each shard's server holds its own part of the leases; "
                             "N processes cannot write one lease file"))
        problems += _pool_problems(scenario, dhcp, count)
    return problems


def _pool_problems(scenario, dhcp, count: int) -> list[tuple[str, str]]:
    """A pool whose parts cannot hold each shard's phones though the whole pool holds the fleet."""
    from labsim.scenario.sizing import pool_room, reserved_macs

    reserved = reserved_macs(dhcp)
    needing = [0] * count
    for entry in roster(scenario, count):
        if entry.phone.mac not in reserved:
            needing[entry.shard] += 1

    def room(start: str, end: str) -> int:
        return pool_room(dhcp, start, end)

    if room(dhcp.pool.start, dhcp.pool.end) < sum(needing):
        return []  # too small for one process too: the same shortage, not one the split makes
    for index in range(count):
        try:
            start, end = pool_part(dhcp.pool.start, dhcp.pool.end, Shard(index, count))
        except ValueError as exc:
            return [("services.dhcp.pool", str(exc))]
        if room(start, end) < needing[index]:
            return [("services.dhcp.pool", f"shard {index}/{count} hands out {start}..{end}, "
                     f"{room(start, end)} address(es) for its {needing[index]} phones: make the pool larger "
                     "or use fewer workers")]
    return []


class ShardServices(VirtualServices):
    """A shard's copy of the lab's services: its DHCP server hands out its part of the pool."""

    shard: Shard  # set on the class made for each shard (VirtualShardRun)

    def dhcp_config(self, spec):
        config = super().dhcp_config(spec)
        start, end = pool_part(config.pool_start, config.pool_end, self.shard)
        return replace(config, pool_start=start, pool_end=end)


class VirtualShardRun(ShardOfTheFleet, VirtualScenarioRun):
    """Shard ``i`` of ``N`` in virtual time: its phones, its own clock and services, the
    whole timeline; at the end ``shard.json`` with the counts the merge adds up."""

    def __init__(self, clock, loaded, *, shard: Shard, light_outputs: bool = False, **kw):
        self.shard = shard
        self.light_outputs = light_outputs  # a --workers shard: the parent writes junit and HTML
        self.services_class = type("ShardServices", (ShardServices,), {"shard": shard})
        super().__init__(clock, loaded, **kw)
        if shard.count > 1:  # each shard draws its faults from its own stream
            self.faults = FaultSet(random.Random(f"{self.scenario.seed}:faults:{shard}"))
            for index, spec in enumerate(self.scenario.faults):
                self.faults.add(fault_from_spec(spec, index))

    def _whole_fleet(self):
        # Per-phone files for every phone: a template's {index} counts every phone of its fleet.
        return roster(self.scenario, self.shard.count)

    def _make_timeline(self):
        from labsim.scale.fleet_conditions import FleetConditions, fleet_conditions_from_environment

        pipes = fleet_conditions_from_environment() if self.light_outputs else None
        if pipes is not None:  # the parent made them: a when: to judge, or no duration
            self.control = FleetConditions(self, *pipes)  # when: judged on the whole fleet
            if self.duration_s is None:  # the run ends where the whole fleet has settled
                self.before_instant = self.control.before_instant
        elif self.scenario.timeline:
            self.control = _ShardControl(self)  # phones picked over the whole fleet, acted on here
        if not self.scenario.timeline:
            return None
        return self._timeline(self.control)

    def _end_if_settled(self) -> None:
        # Without a duration, a --workers shard's phones settling is not the fleet's: it
        # asks the parent (scale/fleet_conditions.py), which knows where the others are.
        if getattr(self, "before_instant", None) is None or self.control.alone:
            return super()._end_if_settled()
        if not self.closed and self.unsettled == 0:
            self.control.settle_check()

    def end_if_own_settled(self) -> None:
        """Its own phones' view of the end (the parent is gone: the run is being torn down)."""
        super()._end_if_settled()

    def _write_outputs(self, table: str) -> None:
        end_t = self.reactor.seconds() - self._epoch if self._epoch else 0.0
        if self.light_outputs:
            self._write_event_file(end_t)
            if self._capture is not None:
                self._capture.close()
        else:
            super()._write_outputs(table)
        record = shard_record(shard=self.shard, scenario=self.scenario, scenario_file=self.loaded.path,
                              members=self.members, report=self.report, start_at=self._epoch, end_t=end_t,
                              series_bucket_s=self.series.bucket_s, notes=self.loaded.notes)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        record.update(pcap=os.path.abspath(self.pcap_path) if self.pcap_path else None,
                      clock="virtual", series=series_record(self.series, end_t),
                      stage_archive=archive_record(self.stage_archive),
                      process={"cpu_s": round(usage.ru_utime + usage.ru_stime, 3), "peak_rss_kib": usage.ru_maxrss})
        write_shard_record(record, self.report_dir)  # last: its presence says the shard finished


# --- the command line ------------------------------------------------------------------------


def one_process_instead(loaded, args, stream=sys.stdout) -> bool:
    """Whether ``--workers auto`` runs this scenario in one process (said on ``stream``):
    when its timeline has a ``when:``. Shards meet at every condition tick while one is
    pending (fleet_conditions), and that costs more than a second core gives, where one
    process keeps what its conditions read as its phones change: 10,000 phones' boot hour
    with a pending percentile took one process 11.7 s, two shards 16.4 s (and 2x the CPU).
    ``--workers N`` shards it all the same."""
    if args.workers != "auto" or args.shard is not None:
        return False
    if not any(entry.when is not None for entry in loaded.scenario.timeline):
        return False
    stream.write("labsim run: --workers auto: the timeline has a when: condition; judged across shards at every "
                 "condition tick it costs more than the cores give, so this run is one process "
                 "(--workers N shards it all the same)\n")
    return True


def run_virtual_sharded(loaded, args) -> int:
    """``--clock virtual`` with ``--workers N`` (the parent) or ``--shard i/N`` (one shard)."""
    from labsim.scale.cli_scale import workers_count

    if args.start_at is not None:
        print("labsim run: --start-at: a virtual-time shard's clock starts at the virtual epoch, not a wall "
              "instant; leave it out", file=sys.stderr)
        return EXIT_BAD_INPUT
    from labsim.scale.fleet_conditions import fleet_conditions_from_environment

    shard = Shard.parse(args.shard) if args.shard is not None else None
    count = shard.count if shard is not None else workers_count(args.workers)
    parent = shard is None or bool(args.virtual_worker and fleet_conditions_from_environment())
    problems = virtual_shard_problems(loaded.scenario, count, parent=parent)
    if problems:
        option = f"--shard {shard}" if shard is not None else f"--workers {args.workers}"
        for key, why in problems:
            print(f"{loaded.path}: {key}: not possible with {option} in virtual time: {why}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if shard is not None:
        return run_virtual(loaded, report_dir=args.report_dir, state_dir=args.state_dir, pcap_path=args.pcap,
                           uploads_dir=args.uploads, run_class=VirtualShardRun, shard=shard,
                           light_outputs=bool(args.virtual_worker))
    return VirtualWorkers(loaded, args, count).run()


class VirtualWorkers:
    """The parent: N shard processes, then one merged report."""

    def __init__(self, loaded, args, count: int, stream=sys.stdout):
        self.loaded, self.args, self.count, self.stream = loaded, args, count, stream
        self.shards = [Shard(index, count) for index in range(count)]
        self.dirs = [os.path.join(args.report_dir, "shards", shard.label) for shard in self.shards]
        self.processes: list[subprocess.Popen] = []
        self.events_merge = None  # observe.events_merge.EventsMerge: their events.jsonl merged as they write
        self.usage: list[dict] = []  # each shard's end_t and process, as the merge read them
        self.barrier = None  # fleet_barrier.ConditionsBarrier: when: and the end judged on the whole fleet
        self._signalled = False

    def command(self, shard: Shard, directory: str) -> list[str]:
        args = self.args
        command = [sys.executable, "-m", "labsim", "run", self.loaded.path, "--clock", "virtual",
                   "--shard", str(shard), "--report-dir", directory, "--virtual-worker"]
        if args.phones is not None:
            command += ["--phones", str(args.phones)]
        if args.duration is not None:
            command += ["--duration", args.duration]
        if args.clock_starts is not None:
            command += ["--clock-starts", args.clock_starts]
        if args.state_dir:
            command += ["--state-dir", args.state_dir]
        if args.uploads:
            command += ["--uploads", args.uploads]
        if args.pcap:
            from labsim.observe.pcap_merge import shard_capture_path

            command += ["--pcap", shard_capture_path(args.pcap, shard.label)]
        return command

    def run(self) -> int:
        from labsim.observe.events_index import INDEX_NAME
        from labsim.observe.events_merge import EventsMerge
        from labsim.observe.merge import MergeError, merge_report
        from labsim.observe.pcap_merge import PcapMergeError

        scenario = self.loaded.scenario
        phones = sum(fleet.total for fleet in scenario.fleets)
        self.stream.write(f"labsim: {scenario.name}: {phones} phones in {self.count} virtual-time shards "
                          f"(a process, a clock and a copy of the lab's services each; logs in "
                          f"{os.path.join(self.args.report_dir, 'shards')}/*/{SHARD_LOG})\n")
        self.stream.flush()
        wall_start = time.monotonic()
        previous = {number: signal.signal(number, self._forward) for number in (signal.SIGINT, signal.SIGTERM)}
        # The shards meet through the parent to judge a when: on the whole fleet, and, in
        # a run without a duration, to end where the whole fleet has settled.
        no_duration = self.args.duration is None and scenario.duration is None
        if self.count > 1 and (no_duration or any(entry.when is not None for entry in scenario.timeline)):
            from labsim.scale.fleet_barrier import ConditionsBarrier

            self.barrier = ConditionsBarrier(self.count)
        try:
            for shard, directory in zip(self.shards, self.dirs):
                os.makedirs(directory, exist_ok=True)
                # Never merge an earlier run's files.
                for stale in ("shard.json", "events.jsonl", "events.jsonl.tmp", INDEX_NAME, INDEX_NAME + ".tmp"):
                    if os.path.exists(os.path.join(directory, stale)):
                        os.remove(os.path.join(directory, stale))
                with open(os.path.join(directory, SHARD_LOG), "w", encoding="utf-8") as log:
                    # Its own session: a terminal's Ctrl-C reaches the parent only, which
                    # passes on one SIGTERM (a second could cut a shard's report short).
                    environment, fds = self.barrier.environment(shard.index) if self.barrier else ({}, ())
                    self.processes.append(subprocess.Popen(self.command(shard, directory), stdout=log,
                                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                           start_new_session=True, pass_fds=fds,
                                                           env={**os.environ, **environment}))
            if self.barrier is not None:
                self.barrier.started()
            self.events_merge = EventsMerge(self.dirs, self.args.report_dir, writing=[
                (lambda process=process: process.poll() is None) for process in self.processes])
            self._wait_all(wall_start)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            for process in self.processes:  # only if the parent itself failed
                if process.poll() is None:
                    process.kill()
                    process.wait()
            if self.barrier is not None:
                self.barrier.close()
        last_shard_ended, tail_cpu_from = time.monotonic(), time.process_time()
        for shard, directory, process in zip(self.shards, self.dirs, self.processes):
            if process.returncode not in (0, 1) or not os.path.exists(os.path.join(directory, "shard.json")):
                self.stream.write(f"labsim: shard {shard} ended with exit code {process.returncode}; the end of "
                                  f"its log:\n{_tail(os.path.join(directory, SHARD_LOG))}\n")
        try:
            code = merge_report(self.dirs, self.args.report_dir, self.stream, state_dir=self.args.state_dir,
                                pcap_path=self.args.pcap, events_merge=self.events_merge, usage=self.usage)
        except (MergeError, PcapMergeError, OSError) as exc:
            self.stream.write(f"labsim: no merged report: {exc}\n")
            return EXIT_FAILED
        finally:
            if self.events_merge is not None:
                self.events_merge.abandon()  # what is left of it, if the merge did not finish it
        now = time.monotonic()
        self.stream.write(self.usage_line(now - wall_start) + "\n")
        self.stream.write(f"  merge after the last shard ended: {now - last_shard_ended:.2f}s wall, "
                          f"{time.process_time() - tail_cpu_from:.2f}s CPU of the parent\n")
        if self.barrier is not None:
            ends = self.barrier.meetings - self.barrier.ticks
            self.stream.write(f"  timeline conditions: the shards met at {self.barrier.ticks} condition ticks"
                              + (f" and {ends} times for the fleet's end" if ends else "") + "\n")
        self.stream.flush()
        return code

    def _wait_all(self, wall_start: float) -> None:
        """Until every shard has ended, merging their events.jsonl as far as they wrote
        them; every few wall seconds, where each shard is in simulated time (from the
        progress lines in its shard.log)."""
        next_line = wall_start + PROGRESS_EVERY_S
        while any(process.poll() is None for process in self.processes):
            try:
                if self.barrier is not None and self.barrier.in_step(time.monotonic()):
                    self.barrier.serve(0.2)  # the shards meet every tick: answer them at once, merge later
                elif self.barrier is not None:
                    self.barrier.serve(0 if self._merge_some() else 0.2)
                elif not self._merge_some():
                    self.processes[[p.poll() for p in self.processes].index(None)].wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            except ValueError as exc:  # the shards disagree where they are (a bug): each goes on alone
                self.stream.write(f"labsim: the shards' meetings stopped ({exc}); each judges its own phones\n")
                self.barrier.close()  # every shard reads the end of its pipe: its own view from there
                self.barrier = None
            except KeyboardInterrupt:  # a handler raised it: go on waiting for the shards' reports
                continue
            now = time.monotonic()
            if now >= next_line and any(process.poll() is None for process in self.processes):
                next_line = now + PROGRESS_EVERY_S
                where = [f"{shard} {_simulated_so_far(os.path.join(directory, SHARD_LOG), process)}"
                         for shard, directory, process in zip(self.shards, self.dirs, self.processes)]
                self.stream.write(f"  [{now - wall_start:.0f}s wall] simulated time per shard: {', '.join(where)}\n")
                self.stream.flush()

    def _merge_some(self) -> bool:
        """A part of the shards' events.jsonl merged (what is final so far); False when
        there is nothing to merge now. A file the merge cannot read is left to the merge
        at the end, which names it."""
        from labsim.observe.events_merge import EventsMergeError

        if self.events_merge is None:
            return False
        try:
            return self.events_merge.step()
        except (EventsMergeError, OSError):
            self.events_merge.abandon()
            self.events_merge = None
            return False

    def _forward(self, signum, frame) -> None:
        """Ctrl-C or SIGTERM: every shard ends its run and writes its report; then the merge."""
        if self._signalled:
            return
        self._signalled = True
        self.stream.write("\nlabsim: interrupted: the shards write their reports, then the merge\n")
        self.stream.flush()
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def usage_line(self, wall: float) -> str:
        """Simulated time, wall time, and what the processes cost (each shard measures itself)."""
        span = max((record["end_t"] for record in self.usage), default=0.0)
        shards_cpu = [record["process"].get("cpu_s", 0.0) for record in self.usage]
        rss = [record["process"].get("peak_rss_kib", 0) / 1024 for record in self.usage]
        own = resource.getrusage(resource.RUSAGE_SELF)
        parent_cpu = own.ru_utime + own.ru_stime  # on two cores, what the parent takes the shards lack
        parent = own.ru_maxrss / 1024
        line = virtual_time_line(span, wall, virtual_epoch(self.loaded.scenario))
        return (f"{line} by {self.count} shards; CPU of all processes "
                f"{sum(shards_cpu) + parent_cpu:.1f}s (shards {', '.join(f'{cpu:.1f}' for cpu in shards_cpu)}s, "
                f"parent {parent_cpu:.1f}s); peak RSS: shards {', '.join(f'{mib:.0f}' for mib in rss)} MiB, parent "
                f"{parent:.0f} MiB (sum {sum(rss) + parent:.0f} MiB)")


def _simulated_so_far(path: str, process: subprocess.Popen) -> str:
    """The simulated time of a shard's last progress line ("[1d 02:00:00] 250 phones: … | 12s wall")."""
    if process.poll() is not None:
        return "done"
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - 2000))
            tail = handle.read().decode("utf-8", "replace")
    except OSError:
        return "starting"
    found = PROGRESS_SIMULATED.findall(tail)
    return found[-1] if found else "starting"


def _tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:]).rstrip()
    except OSError:
        return "(no log)"

"""The command line of scale-out: ``run --workers``, ``run --shard --start-at``, ``merge``."""

from __future__ import annotations

import argparse
import json
import os
import sys

from labsim.fleet.shard import BadShard, Shard, wall_time
from labsim.wire.numbers import is_number

EXIT_PASSED, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def add_run_options(run) -> None:
    run.add_argument("--workers", metavar="N|auto",
                     help="run the phones in N processes (shards, each with its own reactor, started on one "
                          "shared instant) while this process runs the scenario's services, and merge one report; "
                          "with --clock virtual each shard has its own simulated clock and copy of the services "
                          "(docs/virtual-time.md). 'auto' = the CPUs this process may use (os.sched_getaffinity). "
                          "Default: one process")
    run.add_argument("--shard", metavar="I/N",
                     help="run only shard I of N of the fleets (I from 0), against services running elsewhere "
                          "(labsim serve FILE, or real servers; with --clock virtual: its own copy in memory); "
                          "write shard.json for `labsim merge`")
    run.add_argument("--start-at", metavar="TIME",
                     help="with --shard: the shared start instant of all shards, ISO 8601 "
                          "(2026-12-05T00:10:00Z) or seconds since the epoch")
    run.add_argument("--control-fds", help=argparse.SUPPRESS)  # a --workers parent's AMP pipes
    run.add_argument("--worker-lab", help=argparse.SUPPRESS)  # the file services a worker serves too (JSON)
    run.add_argument("--virtual-worker", action="store_true", help=argparse.SUPPRESS)  # a virtual --workers shard


def add_merge_command(commands) -> None:
    merge = commands.add_parser("merge", help="merge the shard reports of one run into one report")
    merge.add_argument("shard_dirs", nargs="+", metavar="SHARD_DIR",
                       help="the --report-dir of each `labsim run --shard i/N` (all N of them)")
    merge.add_argument("--report-dir", default="labsim-report", help="where the merged report goes "
                                                                     "(default: ./labsim-report/)")
    merge.add_argument("--state-dir", help="save the whole fleet's flash here (as `run --state-dir` does)")
    merge.add_argument("--pcap", metavar="FILE", help="merge the shards' captures into FILE")
    merge.set_defaults(func=command_merge)


def scale_option_problem(args) -> str | None:
    """A bad combination of the scale-out options, said naming them; None when fine."""
    if args.workers is not None and args.shard is not None:
        return "--workers and --shard: give one (a worker is a shard the parent starts itself)"
    if getattr(args, "ui", None) and args.shard is not None:
        return ("--ui with --shard: a shard sees only its own phones and runs none of the lab's services; "
                "watch the whole run with --workers N --ui, or the services with labsim serve FILE --ui")
    if args.start_at is not None and args.shard is None:
        return "--start-at goes with --shard (--workers picks the shared start instant itself)"
    if args.workers is not None:
        try:
            workers_count(args.workers)
        except ValueError as exc:
            return str(exc)
    if args.shard is not None:
        try:
            Shard.parse(args.shard)
        except BadShard as exc:
            return f"--shard {exc}"
    if args.start_at is not None:
        try:
            wall_time(args.start_at)
        except ValueError as exc:
            return str(exc)
    return None


def workers_count(text: str) -> int:
    if text == "auto":
        return len(os.sched_getaffinity(0))
    if not is_number(text) or int(text) < 1:
        raise ValueError(f"--workers {text!r}: a number of processes (1 or more) or 'auto'")
    return int(text)


def make_run(reactor, loaded, args):
    """The run ``labsim run`` asked for: one process, or one shard. ValueError for a
    scenario a shard cannot keep (said naming the option)."""
    from labsim.run import ScenarioRun

    if args.shard is None:
        return ScenarioRun(reactor, loaded, report_dir=args.report_dir, state_dir=args.state_dir,
                           pcap_path=args.pcap, uploads_dir=args.uploads, ports_file=args.ports_file)
    from labsim.scale.shard_run import ShardRun

    coordinated = args.control_fds is not None
    stream = sys.stdout
    if coordinated:  # a worker's words go to its shard folder; the parent prints the run
        os.makedirs(args.report_dir, exist_ok=True)
        stream = open(os.path.join(args.report_dir, "shard.log"), "w", encoding="utf-8", buffering=1)
    return ShardRun(reactor, loaded, shard=Shard.parse(args.shard),
                    start_at=wall_time(args.start_at) if args.start_at else None,
                    coordinated=coordinated, light_outputs=coordinated, report_dir=args.report_dir,
                    lab=json.loads(args.worker_lab) if coordinated and args.worker_lab else None,
                    state_dir=args.state_dir, pcap_path=args.pcap, stream=stream, interactive=False)


def run_workers(reactor, loaded, args) -> int:
    """``labsim run FILE --workers N``: this process is the parent (labsim.scale.workers)."""
    from labsim.scale.workers import WorkersRun

    extra = ["--phones", str(args.phones)] if args.phones is not None else []
    if args.duration is not None:  # the workers' series span it, as one process's would
        extra += ["--duration", args.duration]
    if args.clock_starts is not None:
        extra += ["--clock-starts", args.clock_starts]
    try:
        run = WorkersRun(reactor, loaded, workers=workers_count(args.workers), report_dir=args.report_dir,
                         argv_extra=extra, state_dir=args.state_dir, pcap_path=args.pcap,
                         uploads_dir=args.uploads, ports_file=args.ports_file)
    except ValueError as exc:
        print(f"{args.scenario}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from labsim.cli import _dashboard, _stop_reactor
    from labsim.ui.shards import ShardedDashboard

    run.stay_open = bool(getattr(args, "ui", None))  # the dashboard keeps a settled lab open until Ctrl-C
    dashboard = _dashboard(args, reactor, kind=ShardedDashboard, run=run)
    if dashboard is False:
        return EXIT_BAD_INPUT
    outcome: dict[str, int] = {}

    def close_then_stop(_=None):
        closing = run.close()
        closing.addBoth(lambda _: _stop_reactor(reactor))

    def finished(code):
        outcome.setdefault("code", code)
        close_then_stop()

    def started_failed(failure):
        print(f"labsim: cannot start: {failure.getErrorMessage()}", file=sys.stderr)
        outcome["code"] = EXIT_BAD_INPUT
        close_then_stop()

    def go():
        run.finished.addCallback(finished)
        starting = run.start()
        if dashboard is not None:
            starting.addCallback(lambda _: dashboard.start())
        starting.addErrback(started_failed)

    def before_shutdown():
        # Ctrl-C and SIGTERM: every worker writes its shard, the parent merges, then it goes.
        if "code" in outcome:
            return None
        ending = run.interrupt("interrupted (signal)")
        ending.addCallback(lambda code: outcome.setdefault("code", code))
        ending.addBoth(lambda _: run.close())
        return ending

    reactor.callWhenRunning(go)
    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    reactor.run()
    return outcome.get("code", EXIT_FAILED)


def command_merge(args) -> int:
    from labsim.observe.merge import MergeError, merge_report
    from labsim.observe.pcap_merge import PcapMergeError

    try:
        return merge_report(args.shard_dirs, args.report_dir, sys.stdout, state_dir=args.state_dir,
                            pcap_path=args.pcap)
    except (MergeError, PcapMergeError) as exc:
        print(f"labsim merge: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT

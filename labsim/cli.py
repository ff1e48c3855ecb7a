"""labsim's command line: run, serve, validate, schema, yealink.

Exit codes: 0 every expectation held; 1 one failed or the run did not finish; 2 a bad
scenario file or bad usage (nothing was started).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import time

from labsim.observe.phone_history import KINDS as HISTORY_KINDS
from labsim.scenario.durations import outlasts_the_time_limit
from labsim.scenario.loader import ScenarioError, load_scenario, problem_at

EXIT_PASSED, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    return args.func(args)


SERVICES_SERVED = "DHCP, TFTP, HTTP(S), FTP, DNS and SIP PnP"

MAIN_EXAMPLES = """\
examples:
  labsim run scenarios/quickstart.yaml           500 Yealink phones against labsim's own services
  labsim validate scenarios/*.yaml               check scenario files (file:line:column for each problem)
  labsim serve scenarios/quickstart.yaml         only the services, with a live log, for real phones
  labsim story labsim-report 00:15:65:00:00:01   one phone's whole history from a run's events.jsonl

'labsim COMMAND --help' has more examples for each command.
"""

RUN_EXAMPLES = """\
examples:
  labsim run scenarios/quickstart.yaml
      500 Yealink phones against labsim's own DHCP, TFTP and HTTP; report in ./labsim-report/
  labsim run scenarios/boot-storm.yaml --phones 2000 --report-dir storm/ --pcap storm/lab.pcap
      the same scenario scaled to 2,000 phones, with a capture for Wireshark
  labsim run scenarios/external-load-test.yaml
      load-test your own servers (here Kea, tftpd-hpa and nginx on this host; see the
      file's comments): leave out services.dhcp and set network.dhcp_server/dhcp_port
  labsim run scenarios/week-of-resyncs.yaml
      a week of 2,000 phones in virtual time (clock: virtual): over in about a minute
  labsim run scenarios/lease-expiry.yaml --ui 8089 --speed 3600
      the same kind of run paced for a class, an hour a second, on the live dashboard
  labsim run my-lab.yaml --ports-file ports.json
      services on port 0 get a free port; ports.json says which ({"http": 41234, ...})
  sudo labsim run real-lab.yaml
      phones on a real segment against your own servers (README: Testing your own servers):
      the scenario says network: {interface: eth1, allow: [10.20.0.0/24]}; each phone
      broadcasts its own DHCP on eth1 (at most network.dhcp_rate, default 100/s), downloads
      from eth1's address (network.source: leased: from its own lease), sends nothing outside
      'allow', and every lease is released at the end, also on Ctrl-C (network.release: false
      keeps them); needs root, or CAP_NET_RAW + CAP_NET_ADMIN

exit codes: 0 every expectation held; 1 one failed or the run did not finish (the report
is still written); 2 a bad scenario file or bad usage (nothing was started)
"""

SERVE_EXAMPLES = """\
examples:
  labsim serve scenarios/quickstart.yaml
      DHCP on 127.0.0.1:6767, TFTP on :6969, HTTP on :8080, a line per exchange; Ctrl-C stops
  labsim serve scenarios/quickstart.yaml --show-offers
      log DHCP OFFERs too
  labsim serve my-lab.yaml --ports-file ports.json
      services on port 0 get a free port; ports.json says which
  curl http://127.0.0.1:8080/y000000000066.cfg ; tftp 127.0.0.1 6969 -c get y000000000066.cfg
      try it with real clients while it serves
"""

STORY_EXAMPLES = """\
examples:
  labsim story labsim-report 00:15:65:00:00:01
      every line of that phone in the run's events.jsonl, in words
  labsim story week/ 00:15:65:20:00:07 --from '2026-01-10 00:00' --to 2d6h --kind state,dhcp
      what it did over the weekend of a week-long virtual run: its states and DHCP only
  labsim story week/ 001565200007 --from 5d --json | jq .
      the raw lines from the sixth day on
"""

VALIDATE_EXAMPLES = """\
examples:
  labsim validate scenarios/quickstart.yaml
  labsim validate scenarios/*.yaml        every file; exit 2 if any has a problem
  labsim validate scenarios/firmware-upgrade.yaml --phones 2000
      what run --phones 2000 would keep as written (notes, not errors): the counts that
      grow with the fleet, and a DHCP pool too small for it
"""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("labsim")
    except PackageNotFoundError:  # run from a checkout without installing
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="labsim", description="Network-lab simulator for IP phone provisioning.",
                                     epilog=MAIN_EXAMPLES, formatter_class=raw)
    parser.add_argument("--version", action="version", version=f"labsim {_version()}")
    commands = parser.add_subparsers(metavar="COMMAND")

    run = commands.add_parser("run", help="run a scenario: services and a fleet of phones, then a report",
                              description="Start the scenario's services, boot its fleets, run its timeline, "
                                          "judge its expectations and write the report folder.",
                              epilog=RUN_EXAMPLES, formatter_class=raw)
    run.add_argument("scenario", help="scenario file (YAML)")
    run.add_argument("--report-dir", default="labsim-report", help="where report.json goes (default: ./labsim-report/)")
    run.add_argument("--phones", type=int, metavar="N",
                     help="scale the fleets to about N phones in all (keeping their mix): try a big scenario small")
    run.add_argument("--state-dir", help="load the phones' flash from here at the start and save it at the end, "
                                         "so the next run continues where this one stopped")
    run.add_argument("--pcap", metavar="FILE", help="also write the lab's traffic (DHCP, DNS, TFTP, HTTP, FTP, "
                                                   "SIP PnP) to FILE, a pcap capture with synthetic headers for "
                                                   "Wireshark/tshark")
    run.add_argument("--uploads", metavar="DIR", help=UPLOADS_HELP)
    run.add_argument("--ports-file", metavar="FILE",
                     help="write the port each service listens on to FILE (JSON), once they all listen")
    run.add_argument("--ui", metavar="[HOST:]PORT", help="serve the live dashboard (and /metrics) on PORT, loopback "
                                                       "unless HOST is given; the lab stays open until Ctrl-C")
    from labsim.scale.cli_scale import add_merge_command, add_run_options

    add_run_options(run)  # --workers, --shard, --start-at
    run.add_argument("--clock", choices=("real", "virtual"),
                     help="virtual: the lab in memory, time jumping from event to event (default: the scenario's "
                          "clock, else real)")
    run.add_argument("--duration", metavar="TIME", help="run this long whether or not the phones settle: "
                                                        "90s, 15m, 12h, 7d (simulated time with --clock virtual)")
    run.add_argument("--speed", type=float, metavar="X",
                     help="with --clock virtual and --ui: pace the lab to X simulated seconds a wall second, for "
                          "people watching (default 600: a day in 2 min 24 s)")
    run.add_argument("--clock-starts", metavar="WHEN", help="the date and time (UTC) the phones' clocks read when "
                                                              "the run begins, e.g. '2026-03-27 12:00' (default: "
                                                              "the scenario's clock_starts, else 2026-01-04 00:00)")
    run.set_defaults(func=command_run)
    add_merge_command(commands)

    validate = commands.add_parser("validate", help="check a scenario file and list every problem",
                                   epilog=VALIDATE_EXAMPLES, formatter_class=raw)
    validate.add_argument("scenario", nargs="+")
    validate.add_argument("--phones", type=int, metavar="N",
                          help="as run --phones N would scale the fleets: also note what that keeps as written")
    validate.set_defaults(func=command_validate)

    story = commands.add_parser("story", help="one phone's whole history from a run's events.jsonl",
                                description="One phone's lines of a run's events.jsonl (and the timeline's actions), "
                                            "in words, at their moments on the run's calendar: the simulated one of "
                                            "a virtual run, the wall clock (UTC) of a run on sockets. report.json "
                                            "keeps a long run's first and last 50 events of each phone; this reads "
                                            "them all.",
                                epilog=STORY_EXAMPLES, formatter_class=raw)
    story.add_argument("report_dir", metavar="REPORT_DIR", help="the run's --report-dir (default of run: labsim-report)")
    story.add_argument("mac", metavar="MAC", help="the phone: 00:15:65:00:00:01, 00-15-65-00-00-01 or 001565000001")
    story.add_argument("--from", dest="since", metavar="WHEN", help="from this moment: a time after the start "
                                                                    "(36h, 2d12h) or a date and time on the run's "
                                                                    "calendar (2026-01-10 06:00)")
    story.add_argument("--to", dest="until", metavar="WHEN", help="up to this moment (the same forms)")
    story.add_argument("--kind", metavar="KIND[,KIND]", help="only these lines: " + ", ".join(HISTORY_KINDS))
    story.add_argument("--json", action="store_true", help="the lines as events.jsonl has them (for jq)")
    story.set_defaults(func=command_story)

    schema = commands.add_parser("schema", help="print the scenario file's JSON Schema (for editors)")
    schema.add_argument("--markdown", action="store_true", help="print the reference document instead")
    schema.set_defaults(func=command_schema)

    serve = commands.add_parser("serve", help=f"run only a scenario's services ({SERVICES_SERVED}) with a live log",
                                description=f"Run the scenario's services ({SERVICES_SERVED}) until Ctrl-C, "
                                            "logging each exchange; its fleets are not booted.",
                                epilog=SERVE_EXAMPLES, formatter_class=raw)
    serve.add_argument("scenario", help="scenario file (YAML); its fleets are not booted")
    serve.add_argument("--report-dir", default="labsim-report",
                       help="where a relative services.dhcp.lease_file and generated TLS files go "
                       "(default: ./labsim-report/)")
    serve.add_argument("--show-offers", action="store_true", help="log DHCP OFFERs too, not only ACK/NAK")
    serve.add_argument("--uploads", metavar="DIR", help=UPLOADS_HELP)
    serve.add_argument("--ports-file", metavar="FILE",
                       help="write the port each service listens on to FILE (JSON), once they all listen")
    serve.add_argument("--ui", metavar="[HOST:]PORT", help="serve the services view and /metrics on PORT "
                                                         "(loopback unless HOST is given)")
    serve.set_defaults(func=command_serve)

    try:
        from labsim.yealink_tool import add_yealink_commands
    except ImportError:  # pragma: no cover - the tool module is part of the package
        pass
    else:
        add_yealink_commands(commands)
    return parser


UPLOADS_HELP = ("store uploads (HTTP PUT, TFTP WRQ, FTP STOR) in DIR (default: each service's upload_dir "
                "inside provisioning.directory, or inside --report-dir when the scenario has none)")


def _load_or_report(path: str, overrides: dict | None = None):
    try:
        return load_scenario(path, overrides)
    except ScenarioError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{path}: {len(exc.problems)} problem(s); nothing was started", file=sys.stderr)
        return None


def command_validate(args) -> int:
    from labsim.fleet.fleet import scale_scenario
    from labsim.scenario.sizing import noted

    if args.phones is not None and args.phones < 1:
        print("labsim: --phones must be at least 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    status = EXIT_PASSED
    for path in args.scenario:
        loaded = _load_or_report(path)
        if loaded is None:
            status = EXIT_BAD_INPUT
            continue
        fleets = loaded.scenario.fleets
        written = sum(f.total for f in fleets)
        scaled = ""
        if args.phones is not None:
            loaded = dataclasses.replace(loaded, scenario=scale_scenario(loaded.scenario, args.phones))
            if _report_scaled_problems(loaded):
                status = EXIT_BAD_INPUT
                continue
            scaled = f"; --phones {args.phones} runs {sum(f.total for f in loaded.scenario.fleets)}"
        print(f"{path}: valid ({len(fleets)} fleet(s), {written} phones{scaled})")
        notes = list(noted(loaded, written).notes)
        outlasting = outlasts_the_time_limit(loaded.scenario)
        if outlasting:  # not a problem of the file: --clock virtual runs it
            notes.append(str(problem_at(path, ("duration",), outlasting)))
        for note in notes:
            print(f"  note: {note}")
    return status


def command_story(args) -> int:
    from labsim.observe import phone_history as history

    try:
        mac = history.normal_mac(args.mac)
        path = history.events_path(args.report_dir)
        calendar = history.run_calendar(args.report_dir)
        window = history.Window(
            history.window_bound(args.since, calendar, "--from") if args.since else 0.0,
            history.window_bound(args.until, calendar, "--to") if args.until else float("inf"))
        if window.since > window.until:
            raise history.HistoryError(f"--from {args.since} is after --to {args.until}")
        kinds = set(HISTORY_KINDS)
        if args.kind:
            kinds = {kind.strip() for kind in args.kind.split(",") if kind.strip()}
            unknown = sorted(kinds - set(HISTORY_KINDS))
            if unknown:
                raise history.HistoryError(f"--kind {', '.join(unknown)}: not a kind of line; "
                                           f"kinds: {', '.join(HISTORY_KINDS)}")
    except history.HistoryError as exc:
        print(f"labsim story: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    own = shown = actions = 0
    try:
        for line in history.phone_lines(path, mac, actions="action" in kinds):
            own += line.get("mac") is not None
            if line.get("kind") in kinds and window.holds(float(line.get("t") or 0.0)):
                shown += line.get("mac") is not None
                actions += line.get("mac") is None  # a timeline action on the run, shown beside the phone's lines
                print(json.dumps(line) if args.json else history.history_text(line, calendar))
    except BrokenPipeError:  # | head
        sys.stderr.close()
        return EXIT_PASSED
    if not own:
        print(f"labsim story: no line of {mac} in {path}", file=sys.stderr)
        return EXIT_FAILED
    clock = "simulated" if calendar.virtual else "wall clock, UTC"
    print(f"{mac}: {shown:,} of its {own:,} line(s) in {path} shown" + (f", and {actions:,} timeline action(s)"
                                                                       if actions else "")
          + (f" (times: {clock})" if calendar.start else ""), file=sys.stderr)
    return EXIT_PASSED


def command_schema(args) -> int:
    from labsim.scenario.schema import Scenario

    if args.markdown:
        from labsim.scenario.reference import markdown

        print(markdown(), end="")
        return EXIT_PASSED
    print(json.dumps(Scenario.model_json_schema(), indent=2))
    return EXIT_PASSED


def _report_scaled_problems(loaded) -> bool:
    """Print what --phones made impossible (scenario.sizing); True if anything."""
    from labsim.scenario.sizing import scaled_fleet_problems

    problems = scaled_fleet_problems(loaded)
    for problem in problems:
        print(problem, file=sys.stderr)
    return bool(problems)


def _with_notes(loaded, written_phones: int, *, quiet: bool = False, state_dir: str | None = None):
    """The scenario with what labsim has to say about its size (scenario.sizing) and
    what it takes from ``state_dir``, printed here before anything starts (``quiet``: a
    --workers worker, whose parent said it)."""
    from labsim.scenario.sizing import noted

    loaded = noted(loaded, written_phones)
    if state_dir:
        from labsim.fleet.fleet import fleet_devices
        from labsim.fleet.state_dir import state_note

        note = state_note(state_dir, fleet_devices(loaded.scenario))
        loaded = dataclasses.replace(loaded, notes=loaded.notes + (note,))
    if not quiet:
        for note in loaded.notes:
            print(f"labsim: note: {note}", file=sys.stderr)
    return loaded


def command_run(args) -> int:
    from labsim.scale.cli_scale import make_run, run_workers, scale_option_problem

    problem = scale_option_problem(args)
    if problem:
        print(f"labsim run: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    overrides = {}
    if args.clock_starts is not None:
        from labsim.scenario.calendar_start import parse_start

        try:
            parse_start(args.clock_starts)
        except ValueError as exc:
            print(f"labsim: --clock-starts: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        overrides["clock_starts"] = args.clock_starts  # validated with the file: a timeline's dates count from it
    loaded = _load_or_report(args.scenario, overrides)
    if loaded is None:
        return EXIT_BAD_INPUT
    written_phones = sum(fleet.total for fleet in loaded.scenario.fleets)
    if args.phones is not None:
        if args.phones < 1:
            print("labsim: --phones must be at least 1", file=sys.stderr)
            return EXIT_BAD_INPUT
        from labsim.fleet.fleet import scale_scenario

        loaded = dataclasses.replace(loaded, scenario=scale_scenario(loaded.scenario, args.phones))
        if _report_scaled_problems(loaded):
            return EXIT_BAD_INPUT
    if args.duration is not None or args.clock is not None:  # virtual time (issue 15)
        from labsim.scenario.durations import parse_duration

        try:
            duration = parse_duration(args.duration) if args.duration is not None else loaded.scenario.duration
        except ValueError as exc:
            print(f"labsim: --duration: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        update = {"duration": duration, "clock": args.clock or loaded.scenario.clock}
        loaded = dataclasses.replace(loaded, scenario=loaded.scenario.model_copy(update=update))
    outlasting = outlasts_the_time_limit(loaded.scenario)
    if outlasting:
        print(f"--duration: {outlasting}" if args.duration is not None
              else problem_at(loaded.path, ("duration",), outlasting), file=sys.stderr)
        return EXIT_BAD_INPUT
    from labsim.fleet.state_dir import StateDirError

    try:
        loaded = _with_notes(loaded, written_phones, quiet=args.control_fds is not None, state_dir=args.state_dir)
    except StateDirError as exc:  # a --state-dir file that is not one
        print(f"labsim: --state-dir: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if getattr(args, "speed", None) is not None and not (loaded.scenario.clock == "virtual"
                                                          and getattr(args, "ui", None)):
        print("labsim run: --speed paces a virtual run for its dashboard: give it with --clock virtual and --ui",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if loaded.scenario.clock == "virtual":
        if args.ports_file:
            print("labsim run: --ports-file with --clock virtual: nothing listens on a port in memory",
                  file=sys.stderr)
            return EXIT_BAD_INPUT
        if getattr(args, "ui", None):
            if args.workers is not None or args.shard is not None:
                print("labsim run: --ui with --clock virtual runs one process (a paced lab to watch): "
                      "leave out --workers and --shard", file=sys.stderr)
                return EXIT_BAD_INPUT
            return _run_virtual_paced(loaded, args)
        if args.workers is not None or args.shard is not None:  # shards in virtual time (issue 15)
            from labsim.scale.virtual_shards import one_process_instead, run_virtual_sharded

            if not one_process_instead(loaded, args):
                return run_virtual_sharded(loaded, args)
        from labsim.virtual.run import run_virtual

        return run_virtual(loaded, report_dir=args.report_dir, state_dir=args.state_dir, pcap_path=args.pcap,
                           uploads_dir=args.uploads)
    _raise_open_file_limit()
    from twisted.internet import epollreactor

    epollreactor.install()
    _log_problems_to_stderr()
    from twisted.internet import reactor

    if args.workers is not None:
        return run_workers(reactor, loaded, args)
    try:
        run = make_run(reactor, loaded, args)  # one process, or one shard (--shard)
    except ValueError as exc:
        print(f"{args.scenario}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.control_fds:  # a worker of a --workers parent
        from labsim.scale.worker import serve_worker

        return serve_worker(reactor, run, args.control_fds)
    run.stay_open = bool(args.ui)  # the dashboard keeps a settled lab open until Ctrl-C
    dashboard = _dashboard(args, reactor, run=run)
    if dashboard is False:
        return EXIT_BAD_INPUT
    outcome: dict[str, int] = {}

    def started_failed(failure):
        print(f"labsim: cannot start: {failure.getErrorMessage()}", file=sys.stderr)
        outcome["code"] = EXIT_BAD_INPUT
        reactor.stop()

    def finished(code):
        outcome.setdefault("code", code)
        closing = run.close()
        closing.addBoth(lambda _: _stop_reactor(reactor))

    def go():
        run.finished.addCallback(finished)
        starting = run.start()
        if dashboard is not None:
            starting.addCallback(lambda _: dashboard.start())
        starting.addErrback(started_failed)

    def before_shutdown():
        # Ctrl-C and SIGTERM stop the reactor: write the report before it goes.
        if not run.closed and "code" not in outcome:
            outcome["code"] = run.interrupt("interrupted (signal)")
        return run.releasing  # a real network's DHCPRELEASEs go out before the reactor stops

    reactor.callWhenRunning(go)
    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    reactor.run()
    return outcome.get("code", EXIT_FAILED)


def _run_virtual_paced(loaded, args) -> int:
    """``--clock virtual --ui``: the in-memory lab on its simulated clock, paced to
    ``--speed`` simulated seconds a wall second (``virtual.paced``), with the dashboard
    on the real reactor; the report when the run ends, the lab open until Ctrl-C."""
    speed = args.speed
    if speed is not None and not (0 < speed < float("inf")):
        print(f"labsim run: --speed {speed:g}: simulated seconds a wall second, more than 0", file=sys.stderr)
        return EXIT_BAD_INPUT
    from twisted.internet import epollreactor

    epollreactor.install()  # the page's reactor (before anything imports the default one)
    _log_problems_to_stderr()
    from twisted.internet import reactor

    from labsim.ui.paced import PacedDashboard
    from labsim.virtual.paced import DEFAULT_SPEED, Pacer
    from labsim.virtual.run import virtual_run, virtual_time_line

    made = virtual_run(loaded, report_dir=args.report_dir, state_dir=args.state_dir, pcap_path=args.pcap,
                       uploads_dir=args.uploads, stay_open=True)
    if made is None:
        return EXIT_BAD_INPUT
    run, clock = made
    dashboard = _dashboard(args, reactor, kind=PacedDashboard, run=run, clock=clock)
    if dashboard is False:
        return EXIT_BAD_INPUT
    speed = speed or DEFAULT_SPEED
    pacer = Pacer(reactor, clock, run, speed, sys.stdout)
    outcome: dict[str, int] = {}
    wall_start = time.monotonic()

    def started_failed(failure):
        print(f"labsim: cannot start: {failure.getErrorMessage()}", file=sys.stderr)
        outcome["code"] = EXIT_BAD_INPUT
        reactor.stop()

    def started(_):
        print(f"labsim: virtual time paced at {speed:g} simulated seconds a wall second (--speed)", flush=True)
        dashboard.start()
        pacer.start()

    def finished(code):
        outcome.setdefault("code", code)
        pacer.stop()
        closing = run.close()
        closing.addBoth(lambda _: _stop_reactor(reactor))

    def go():
        run.finished.addCallback(finished)
        starting = run.start()
        starting.addCallbacks(started, started_failed)

    def before_shutdown():
        pacer.stop()
        if not run.closed and "code" not in outcome:
            outcome["code"] = run.interrupt("interrupted (signal)")

    reactor.callWhenRunning(go)
    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    reactor.run()
    if run._epoch:
        sys.stdout.write(virtual_time_line(clock.seconds() - run._epoch, time.monotonic() - wall_start, run._epoch)
                         + "\n")
    return outcome.get("code", EXIT_FAILED)


def command_serve(args) -> int:
    """Serve until Ctrl-C / SIGTERM, logging each exchange; then print the counters."""
    loaded = _load_or_report(args.scenario)
    if loaded is None:
        return EXIT_BAD_INPUT
    if loaded.scenario.clock == "virtual":
        print(f"{args.scenario}: clock: virtual: labsim serve answers real clients on real sockets, in real time "
              "(run the scenario with 'labsim run' instead)", file=sys.stderr)
        return EXIT_BAD_INPUT
    spec = loaded.scenario.services
    if all(getattr(spec, name, None) is None for name in ("dhcp", "tftp", "http", "ftp", "dns", "pnp")):
        print(f"{args.scenario}: no services to serve (add services.dhcp, .tftp, .http, .ftp, .dns or .pnp)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    _raise_open_file_limit()
    from twisted.internet import epollreactor

    epollreactor.install()
    _log_problems_to_stderr()
    from twisted.internet import reactor

    from labsim.fleet.fleet import build_fleets
    from labsim.observe.live_log import LiveLog, format_counters
    from labsim.run import UploadFolders, materialize_provisioning
    from labsim.scratch import ScratchFolder
    from labsim.services.lab import LabServices

    from labsim.services.on_interface import services_on_interface

    try:  # services.dhcp.interface: the other services listen on its address too
        spec, _on_link = services_on_interface(spec)
    except ValueError as exc:
        print(f"{args.scenario}: services.dhcp.interface: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    scratch = ScratchFolder(loaded, prefix="labsim-serve-")
    try:
        # The fleets only matter for per-phone files: the served tree is the one `run` serves.
        root = materialize_provisioning(loaded, scratch.make(), build_fleets(loaded.scenario))
        uploads = UploadFolders(loaded, args.report_dir, args.uploads)
        services = LabServices(reactor, spec, root, cert_dir=args.report_dir, upload_folders=uploads,
                               faults=_scenario_faults(loaded.scenario))
        try:
            services.start()
        except Exception as exc:  # a port in use, a corrupt lease file, no such interface ...
            print(f"labsim: cannot start: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        services.attach_faults()
        if args.ports_file:
            services.write_ports_file(args.ports_file)
        if _dashboard(args, reactor, services=services, scenario=loaded.scenario) is False:
            services.stop()
            return EXIT_BAD_INPUT
        live = LiveLog(sys.stdout, reactor, show_offers=args.show_offers)
        live.attach(services)
        where = services.describe()
        if spec.dhcp is not None and spec.dhcp.interface:
            where += f"; DHCP broadcast on {spec.dhcp.interface} port {spec.dhcp.interface_port}"
        if spec.pnp is not None and spec.pnp.interface:
            where += f"; PnP group 224.0.1.75 on {spec.pnp.interface} port {services.pnp.interface_port}"
        print(f"labsim serve: {loaded.scenario.name}: {where}; Ctrl-C to stop", flush=True)
        # Stop the services before the reactor goes: sockets closed, lease file written.
        reactor.addSystemEventTrigger("before", "shutdown", services.stop)
        reactor.run()
        live.detach()
        print(format_counters(services.stats()), flush=True)
        if uploads.used:
            print(f"uploads kept in {', '.join(sorted(uploads.used))}", flush=True)
        return EXIT_PASSED
    finally:
        scratch.remove()


def _scenario_faults(scenario):
    """The scenario's ``faults:``, for serve as for run (DHCP's sit on run's fleet relay,
    so serve has none of those)."""
    import random

    from labsim.faults import FaultSet, fault_from_spec

    faults = FaultSet(random.Random(f"{scenario.seed}:faults"))
    for index, spec in enumerate(scenario.faults):
        faults.add(fault_from_spec(spec, index))
    return faults
def _dashboard(args, reactor, kind=None, **lab):
    """--ui: the dashboard (labsim.ui; ``kind``: its class, Dashboard unless given),
    listening before the lab starts; None without --ui, False when it cannot listen (said
    on stderr)."""
    if not getattr(args, "ui", None):
        return None
    from labsim.ui.hub import Dashboard
    from labsim.ui.web import parse_bind, start_dashboard

    try:
        bind = parse_bind(args.ui)
        hub = (kind or Dashboard)(reactor, **lab)
        start_dashboard(reactor, bind, hub, sys.stdout)
    except Exception as exc:  # a bad address, a port in use
        print(f"labsim: cannot serve the dashboard on {args.ui}: {exc}", file=sys.stderr)
        return False
    if "run" not in lab:
        hub.start()
    return hub


def _stop_reactor(reactor) -> None:
    """Stop, unless a signal is already stopping it (Ctrl-C ends the run from shutdown)."""
    from twisted.internet.error import ReactorNotRunning

    try:
        reactor.stop()
    except ReactorNotRunning:
        pass


def _log_problems_to_stderr() -> None:
    """Twisted's warnings and errors (an exception in a protocol, an unhandled failure)
    go to stderr; its chatter below warning level does not."""
    from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate, globalLogBeginner,
                                textFileLogObserver)

    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False, discardBuffer=True)


def _raise_open_file_limit() -> None:
    """Thousands of phones mean thousands of sockets: use the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


if __name__ == "__main__":
    sys.exit(main())

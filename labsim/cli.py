"""labsim's command line: run, validate, schema, yealink.

Exit codes: 0 every expectation held; 1 one failed or the run did not finish; 2 a bad
scenario file or bad usage (nothing was started).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys

from labsim.scenario.loader import ScenarioError, load_scenario

EXIT_PASSED, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    return args.func(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labsim", description="Network-lab simulator for IP phone provisioning.")
    commands = parser.add_subparsers(metavar="COMMAND")

    run = commands.add_parser("run", help="run a scenario: services and a fleet of phones, then a report")
    run.add_argument("scenario", help="scenario file (YAML)")
    run.add_argument("--report-dir", default="labsim-report", help="where report.json goes (default: ./labsim-report/)")
    run.set_defaults(func=command_run)

    validate = commands.add_parser("validate", help="check a scenario file and list every problem")
    validate.add_argument("scenario", nargs="+")
    validate.set_defaults(func=command_validate)

    schema = commands.add_parser("schema", help="print the scenario file's JSON Schema (for editors)")
    schema.set_defaults(func=command_schema)

    try:
        from labsim.yealink_tool import add_yealink_commands
    except ImportError:  # pragma: no cover - the tool module is part of the package
        pass
    else:
        add_yealink_commands(commands)
    return parser


def _load_or_report(path: str):
    try:
        return load_scenario(path)
    except ScenarioError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{path}: {len(exc.problems)} problem(s); nothing was started", file=sys.stderr)
        return None


def command_validate(args) -> int:
    status = EXIT_PASSED
    for path in args.scenario:
        loaded = _load_or_report(path)
        if loaded is None:
            status = EXIT_BAD_INPUT
        else:
            fleets = loaded.scenario.fleets
            print(f"{path}: valid ({len(fleets)} fleet(s), {sum(f.total for f in fleets)} phones)")
    return status


def command_schema(args) -> int:
    from labsim.scenario.schema import Scenario

    print(json.dumps(Scenario.model_json_schema(), indent=2))
    return EXIT_PASSED


def command_run(args) -> int:
    loaded = _load_or_report(args.scenario)
    if loaded is None:
        return EXIT_BAD_INPUT
    _raise_open_file_limit()
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor

    from labsim.run import ScenarioRun

    try:
        run = ScenarioRun(reactor, loaded, report_dir=args.report_dir)
    except ValueError as exc:
        print(f"{args.scenario}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    outcome: dict[str, int] = {}

    def started_failed(failure):
        print(f"labsim: cannot start: {failure.getErrorMessage()}", file=sys.stderr)
        outcome["code"] = EXIT_BAD_INPUT
        reactor.stop()

    def finished(code):
        outcome.setdefault("code", code)
        closing = run.close()
        closing.addBoth(lambda _: reactor.stop())

    def go():
        run.finished.addCallback(finished)
        run.start().addErrback(started_failed)

    def before_shutdown():
        # Ctrl-C and SIGTERM stop the reactor: write the report before it goes.
        if run.report is None and "code" not in outcome:
            outcome["code"] = run.interrupt("interrupted (signal)")

    reactor.callWhenRunning(go)
    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    reactor.run()
    return outcome.get("code", EXIT_FAILED)


def _raise_open_file_limit() -> None:
    """Thousands of phones mean thousands of sockets: use the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


if __name__ == "__main__":
    sys.exit(main())

"""A lab exercise's check, run from the page: expectations judged on the lab as it is now.

The check is the scenario's ``lab.check`` when it has one, else its ``expect:`` list,
judged by the same code that judges them at the end of a run, so a student sees on the
page exactly the PASS/FAIL and observed values the report will have.
"""

from __future__ import annotations

from labsim.observe.report import RunRecord, judge


def expectations_of(scenario) -> list:
    lab = getattr(scenario, "lab", None)
    if lab is not None and lab.check:
        return lab.expectations()
    return scenario.expectations()


def flash_checks(scenario) -> list:
    """The check's expectations on the phones' flash, in order."""
    return [expectation for expectation in expectations_of(scenario) if hasattr(expectation, "flash")]


def check_reads(scenario, prefix: str | tuple[str, ...]) -> bool:
    """Whether the check reads a metric under ``prefix`` (``service.``, ``stage.``): a
    ``--workers`` parent then needs every worker's requests or latencies to judge it."""
    from labsim.scenario.expectations import parse_expectation

    return any(parse_expectation(e.check).metric.startswith(prefix)
               for e in expectations_of(scenario) if not hasattr(e, "flash"))


def judged_now(run, expectations: list) -> dict:
    """``{id(expectation): Verdict}`` of ``expectations`` on the run as it is now, by the
    code that judges them at the end: its phones (and the stage timings its archive took
    from them), its request series so far, on its calendar. ``run`` is one process's, or a
    ``--workers`` parent, which holds the same of the whole fleet (its mirror, and what
    the workers tell)."""
    record = RunRecord(scenario_name=run.scenario.name, scenario_file=run.loaded.path, seed=run.scenario.seed,
                       started="", duration_s=0.0, members=run.members, expectations=expectations,
                       series=run.series, stage_archive=run.stage_archive, end_t=run.elapsed_s(),
                       calendar_from=run.calendar_from())
    return {id(expectation): verdict for expectation, verdict in zip(expectations, judge(record))}


def check_results(expectations: list, verdicts: dict) -> list[dict]:
    """What the page shows of each expectation's verdict, in the check's order."""
    return [{"name": verdicts[id(e)].name, "check": e.check, "passed": verdicts[id(e)].passed,
             "observed": verdicts[id(e)].observed, "detail": verdicts[id(e)].detail} for e in expectations]


def run_check(run) -> list[dict]:
    if run is None:
        return []
    expectations = expectations_of(run.scenario)
    return check_results(expectations, judged_now(run, expectations))

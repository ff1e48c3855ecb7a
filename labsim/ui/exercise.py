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


def check_reads(scenario, prefix: str) -> bool:
    """Whether the check reads a metric under ``prefix`` (``service.``, ``stage.``): a
    ``--workers`` parent then needs every worker's requests or latencies to judge it."""
    from labsim.scenario.expectations import parse_expectation

    return any(parse_expectation(check).metric.startswith(prefix)
               for check in (getattr(e, "check", None) for e in expectations_of(scenario)) if check is not None)


def run_check(run) -> list[dict]:
    if run is None:
        return []
    expectations = expectations_of(run.scenario)
    # The run's time series so far, so that a service.* check is judged too.
    record = RunRecord(scenario_name=run.scenario.name, scenario_file=run.loaded.path, seed=run.scenario.seed,
                       started="", duration_s=0.0, members=run.members, expectations=expectations,
                       series=run.series, end_t=run.elapsed_s(), calendar_from=run.calendar_from())
    return [{"name": verdict.name, "check": expectation.check, "passed": verdict.passed,
             "observed": verdict.observed, "detail": verdict.detail}
            for expectation, verdict in zip(expectations, judge(record))]

"""``junit.xml``: the run's verdict in the format every CI system reads.

One ``<testsuite>`` for the scenario; one ``<testcase>`` per expectation (its name, the
scenario's name as ``classname``, a ``<failure>`` with the check, what was observed and
why when it did not hold), and one more testcase, ``run completed``, which fails when
the run was cut short (time limit, signal): an interrupted run's expectations were
judged on part of the data. The summary table goes in ``<system-out>``.

Attributes follow the common JUnit schema (Ant's, which Jenkins, GitLab, GitHub
reporters and Azure accept): ``tests``, ``failures``, ``errors``, ``skipped``, ``time``
and an ISO 8601 ``timestamp`` without a time zone (the schema's form; it is UTC).
"""

from __future__ import annotations

import json
import os
import re
import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

# XML 1.0 allows only these characters; a server's error text may contain others (NUL,
# ESC) and one would make the whole file unreadable.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

COMPLETENESS_CASE = "run completed"


def _text(value) -> str:
    return _NOT_XML.sub("\ufffd", str(value))


def _observed(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def junit_tree(report: dict, system_out: str = "") -> ET.Element:
    scenario = report["scenario"]["name"]
    duration = f"{report.get('duration_s', 0.0):.3f}"
    cases: list[ET.Element] = []
    failures = 0
    for expectation in report["expectations"]:
        case = ET.Element("testcase", name=_text(expectation["name"]), classname=_text(scenario), time="0")
        if not expectation["passed"]:
            failures += 1
            message = f"observed: {_observed(expectation['observed'])}"
            if expectation.get("detail"):
                message += f" ({expectation['detail']})"
            failure = ET.SubElement(case, "failure", message=_text(message), type="expectation")
            failure.text = _text(f"check: {expectation['check']}\n{message}\n")
        cases.append(case)
    run_case = ET.Element("testcase", name=COMPLETENESS_CASE, classname=_text(scenario), time=duration)
    if not report["complete"]:
        failures += 1
        failure = ET.SubElement(run_case, "failure", message=_text(f"incomplete: {report['end_reason']}"),
                                type="incomplete")
        failure.text = _text(f"The run did not finish ({report['end_reason']}); expectations were judged "
                             f"on the phones' state when it stopped.\n")
    cases.append(run_case)

    counts = {"tests": str(len(cases)), "failures": str(failures), "errors": "0", "skipped": "0", "time": duration}
    root = ET.Element("testsuites", name="labsim", **counts)
    # ``package`` and ``id`` are required of a testsuite inside <testsuites> by Ant's schema.
    suite = ET.SubElement(root, "testsuite", name=_text(scenario), package="labsim", id="0", **counts)
    # Required by the schema: when the fleet started, or (a run that never started) now.
    started = report.get("started") or datetime.now(timezone.utc).isoformat(timespec="seconds")
    suite.set("timestamp", started.split("+")[0].removesuffix("Z"))
    suite.set("hostname", _text(socket.gethostname() or "localhost"))
    properties = ET.SubElement(suite, "properties")
    for name, value in (("scenario_file", report["scenario"].get("file")), ("seed", report["scenario"].get("seed")),
                        ("complete", str(report["complete"]).lower()), ("end_reason", report["end_reason"]),
                        ("phones", report["summary"]["phones"])):
        ET.SubElement(properties, "property", name=name, value=_text("" if value is None else value))
    simulated = report.get("simulated")
    if simulated:  # a virtual run: the suite's time is wall time; this is what it simulated
        for name, value in (("clock", "virtual"), ("simulated_s", simulated["duration_s"]),
                            ("simulated_from", simulated["from"]), ("simulated_to", simulated["to"])):
            ET.SubElement(properties, "property", name=name, value=_text(value))
    suite.extend(cases)
    out = ET.SubElement(suite, "system-out")
    out.text = _text(system_out)
    ET.SubElement(suite, "system-err").text = ""
    return root


def junit_xml(report: dict, system_out: str = "") -> bytes:
    root = junit_tree(report, system_out)
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_junit(report: dict, report_dir: str, system_out: str = "") -> str:
    os.makedirs(report_dir, exist_ok=True)
    path = os.path.join(report_dir, "junit.xml")
    temporary = path + ".tmp"
    with open(temporary, "wb") as handle:
        handle.write(junit_xml(report, system_out))
    os.replace(temporary, path)
    return path

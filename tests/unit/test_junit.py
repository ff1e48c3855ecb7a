"""junit.xml: one testcase per expectation plus the run's completeness, counts that add up,
and the structure CI systems' JUnit readers expect (Ant's schema)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from labsim.observe.junit import COMPLETENESS_CASE, junit_xml, write_junit


def make_report(expectations, *, complete=True, end_reason="all phones settled", name="lab storm"):
    return {
        "scenario": {"name": name, "file": "scenarios/storm.yaml", "seed": 7},
        "started": "2025-01-02T03:04:05+00:00",
        "duration_s": 12.5,
        "complete": complete,
        "end_reason": end_reason,
        "passed": all(e["passed"] for e in expectations),
        "expectations": expectations,
        "summary": {"phones": 20},
    }


def expectation(name, passed, observed=20, detail="", check=None):
    return {"name": name, "check": check or name, "passed": passed, "observed": observed, "detail": detail}


def parse(report, system_out=""):
    return ET.fromstring(junit_xml(report, system_out))


def check_ant_structure(root: ET.Element) -> None:
    """The rules of the common JUnit schema that CI readers rely on."""
    assert root.tag == "testsuites"
    for suite in root.findall("testsuite"):
        for attribute in ("name", "tests", "failures", "errors", "time", "timestamp", "hostname", "package", "id"):
            assert suite.get(attribute) is not None, attribute
        float(suite.get("time"))
        assert "+" not in suite.get("timestamp") and "T" in suite.get("timestamp")  # xs:dateTime, no zone
        children = [child.tag for child in suite]
        # properties?, testcase*, system-out, system-err: in that order.
        assert children[0] == "properties" and children[-2:] == ["system-out", "system-err"]
        assert set(children[1:-2]) <= {"testcase"}
        cases = suite.findall("testcase")
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == sum(1 for c in cases if c.find("failure") is not None)
        assert int(suite.get("errors")) == sum(1 for c in cases if c.find("error") is not None)
        for case in cases:
            assert case.get("name") and case.get("classname") == suite.get("name")
            float(case.get("time"))
            for failure in case.findall("failure"):
                assert failure.get("message") is not None and failure.get("type")
    assert int(root.get("tests")) == sum(int(s.get("tests")) for s in root.findall("testsuite"))
    assert int(root.get("failures")) == sum(int(s.get("failures")) for s in root.findall("testsuite"))


def test_one_testcase_per_expectation_and_one_for_completeness():
    report = make_report([expectation("phones.ready == 100%", True),
                          expectation("no reboots", False, {"min": 0, "max": 2}, "3 of 20 phones fail, e.g. aa",
                                      check="phone.reboots == 0")])
    root = parse(report, "summary table")
    check_ant_structure(root)
    suite = root.find("testsuite")
    assert suite.get("name") == "lab storm" and suite.get("tests") == "3" and suite.get("failures") == "1"
    assert suite.get("timestamp") == "2025-01-02T03:04:05" and suite.get("time") == "12.500"
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert list(cases) == ["phones.ready == 100%", "no reboots", COMPLETENESS_CASE]
    assert cases["phones.ready == 100%"].find("failure") is None
    failure = cases["no reboots"].find("failure")
    assert failure.get("type") == "expectation"
    assert failure.get("message") == 'observed: {"min": 0, "max": 2} (3 of 20 phones fail, e.g. aa)'
    assert "check: phone.reboots == 0" in failure.text
    assert cases[COMPLETENESS_CASE].find("failure") is None
    assert suite.find("system-out").text == "summary table"
    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert properties["seed"] == "7" and properties["complete"] == "true" and properties["phones"] == "20"


def test_an_interrupted_run_fails_its_completeness_case():
    root = parse(make_report([expectation("phones.ready == 100%", True)], complete=False,
                             end_reason="time limit of 60s reached"))
    check_ant_structure(root)
    suite = root.find("testsuite")
    assert suite.get("failures") == "1" and root.get("failures") == "1"
    failure = suite.find(f"testcase[@name='{COMPLETENESS_CASE}']/failure")
    assert failure.get("type") == "incomplete" and "time limit of 60s reached" in failure.get("message")


def test_a_run_with_no_expectations_still_has_its_completeness_case():
    root = parse(make_report([]))
    check_ant_structure(root)
    assert root.get("tests") == "1" and root.get("failures") == "0"


def test_text_that_xml_cannot_hold_is_replaced_not_fatal():
    nasty = "bad \x00 byte \x1b[31m and <tags> & \"quotes\" \ud800"
    root = parse(make_report([expectation(nasty, False, None, nasty)], name="scen<ario>"), system_out=nasty)
    check_ant_structure(root)
    case = root.find("testsuite/testcase")
    assert case.get("name").startswith("bad \ufffd byte \ufffd[31m and <tags> & \"quotes\"")
    assert root.find("testsuite").get("name") == "scen<ario>"


@given(st.lists(st.tuples(st.text(min_size=1, max_size=20), st.booleans()), max_size=8), st.booleans())
def test_counts_always_add_up(items, complete):
    report = make_report([expectation(name, passed) for name, passed in items], complete=complete)
    root = parse(report)
    check_ant_structure(root)
    assert int(root.get("failures")) == sum(1 for _, passed in items if not passed) + (0 if complete else 1)


def test_a_run_that_never_started_is_stamped_now_and_the_file_is_written_atomically(tmp_path):
    report = make_report([])
    report["started"] = ""
    path = write_junit(report, str(tmp_path))
    root = ET.parse(path).getroot()
    check_ant_structure(root)
    stamp = datetime.fromisoformat(root.find("testsuite").get("timestamp")).replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - stamp).total_seconds()) < 60
    assert open(path, "rb").read().startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    assert not (tmp_path / "junit.xml.tmp").exists()


def test_a_virtual_runs_suite_says_what_it_simulated_beside_its_wall_time():
    report = make_report([expectation("phones.ready == 100%", True)])
    plain = {p.get("name") for p in parse(report).iter("property")}
    assert "clock" not in plain and "simulated_s" not in plain
    report["simulated"] = {"from": "2026-01-04T00:00:00+00:00", "to": "2026-01-11T00:00:00+00:00", "duration_s": 604800.0}
    root = parse(report)
    check_ant_structure(root)
    properties = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert properties["clock"] == "virtual" and properties["simulated_s"] == "604800.0"
    assert properties["simulated_from"] == "2026-01-04T00:00:00+00:00"
    assert properties["simulated_to"] == "2026-01-11T00:00:00+00:00"
    assert root.get("time") == "12.500"  # the wall time, as CI systems expect of a suite

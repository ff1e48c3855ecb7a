"""What a lab's check reads, for a --workers parent that must ask its workers to tell it
(labsim.ui.exercise.check_reads): a flash check reads none of the metrics and is never
parsed as one."""

from __future__ import annotations

import os

import pytest

from labsim.scenario.loader import load_scenario, parse_scenario_text
from labsim.ui.exercise import check_reads, flash_checks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LAB = """\
name: check-reads
services:
  dhcp: {options: {66: "http://127.0.0.1:8080/"}}
  http: {}
fleets:
  - {vendor: yealink, models: {T46S: 2}, first_mac: "00:15:65:00:20:01"}
expect:
CHECKS"""


@pytest.mark.parametrize("lab", ["lab-missing-mac-file.yaml", "lab-md5-no-reboot.yaml",
                                 "lab-avaya-profile-fallback.yaml"])
def test_a_bundled_lab_with_flash_checks_reads_neither_requests_nor_latencies(lab):
    scenario = load_scenario(os.path.join(ROOT, "scenarios", lab)).scenario
    assert flash_checks(scenario), "the lab checks flash"
    assert not check_reads(scenario, "service.") and not check_reads(scenario, "stage.")


def test_a_check_after_a_flash_check_is_read():
    checks = ['  - {flash: {key: static.network.lldp.enable, equals: "1"}}', "  - stage.dhcp.p95 < 1",
              "  - service.http.requests > 0"]
    scenario = parse_scenario_text(LAB.replace("CHECKS", "\n".join(checks) + "\n"))
    assert check_reads(scenario, "service.") and check_reads(scenario, "stage.")
    assert not check_reads(scenario, "time_to_ready.")
    assert [e.flash.key for e in flash_checks(scenario)] == ["static.network.lldp.enable"]


def test_the_check_counts_the_timings_a_long_runs_archive_took_from_the_phones():
    """A long run moves its phones' older download timings to its stage archive; the page's
    check counts them, as the report at the end does."""
    from types import SimpleNamespace

    from labsim.observe.stage_archive import StageArchive
    from labsim.phones.phone import StageList
    from labsim.ui.exercise import judged_now

    scenario = parse_scenario_text(LAB.replace("CHECKS", "  - stage.dhcp.count == 5\n"))
    phone = SimpleNamespace(mac="00:15:65:00:20:01", model="T46S", state="ready", reboots=0, powered_on_at=0.0,
                            ready_at=1.0, stages=StageList())
    for second in range(5):
        phone.stages.add("dhcp", second, second + 0.25, "ok", "dhcp://127.0.0.1")
    archive = StageArchive()
    archive.take(phone, keep=2)  # three moved to the archive, two kept on the phone
    assert len(phone.stages) == 2
    run = SimpleNamespace(scenario=scenario, loaded=SimpleNamespace(path="lab.yaml"), members=[SimpleNamespace(
        phone=phone, fleet="desk")], series=None, stage_archive=archive, elapsed_s=lambda: 10.0,
        calendar_from=lambda: 0.0)
    [verdict] = judged_now(run, scenario.expectations()).values()
    assert (verdict.passed, verdict.observed) == (True, 5)

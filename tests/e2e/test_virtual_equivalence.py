"""Every bundled scenario that can run in virtual time ends there as it does on sockets:
the same per-phone final states, reboot counts, applied files and their MD5s, and the
same expectation verdicts. Times may differ (1 ms per hop in memory, real latencies on
loopback), and so may what depends on them: latencies, the per-second series, and how
many retransmissions a phone made."""

import glob
import json
import os
import subprocess
import sys

import pytest

from labsim.scenario.loader import load_scenario
from labsim.scenario.virtual_time import virtual_time_problems
from tests.relocate import relocated

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NEEDS_REAL_SERVERS = {"external-load-test.yaml"}
PHONES = 6


def comparable():
    names = []
    for path in sorted(glob.glob(os.path.join(ROOT, "scenarios", "*.yaml"))):
        name = os.path.basename(path)
        scenario = load_scenario(path).scenario
        if name in NEEDS_REAL_SERVERS or scenario.clock == "virtual" or scenario.duration:
            continue  # a week on sockets takes a week
        if not virtual_time_problems(scenario):
            names.append(name)
    return names


def start(path, report_dir, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "labsim", "run", str(path), "--report-dir", str(report_dir),
                             "--phones", str(PHONES), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def outcome(proc: subprocess.Popen, report_dir):
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode in (0, 1), output[-3000:]
    report = json.loads((report_dir / "report.json").read_text())
    phones = {p["mac"]: (p["state"], p["reboots"], p["files"]) for p in report["phones"]}
    verdicts = [(e["check"], e["passed"]) for e in report["expectations"]]
    return phones, verdicts, report["complete"]


def test_the_comparison_covers_the_library():
    names = comparable()
    assert {"quickstart.yaml", "md5-no-reboot.yaml", "tftp-outage.yaml", "packet-loss-20.yaml",
            "dns-outage.yaml"} <= set(names)  # dns-outage: labsim's DNS in memory, behind a fault


def test_virtual_time_ends_like_sockets(tmp_path):
    # All at once: the socket runs mostly wait on their scenarios' clocks (outages, timed
    # actions), each on its own fresh ports (tests/relocate.py).
    runs = {}
    try:
        for name in comparable():
            path, _ = relocated(os.path.join(ROOT, "scenarios", name), tmp_path / name / "scenario", None)
            runs[name] = (start(path, tmp_path / name / "sockets"),
                          start(path, tmp_path / name / "virtual", "--clock", "virtual"))
        for name, (on_sockets, in_memory) in runs.items():
            assert outcome(in_memory, tmp_path / name / "virtual") == outcome(on_sockets, tmp_path / name / "sockets"), name
    finally:
        for pair in runs.values():
            for proc in pair:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

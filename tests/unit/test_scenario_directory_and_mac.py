"""A scenario whose provisioning.directory is missing or is a file is refused by
validate, serve and run alike (file:line, exit 2, no traceback); a multicast first_mac
is refused at its line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from labsim.scenario.loader import ScenarioError, load_scenario, parse_scenario_text

SCENARIO = """\
name: t
services:
  dhcp: {{port: 16767}}
  tftp: {{port: 16969}}
provisioning:
  directory: {directory}
fleets:
  - {{vendor: yealink, model: T46S, count: 1, first_mac: "{mac}"}}
"""


@pytest.mark.parametrize("make, why", [(None, "does not exist"), ("file", "is a file, not a folder")])
@pytest.mark.parametrize("command", ["validate", "serve", "run"])
def test_a_directory_that_is_not_a_folder_is_refused_at_its_line(tmp_path, make, why, command):
    if make == "file":
        (tmp_path / "files").write_text("not a folder")
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(directory="files", mac="00:15:65:00:00:01"))
    proc = subprocess.run([sys.executable, "-m", "labsim", command, str(path), "--report-dir", str(tmp_path / "r")]
                          if command != "validate" else [sys.executable, "-m", "labsim", command, str(path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{path}:6:3: provisioning.directory: {tmp_path / 'files'} {why}" in proc.stderr, proc.stderr


def test_an_existing_folder_is_fine(tmp_path):
    (tmp_path / "files").mkdir()
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(directory="files", mac="00:15:65:00:00:01"))
    assert load_scenario(str(path)).scenario.provisioning.directory == "files"


@pytest.mark.parametrize("mac", ["01:00:5e:00:00:01", "33:33:00:00:00:01", "ff:ff:ff:ff:ff:ff"])
def test_a_multicast_first_mac_is_refused(mac):
    with pytest.raises(ScenarioError) as caught:
        parse_scenario_text(SCENARIO.format(directory="files", mac=mac), "m.yaml")
    [problem] = caught.value.problems
    assert problem.mark.line == 8 and problem.field == "fleets[0].first_mac"
    assert "multicast" in problem.message

"""Scenario loading is bounded: a "billion laughs" file, 100,000 nested '[' and an
oversized file are each refused at a line, exit 2, no traceback, in under 2 s and 200 MB
(measured on the `labsim validate` process itself); anchors and aliases within the
bounds still work."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from labsim.scenario import loader, yaml_marks
from labsim.scenario.loader import ScenarioError, load_scenario, parse_scenario_text

BILLION_LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip([None, "a", "b", "c", "d", "e", "f", "g", "h"], "abcdefghi")
)

# Runs `labsim validate FILE` as a child and prints its exit code, CPU time (user + system:
# what it costs, whatever else the machine is doing) and peak RSS: RUSAGE_CHILDREN of this
# fresh wrapper holds only that one child.
MEASURE = """\
import resource, subprocess, sys
proc = subprocess.run([sys.executable, "-m", "labsim", "validate", sys.argv[1]], capture_output=True, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stdout.write(f"{proc.returncode} {usage.ru_utime + usage.ru_stime:.3f} {usage.ru_maxrss}\\n")
sys.stdout.write(proc.stderr)
"""


def validate_measured(path) -> tuple[int, float, float, str]:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True,
                         timeout=60).stdout
    head, _, stderr = out.partition("\n")
    code, cpu_s, rss_kb = head.split()
    return int(code), float(cpu_s), int(rss_kb) / 1024, stderr


@pytest.mark.parametrize("text, line, words", [
    (BILLION_LAUGHS, None, "aliases expand too far"),
    ("[" * 100_000, 1, "nested too deeply"),
    ("".join("  " * level + "k:\n" for level in range(100)), 65, "nested too deeply"),
])
def test_hostile_yaml_is_refused_fast_small_and_located(tmp_path, text, line, words):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    code, cpu_s, rss_mib, stderr = validate_measured(path)
    assert code == 2, stderr
    assert "Traceback" not in stderr
    first = stderr.splitlines()[0]
    assert first.startswith(f"{path}:") and words in first, stderr
    if line is not None:
        assert first.startswith(f"{path}:{line}:"), first
    assert cpu_s < 2.0, cpu_s  # the bound, Python's start included; the billion laughs took 112 s, 7.9 GB
    assert rss_mib < 200, rss_mib


def test_alias_refusal_names_the_line_of_the_alias_that_passes_the_bound():
    with pytest.raises(ScenarioError) as caught:
        parse_scenario_text(BILLION_LAUGHS, "laughs.yaml")
    [problem] = caught.value.problems
    # a..e expand to 9**5 = 59,049 lists' worth; f (line 6) passes 200,000 values.
    assert problem.mark.line == 6 and "aliases expand too far" in problem.message


def test_alias_count_is_bounded(monkeypatch):
    monkeypatch.setattr(yaml_marks, "MAX_ALIASES", 5)
    text = "a: &x 1\nb: [" + ", ".join(["*x"] * 6) + "]\n"
    with pytest.raises(ScenarioError) as caught:
        parse_scenario_text(text, "many.yaml")
    assert "too many aliases (more than 5" in str(caught.value)
    assert caught.value.problems[0].mark.line == 2


def test_expanded_text_is_bounded(monkeypatch):
    monkeypatch.setattr(yaml_marks, "MAX_EXPANDED_CHARS", 1000)
    text = f"a: &x {'y' * 400}\nb: [*x, *x]\n"
    with pytest.raises(ScenarioError) as caught:
        parse_scenario_text(text, "long.yaml")
    assert "aliases expand too far" in str(caught.value) and caught.value.problems[0].mark.line == 2


def test_a_file_over_the_size_limit_is_refused_unparsed(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "MAX_SCENARIO_BYTES", 1024)
    path = tmp_path / "big.yaml"
    path.write_text("name: t\n# " + "x" * 2000 + "\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(str(path))
    assert "file too large (over" in str(caught.value) and str(path) in str(caught.value)


def test_the_documented_size_limit_is_4_mib():
    assert loader.MAX_SCENARIO_BYTES == 4 * 1024 * 1024


def test_anchors_and_aliases_within_the_bounds_still_load():
    text = textwrap.dedent("""\
        name: t
        services:
          dhcp: {}
        fleets:
          - &desk {name: a, vendor: yealink, model: T46S, count: 2, first_mac: "00:15:65:00:00:01",
                   boot: {pattern: storm, random_delay_s: 1}}
          - {name: b, vendor: yealink, model: T46S, count: 2, first_mac: "00:15:65:00:01:01",
             boot: *desk_boot}
        """).replace("boot: {pattern: storm, random_delay_s: 1}}", "boot: &desk_boot {pattern: storm, random_delay_s: 1}}")
    scenario = parse_scenario_text(text)
    assert [f.boot.pattern for f in scenario.fleets] == ["storm", "storm"]

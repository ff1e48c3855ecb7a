import os

from labsim.scenario.reference import markdown
from labsim.scenario.schema import Scenario

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "scenarios.md")


def test_docs_scenarios_md_is_the_current_reference():
    with open(DOC, encoding="utf-8") as handle:
        assert handle.read() == markdown(), "regenerate with: labsim schema --markdown > docs/scenarios.md"


def test_every_scenario_model_has_a_section():
    text = markdown()
    for name in Scenario.model_json_schema()["$defs"]:
        assert f"\n## {name}\n" in text

"""Which timeline entries never ran, and why, as the report says it (observe/report.py
entries_not_run; the entries named as the timeline names their actions)."""

from __future__ import annotations

from types import SimpleNamespace


def test_the_report_names_each_entry_that_never_ran_and_why():
    from labsim.observe.report import entries_not_run
    from labsim.scenario.timeline import entry_facts

    entries = [SimpleNamespace(name=None, at=30.0, when=None), SimpleNamespace(name="cut", at=None, when="phones.ready >= 50"),
               SimpleNamespace(name=None, at=None, when="phones.ready == 100%"), SimpleNamespace(name="late", at=7200.0, when=None)]
    facts = entry_facts(entries)
    assert [fact["entry"] for fact in facts] == ["at 30s", "cut", "when phones.ready == 100%", "late"]
    records = [{"t": 30.0, "entry": "at 30s", "action": "stop_service", "outcome": "stop http"},
               {"t": 31.5, "entry": "when phones.ready == 100%", "action": "power_cycle", "outcome": "power cycle: 2"},
               {"t": 40.0, "entry": "dashboard", "action": "power_cycle", "outcome": "power cycle: 1"}]
    assert entries_not_run(facts, records, 3600.0) == [
        {"entry": "cut", "why": "its condition 'phones.ready >= 50' never held"},
        {"entry": "late", "why": "the run ended at 0d 01:00:00, before its time, 0d 02:00:00"}]
    assert entries_not_run(facts, records + [{"t": 99.0, "entry": "cut", "action": "x", "outcome": "y"},
                                             {"t": 7200.0, "entry": "late", "action": "x", "outcome": "y"}], 7200.0) == []


def test_a_file_action_on_a_missing_file_names_it_as_written_and_what_it_may_mean(tmp_path):
    import pytest

    from labsim.timeline import existing_file

    (tmp_path / "y000000000066.cfg").write_text("#!version:1.0.0.1\n")
    (tmp_path / "y000000000065.cfg").write_text("#!version:1.0.0.1\n")
    assert existing_file(str(tmp_path / "y000000000066.cfg"), "y000000000066.cfg") == str(tmp_path / "y000000000066.cfg")
    with pytest.raises(ValueError) as missing:
        existing_file(str(tmp_path / "y00000000066.cfg"), "y00000000066.cfg")
    assert str(missing.value) == ("no file 'y00000000066.cfg' among the lab's provisioning files (did you mean "
                                  "'y000000000066.cfg', 'y000000000065.cfg'?)")
    assert str(tmp_path) not in str(missing.value)  # the lab's scratch folder says nothing to the user
    with pytest.raises(ValueError, match=r"^no file 'phonebook.xml' among the lab's provisioning files$"):
        existing_file(str(tmp_path / "phonebook.xml"), "phonebook.xml")

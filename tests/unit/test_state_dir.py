"""--state-dir (labsim/fleet/state_dir.py): the file keeps the flash of every phone that
ran with it, and a run says before it starts what it takes from the file."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from labsim.fleet.state_dir import StateDirError, load_flash, save_flash, state_note
from labsim.phones.flash import Flash


def member(mac: str, user: str):
    flash = Flash()
    flash.settings["account.1.user_name"] = user
    return SimpleNamespace(phone=SimpleNamespace(mac=mac, flash=flash))


MACS = [f"00:15:65:00:00:0{n}" for n in range(1, 6)]


def test_a_smaller_run_keeps_the_flash_of_the_phones_it_did_not_boot(tmp_path):
    save_flash(str(tmp_path), [member(mac, f"first {mac}") for mac in MACS])
    save_flash(str(tmp_path), [member(MACS[0], "second"), member("00:15:65:00:00:09", "new")])
    saved = load_flash(str(tmp_path))
    assert sorted(saved) == sorted(MACS + ["00:15:65:00:00:09"])
    assert saved[MACS[0]].settings["account.1.user_name"] == "second"  # this run's
    assert saved[MACS[4]].settings["account.1.user_name"] == f"first {MACS[4]}"  # kept as it was


def test_a_file_broken_since_the_start_is_replaced_by_the_runs_flash(tmp_path):
    (tmp_path / "flash.json").write_text("{half")
    save_flash(str(tmp_path), [member(MACS[0], "only")])
    assert list(json.loads((tmp_path / "flash.json").read_text())["phones"]) == [MACS[0]]


def test_what_a_run_takes_from_the_state_dir_is_said(tmp_path):
    path = tmp_path / "flash.json"
    assert state_note(str(tmp_path), MACS) == (
        f"{path}: no saved flash yet: every phone starts from the scenario's flash, and the fleet's is saved "
        "there at the end")
    save_flash(str(tmp_path), [member(mac, "x") for mac in MACS])
    assert state_note(str(tmp_path), MACS) == f"{path}: the saved flash of 5 of this run's 5 phones"
    assert state_note(str(tmp_path), MACS[:2] + ["00:15:65:00:00:0a"]) == (
        f"{path}: the saved flash of 2 of this run's 3 phones; 1 start from the scenario's flash; 3 other saved "
        "phone(s) are not in this run and keep their flash in the file")
    path.write_text('{"format": 7, "phones": {}}')
    with pytest.raises(StateDirError, match="format 7, expected 1"):
        state_note(str(tmp_path), MACS)

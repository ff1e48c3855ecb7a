"""--state-dir (labsim/fleet/state_dir.py): the file keeps the flash of every phone that
ran with it, and a run says before it starts what it takes from the file."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from labsim.fleet.fleet import build_fleets, fleet_devices, scale_scenario
from labsim.fleet.state_dir import StateDirError, load_flash, save_flash, state_note
from labsim.phones.flash import Flash
from labsim.scenario.loader import parse_scenario_text


def member(mac: str, user: str, model: str = "T46S", vendor: str = "yealink"):
    flash = Flash()
    flash.settings["account.1.user_name"] = user
    return SimpleNamespace(vendor=vendor, phone=SimpleNamespace(mac=mac, model=model, flash=flash))


MACS = [f"00:15:65:00:00:0{n}" for n in range(1, 6)]


def devices(macs, model="T46S"):
    return {mac: ("yealink", model) for mac in macs}


def test_a_smaller_run_keeps_the_flash_of_the_phones_it_did_not_boot(tmp_path):
    save_flash(str(tmp_path), [member(mac, f"first {mac}") for mac in MACS])
    save_flash(str(tmp_path), [member(MACS[0], "second"), member("00:15:65:00:00:09", "new")])
    saved = load_flash(str(tmp_path), devices(MACS + ["00:15:65:00:00:09"]))
    assert sorted(saved) == sorted(MACS + ["00:15:65:00:00:09"])
    assert saved[MACS[0]].settings["account.1.user_name"] == "second"  # this run's
    assert saved[MACS[4]].settings["account.1.user_name"] == f"first {MACS[4]}"  # kept as it was


def test_a_file_broken_since_the_start_is_replaced_by_the_runs_flash(tmp_path):
    (tmp_path / "flash.json").write_text("{half")
    save_flash(str(tmp_path), [member(MACS[0], "only")])
    assert list(json.loads((tmp_path / "flash.json").read_text())["phones"]) == [MACS[0]]


def test_what_a_run_takes_from_the_state_dir_is_said(tmp_path):
    path = tmp_path / "flash.json"
    assert state_note(str(tmp_path), devices(MACS)) == (
        f"{path}: no saved flash yet: every phone starts from the scenario's flash, and the fleet's is saved "
        "there at the end")
    save_flash(str(tmp_path), [member(mac, "x") for mac in MACS])
    assert state_note(str(tmp_path), devices(MACS)) == f"{path}: the saved flash of 5 of this run's 5 phones"
    assert state_note(str(tmp_path), devices(MACS[:2] + ["00:15:65:00:00:0a"])) == (
        f"{path}: the saved flash of 2 of this run's 3 phones; 1 start from the scenario's flash; 3 other saved "
        "phone(s) are not in this run and keep their flash in the file")
    path.write_text('{"format": 7, "phones": {}}')
    with pytest.raises(StateDirError, match="format 7, this labsim reads formats 1, 2"):
        state_note(str(tmp_path), devices(MACS))


MIXED = """\
name: mixed
services:
  dhcp: {port: 6767, subnet: 198.18.0.0/24, pool: {start: 198.18.0.10, end: 198.18.0.99}}
  http: {port: 8080}
fleets:
  - vendor: yealink
    models: {T46S: 5, T48S: 5}
    first_mac: "00:15:65:00:00:01"
"""


def test_saved_flash_goes_only_to_the_device_that_saved_it(tmp_path):
    """--phones 4 on {T46S: 5, T48S: 5} gives each model a block of 2 MACs, so its third
    MAC is a T48S where the full fleet's is a T46S: that phone's flash is not the full
    run's third phone's, and another vendor on the same MAC is another device too."""
    full = parse_scenario_text(MIXED, "mixed.yaml")
    scaled = scale_scenario(full, 4)
    small_run = build_fleets(scaled)
    for phone_member in small_run:
        phone_member.phone.flash.settings["saved.by"] = phone_member.phone.model
    save_flash(str(tmp_path), small_run)
    third = "00:15:65:00:00:03"
    assert fleet_devices(scaled)[third] == ("yealink", "T48S") and fleet_devices(full)[third] == ("yealink", "T46S")

    full_run = build_fleets(full, load_flash(str(tmp_path), fleet_devices(full)))
    started = {m.phone.mac: m.phone.flash.settings.get("saved.by") for m in full_run}
    assert started == {"00:15:65:00:00:01": "T46S", "00:15:65:00:00:02": "T46S", third: None,
                       "00:15:65:00:00:04": None, **{f"00:15:65:00:00:{n:02x}": None for n in range(5, 11)}}
    assert state_note(str(tmp_path), fleet_devices(full)) == (
        f"{tmp_path / 'flash.json'}: the saved flash of 2 of this run's 10 phones; 8 start from the scenario's "
        f"flash, 2 of them because the file's flash at their MAC is another device's (e.g. {third}: saved by a "
        "yealink T48S, a yealink T46S in this run)")

    polycom = {mac: ("polycom", "VVX450") for mac in fleet_devices(scaled)}
    assert load_flash(str(tmp_path), polycom) == {}
    save_flash(str(tmp_path), full_run)  # the full run saves its own devices over them
    assert load_flash(str(tmp_path), fleet_devices(full)).keys() == fleet_devices(full).keys()


def test_a_format_1_file_is_read_as_before_and_saved_with_the_devices(tmp_path):
    path = tmp_path / "flash.json"
    path.write_text(json.dumps({"format": 1, "phones": {MACS[0]: Flash(firmware="66.86.0.15").to_dict(),
                                                       MACS[1]: Flash(firmware="old").to_dict()}}))
    assert load_flash(str(tmp_path), devices(MACS))[MACS[0]].firmware == "66.86.0.15"
    save_flash(str(tmp_path), [member(MACS[1], "new", model="T48S")])
    data = json.loads(path.read_text())
    assert data["format"] == 2
    assert data["phones"][MACS[0]] == {"vendor": "", "model": "", "flash": Flash(firmware="66.86.0.15").to_dict()}
    assert data["phones"][MACS[1]]["model"] == "T48S"
    assert load_flash(str(tmp_path), devices(MACS))[MACS[0]].firmware == "66.86.0.15"  # still any device's
    assert MACS[1] not in load_flash(str(tmp_path), devices(MACS))  # now the T48S's

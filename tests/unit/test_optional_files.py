"""Files a phone only looks for (``Download.optional``): a deployment need not have them,
so the server's 404 is counted as ``optional_missing`` and is no error on the server's
line; a file the deployment is expected to have, missing, stays an error. Each vendor's
phone booted on a fake clock with an in-memory network."""

from __future__ import annotations

import pytest

from labsim.fleet.fleet import FleetMember
from labsim.observe.report import server_statistics
from labsim.phones import avaya, grandstream, polycom, yealink
from labsim.phones.events import OPTIONAL_MISSING, Put
from labsim.phones.flash import Flash
from labsim.wire import avaya_cfg, grandstream_cfg, polycom_cfg
from tests.phonelab import PhoneLab

HTTP = "http://127.0.0.1:8080"


def _outcomes(lab: PhoneLab) -> dict[str, str]:
    """The file name -> its download's status (the last, when it was asked for again;
    uploads left out)."""
    transfers = [timing for timing in lab.phone.stages if not timing.server.startswith("dhcp")]
    assert len(transfers) == len(lab.network.fetches)
    return {fetch.url.rsplit("/", 1)[1]: timing.status for fetch, timing in zip(lab.network.fetches, transfers)
            if not isinstance(fetch, Put)}


def _server_line(lab: PhoneLab) -> dict:
    return server_statistics([FleetMember("desk", "test", lab.phone, 0.0)])[HTTP]


def _errors(lab: PhoneLab) -> int:
    """Errors on every provisioning server's line."""
    lines = server_statistics([FleetMember("desk", "test", lab.phone, 0.0)])
    return sum(line["errors"] for server, line in lines.items() if not server.startswith("dhcp"))


def _yealink(files):
    return PhoneLab(yealink, model="T46S", mac="00:15:65:aa:00:01", options={66: f"{HTTP}/".encode()}, files=files)


YEALINK_COMMON = b"#!version:1.0.0.1\naccount.1.user_name = 1001\n"


def test_a_yealinks_boot_files_are_only_looked_for():
    lab = _yealink({"y000000000066.cfg": YEALINK_COMMON, "001565aa0001.cfg": b"#!version:1.0.0.1\n"})
    assert lab.boot().state == "ready"
    line = _server_line(lab)
    assert line["by_status"] == {OPTIONAL_MISSING: 2, "ok": 2} and line["errors"] == 0
    assert {name: status for name, status in _outcomes(lab).items() if name.endswith(".boot")} == {
        "001565aa0001.boot": OPTIONAL_MISSING, "y000000000000.boot": OPTIONAL_MISSING}


def test_a_yealinks_missing_mac_file_is_still_an_error_and_the_phone_is_blamed_on_it():
    """The phone goes on with its Common CFG alone, but a fleet without its MAC files is
    a broken deployment (lab-missing-mac-file): the 404 is an error."""
    lab = _yealink({"y000000000066.cfg": YEALINK_COMMON})
    lab.boot()
    line = _server_line(lab)
    attempts = line["by_status"]["not_found"]  # the phone's tries at it (auto_provision's retries)
    assert line["by_status"] == {OPTIONAL_MISSING: 2, "ok": 1, "not_found": attempts} and line["errors"] == attempts
    assert _outcomes(lab)["001565aa0001.cfg"] == "not_found"


def test_a_yealinks_local_file_is_only_looked_for_and_its_503_is_an_error():
    """<mac>-local.cfg exists once a phone has uploaded its own changes: not there is no
    error; a server failing to answer for it is."""
    flash = Flash(settings={"static.auto_provision.custom.protect": "1"})
    files = {"y000000000066.cfg": YEALINK_COMMON, "001565aa0001.cfg": b"#!version:1.0.0.1\n"}
    lab = PhoneLab(yealink, model="T46S", mac="00:15:65:aa:00:01", options={66: f"{HTTP}/".encode()},
                   files=files, flash=flash)
    lab.boot()
    assert _outcomes(lab)["001565aa0001-local.cfg"] == OPTIONAL_MISSING
    assert _server_line(lab)["errors"] == 0


def _polycom(files):
    return PhoneLab(polycom, model="VVX400", mac="00:04:f2:ab:cd:ef", options={66: f"{HTTP}/".encode()},
                    files=files)


def test_a_polycoms_own_master_file_before_the_default_one_and_its_overrides_are_only_looked_for():
    files = {"000000000000.cfg": polycom_cfg.render_master(["site.cfg"], ""),
             "site.cfg": polycom_cfg.render_config({"reg.1.address": "1001"})}
    lab = _polycom(files)
    assert lab.boot().state == "ready"
    outcomes = _outcomes(lab)
    assert outcomes["0004f2abcdef.cfg"] == outcomes["0004f2abcdef-phone.cfg"] == OPTIONAL_MISSING
    assert _server_line(lab)["errors"] == 0


def test_a_polycoms_last_master_file_and_a_listed_config_file_are_needed():
    lab = _polycom({"000000000000.cfg": polycom_cfg.render_master(["site.cfg"], "")})
    lab.boot()
    assert _outcomes(lab)["site.cfg"] == "not_found" and _errors(lab) >= 1
    lab = _polycom({})
    assert lab.boot().state == "failed"
    assert _outcomes(lab) == {"0004f2abcdef.cfg": OPTIONAL_MISSING, "000000000000.cfg": "not_found"}


def _grandstream(files):
    flash = Flash(firmware=grandstream.default_firmware("GXP2170"))
    return PhoneLab(grandstream, model="GXP2170", mac="00:0b:82:ab:cd:ef", options={66: f"{HTTP}/".encode()},
                    files=files, flash=flash)


def test_a_grandstreams_binary_model_and_common_files_are_only_looked_for_its_mac_xml_is_needed():
    xml = grandstream_cfg.render_provision({"P1": "1"}, mac=None, config_version="1")
    lab = _grandstream({"cfg000b82abcdef.xml": xml})
    assert lab.boot().state == "ready"
    outcomes = _outcomes(lab)
    assert outcomes["cfg000b82abcdef"] == OPTIONAL_MISSING
    assert all(status in ("ok", OPTIONAL_MISSING) for status in outcomes.values()) and _server_line(lab)["errors"] == 0
    lab = _grandstream({"cfg.xml": xml})
    lab.boot()
    line = _server_line(lab)
    assert _outcomes(lab)["cfg000b82abcdef.xml"] == "not_found" and line["by_status"]["not_found"] >= 1
    assert line["errors"] == line["by_status"]["not_found"]  # one a pass (P1 changed: it rebooted once)


@pytest.mark.parametrize("optional", [True, False])
def test_an_avaya_user_file_is_only_looked_for_when_the_phone_treats_it_as_optional(optional):
    from dataclasses import replace
    from types import SimpleNamespace

    behaviour = replace(avaya.DEFAULT_BEHAVIOUR, user_config_optional=optional)
    profile = SimpleNamespace(**{name: getattr(avaya, name) for name in (
        "VENDOR", "MODELS", "default_firmware", "dhcp_identity", "user_agent")})
    profile.provision = lambda phone: avaya.provision(phone, behaviour)
    profile.check_sync_action = lambda phone, reboot: avaya.check_sync_action(phone, reboot, behaviour)
    files = {"1220SIP.cfg": avaya_cfg.render_provisioning([("USER_CONFIG", {"VERSION": "000001"})])}
    lab = PhoneLab(profile, model="1220", mac="00:17:65:fd:bf:1d", options={66: f"{HTTP}/".encode()}, files=files)
    lab.boot()
    assert _outcomes(lab)["SIP001765FDBF1D.cfg"] == (OPTIONAL_MISSING if optional else "not_found")
    assert _errors(lab) == (0 if optional else 1)


def test_the_fleets_downloads_as_an_expectation_counts_them():
    """``downloads.*``: every server's requests by outcome, DHCP's left out; errors as the
    servers' lines count them, so the boot files' 404s are not among them."""
    from labsim.observe.report import phone_metrics

    lab = _yealink({"y000000000066.cfg": YEALINK_COMMON})
    lab.boot()
    member = FleetMember("desk", "test", lab.phone, 0.0)
    metrics, _ = phone_metrics([member], wanted={"downloads.errors"})
    line = server_statistics([member])[HTTP]
    downloads = {name: value for name, value in metrics.items() if name.startswith("downloads.")}
    assert downloads["downloads.requests"] == line["requests"] and downloads["downloads.errors"] == line["errors"] > 0
    assert downloads["downloads.optional_missing"] == 2 and downloads["downloads.not_found"] == line["errors"]
    assert downloads["downloads.ok"] == 1 and downloads["downloads.error"] == downloads["downloads.dns"] == 0
    assert "downloads.errors" not in phone_metrics([member], wanted={"phones.ready"})[0]  # only when read

"""The Avaya 1200 series SIP profile (labsim/phones/avaya.py): each rule of the
"Avaya 1200 series SIP" section of spec/phones.md (seed document 002) as a named test.

Phones run their whole cycle on a fake clock against the I/O-free DHCP server and an
in-memory file server, as in test_phone_boot_cycle.py. A "power cycle" is a new Phone
on the same Flash: only flash survives.
"""

from __future__ import annotations

import random
import struct
import types
from dataclasses import dataclass

import pytest
from twisted.internet.task import Clock

from labsim.phones import avaya
from labsim.phones.dhcp_client import OFFER_WINDOW_TIMER, DhcpClient
from labsim.phones.events import CheckSync, Credentials, SendDhcp, StartTimer
from labsim.phones.flash import Flash
from labsim.phones.phone import Phone
from labsim.services.dhcp import DhcpServer, DhcpServerConfig
from labsim.transport.driver import PhoneDriver
from labsim.transport.memory import InMemoryNetwork
from labsim.wire import avaya_cfg, dhcp
from tests.phonelab import assert_stages_declared

MAC = "00:17:65:fd:bf:1d"
USER_FILE = "SIP001765FDBF1D.cfg"
FW_NEW = "SIP12x004.01.13.00"
FW_OLD = "SIP12x004.00.04.00"  # the 1220's default load


def model_file(*sections) -> bytes:
    return avaya_cfg.render_provisioning(list(sections))


def device(version="000001", filename="device.cfg", **keywords):
    return ("DEVICE_CONFIG", {"VERSION": version, "FILENAME": filename, **keywords})


def settings(**values) -> bytes:
    return avaya_cfg.render_settings(values)


@dataclass
class Lab:
    clock: Clock
    network: InMemoryNetwork
    phone: Phone
    driver: PhoneDriver

    def urls(self) -> list[str]:
        return [fetch.url for fetch in self.network.fetches]

    def fetched(self, name: str) -> bool:
        return any(url.endswith("/" + name) for url in self.urls())

    def notes(self) -> str:
        return "\n".join(event[2] for event in self.phone.events)


def make_lab(files, *, options=None, model="1220", flash=None, behaviour=None, seed=1, mac=MAC) -> Lab:
    clock = Clock()
    server = DhcpServer(DhcpServerConfig(server_id="127.0.0.1", options={66: b"127.0.0.1"} if options is None else options))
    network = InMemoryNetwork(clock, dhcp_server=server, files=dict(files))
    profile = avaya if behaviour is None else _with_behaviour(behaviour)
    phone = Phone(mac, model, profile, rng=random.Random(seed), flash=flash, boot_time_s=1.0)
    return Lab(clock, network, phone, PhoneDriver(phone, clock, network))


def _with_behaviour(behaviour):
    profile = types.SimpleNamespace(**{name: getattr(avaya, name) for name in (
        "VENDOR", "MODELS", "default_firmware", "dhcp_identity", "user_agent")})
    profile.provision = lambda phone: avaya.provision(phone, behaviour)
    profile.check_sync_action = lambda phone, reboot: avaya.check_sync_action(phone, reboot, behaviour)
    return profile


def advance_to_next_call(clock: Clock) -> bool:
    calls = clock.getDelayedCalls()
    if not calls:
        return False
    clock.advance(max(0.0, min(call.getTime() for call in calls) - clock.seconds()))
    return True


def boot(files, **kwargs) -> Lab:
    """Power on and run until the phone settles (ready or failed), rebooting as it must."""
    lab = make_lab(files, **kwargs)
    lab.driver.power_on()
    while not lab.phone.settled and lab.clock.seconds() < 600 and advance_to_next_call(lab.clock):
        pass
    assert lab.phone.settled, lab.notes()
    # Its stages are declared, or named by its model file's sections (stages_in_files).
    assert_stages_declared(lab.phone, avaya, lab.network.files)
    return lab


def power_cycle(lab: Lab, files=None, **kwargs) -> Lab:
    """The same phone (same flash) powered on again, maybe against changed files."""
    lab.driver.stop()
    return boot(lab.network.files if files is None else files, flash=lab.phone.flash, **kwargs)


# --- DHCP -----------------------------------------------------------------------------------


def first_discover(lab: Lab):
    lab.driver.power_on()
    lab.clock.advance(1.0)
    return lab.network.dhcp_sent[0]


def test_dhcp_option_60_is_nul_terminated_nortel_sip_phone_a():
    assert first_discover(make_lab({})).options[60] == b"Nortel-SIP-Phone-A\x00"


def test_dhcp_option_55_asks_for_standard_and_site_specific_options():
    assert list(first_discover(make_lab({})).options[55]) == [
        1, 3, 6, 15, 28, 43, 58, 59, 66,
        128, 131, 144, 157, 188, 191, 205, 219, 223, 224, 227, 230, 232, 235, 238, 241, 244, 247, 249, 251, 254]


def test_dhcp_option_12_is_T_and_mac_upper_and_option_61_the_mac():
    discover = first_discover(make_lab({}))
    assert discover.options[12] == b"T001765FDBF1D"
    assert discover.options[61] == b"\x01" + bytes.fromhex("001765fdbf1d")


def _offer(client: DhcpClient, server_id: str, lease_s: int, address: str):
    return dhcp.DhcpMessage(
        op=dhcp.BOOTREPLY, xid=client.xid, chaddr=client.mac, yiaddr=address,
        options={53: bytes([dhcp.OFFER]), 54: dhcp.encode_ip_list([server_id]), 51: struct.pack("!I", lease_s)})


@pytest.mark.parametrize("leases, chosen", [((3600, 7200, 1800), "127.0.0.12"), ((3600, 3600, 1800), "127.0.0.11")])
def test_collects_offers_for_one_second_and_takes_the_longest_lease_first_on_a_tie(leases, chosen):
    identity = avaya.dhcp_identity(types.SimpleNamespace(mac=MAC))
    assert identity.offer_window_s == 1.0
    client = DhcpClient(bytes.fromhex("001765fdbf1d"), identity, random.Random(1))
    client.start(0.0)
    actions = []
    for index, lease in enumerate(leases):
        actions += client.on_message(_offer(client, f"127.0.0.{11 + index}", lease, f"10.0.0.{index + 1}"), 0.1 * index)
    assert StartTimer(OFFER_WINDOW_TIMER, 1.0) in actions
    assert not any(isinstance(action, SendDhcp) for action in actions)  # nothing requested inside the window
    request = next(a.message for a in client.on_timer(OFFER_WINDOW_TIMER, 1.0) if isinstance(a, SendDhcp))
    assert request.message_type == dhcp.REQUEST
    assert request.option_ip(54) == chosen


# --- the provisioning server and the model file -------------------------------------------


@pytest.mark.parametrize("model, filename", [
    ("1210", "1210SIP.cfg"), ("1220", "1220SIP.cfg"), ("1230", "1230SIP.cfg"),
    ("1120E", "1120eSIP.cfg"), ("1140E", "1140eSIP.cfg"), ("1165E", "1165eSIP.cfg"),
])
def test_model_file_name_per_model(model, filename):
    lab = boot({filename: model_file()}, model=model)
    assert lab.urls()[0] == f"tftp://127.0.0.1/{filename}"
    assert lab.phone.state == "ready"


def test_option_66_ip_or_name_means_tftp():
    lab = boot({"1220SIP.cfg": model_file()}, options={66: b"prov.example.test\x00"})
    assert lab.urls() == ["tftp://prov.example.test/1220SIP.cfg"]


@pytest.mark.parametrize("userinfo", ["admin:s3cret", "admin;s3cret"])
def test_option_66_url_credentials_user_colon_or_semicolon_pass(userinfo):
    lab = boot({"prov/1220SIP.cfg": model_file()}, options={66: f"http://{userinfo}@127.0.0.1:8080/prov/".encode()})
    fetch = lab.network.fetches[0]
    assert fetch.url == "http://127.0.0.1:8080/prov/1220SIP.cfg"
    assert fetch.credentials == Credentials("admin", "s3cret")


def test_no_option_66_and_nothing_in_flash_fails_with_a_reason():
    lab = boot({"1220SIP.cfg": model_file()}, options={})
    assert lab.phone.state == "failed" and lab.phone.failure.startswith("no provisioning server")
    assert lab.network.fetches == []


def test_model_file_missing_fails_with_a_reason():
    lab = boot({})
    assert lab.phone.state == "failed" and "1220SIP.cfg" in lab.phone.failure


def test_user_agent_is_avaya_load_prefix_and_version():
    lab = boot({"prov/1220SIP.cfg": model_file()}, options={66: b"http://127.0.0.1/prov/"})
    assert lab.network.fetches[0].user_agent == "AVAYA/SIP12x0/04.00.04.00"
    assert avaya.user_agent(types.SimpleNamespace(flash=Flash(firmware="SIP1140e04.04.23.00"), model="1140E")) \
        == "AVAYA/SIP1140e/04.04.23.00"


# --- sections -----------------------------------------------------------------------------


def test_device_config_key_value_lines_go_to_flash_settings():
    lab = boot({"1220SIP.cfg": model_file(device()),
                "device.cfg": b"SIP_DOMAIN1 example.com\nSERVER_IP1_1 192.0.2.10\n"})
    assert lab.phone.state == "ready" and lab.phone.reboots == 0
    assert lab.phone.flash.settings == {"SIP_DOMAIN1": "example.com", "SERVER_IP1_1": "192.0.2.10"}
    assert lab.phone.flash.versions == {"DEVICE_CONFIG": "000001"}


def test_user_config_section_fetches_SIP_mac_upper_cfg():
    lab = boot({"1220SIP.cfg": model_file(("USER_CONFIG", {"VERSION": "000001"})),
                USER_FILE: settings(SIP_USER1="1001")})
    assert lab.urls() == ["tftp://127.0.0.1/1220SIP.cfg", f"tftp://127.0.0.1/{USER_FILE}"]
    assert lab.phone.flash.settings["SIP_USER1"] == "1001"


@pytest.mark.parametrize("order, winner", [(("DEVICE_CONFIG", "USER_CONFIG"), "user"),
                                           (("USER_CONFIG", "DEVICE_CONFIG"), "device")])
def test_sections_are_processed_in_file_order_a_later_one_wins(order, winner):
    sections = {"DEVICE_CONFIG": device(), "USER_CONFIG": ("USER_CONFIG", {"VERSION": "000001"})}
    lab = boot({"1220SIP.cfg": model_file(*(sections[name] for name in order)),
                "device.cfg": settings(SIP_DOMAIN1="device"), USER_FILE: settings(SIP_DOMAIN1="user")})
    fetched = [url.rsplit("/", 1)[1] for url in lab.urls()[1:]]
    assert fetched == [{"DEVICE_CONFIG": "device.cfg", "USER_CONFIG": USER_FILE}[name] for name in order]
    assert lab.phone.flash.settings["SIP_DOMAIN1"] == winner


def test_section_without_version_is_skipped():
    lab = boot({"1220SIP.cfg": model_file(("DEVICE_CONFIG", {"FILENAME": "device.cfg"})),
                "device.cfg": settings(A="1")})
    assert not lab.fetched("device.cfg")
    assert "no VERSION" in lab.notes()


@pytest.mark.parametrize("version, used", [("12345", False), ("123456", True), ("1234567890", True),
                                           ("12345678901", False), ("00001x", False)])
def test_version_must_be_six_to_ten_digits(version, used):
    lab = boot({"1220SIP.cfg": model_file(device(version)), "device.cfg": settings(A="1")})
    assert lab.fetched("device.cfg") is used


@pytest.mark.parametrize("in_flash, in_file, downloaded", [
    (None, "000001", True), ("000005", "000006", True), ("000005", "000005", False), ("000005", "000004", False)])
def test_auto_downloads_only_a_higher_version_than_flash(in_flash, in_file, downloaded):
    flash = Flash(firmware=FW_OLD, versions={"DEVICE_CONFIG": in_flash} if in_flash else {})
    lab = boot({"1220SIP.cfg": model_file(device(in_file, DOWNLOAD_MODE="AUTO")), "device.cfg": settings(A="1")},
               flash=flash)
    assert lab.fetched("device.cfg") is downloaded
    assert lab.phone.flash.versions["DEVICE_CONFIG"] == (in_file if downloaded else in_flash)
    assert lab.phone.state == "ready"


def test_download_mode_defaults_to_auto():
    flash = Flash(firmware=FW_OLD, versions={"DEVICE_CONFIG": "000005"})
    lab = boot({"1220SIP.cfg": model_file(device("000005")), "device.cfg": settings(A="1")}, flash=flash)
    assert not lab.fetched("device.cfg")


def test_forced_downloads_always_also_a_lower_version_and_flash_remembers_it():
    flash = Flash(firmware=FW_OLD, versions={"DEVICE_CONFIG": "000009"})
    lab = boot({"1220SIP.cfg": model_file(device("000003", DOWNLOAD_MODE="FORCED")), "device.cfg": settings(A="1")},
               flash=flash)
    assert lab.fetched("device.cfg")
    assert lab.phone.flash.versions["DEVICE_CONFIG"] == "000003"
    again = power_cycle(lab)
    assert again.fetched("device.cfg")  # FORCED: every time, even at the same version


def test_unchanged_versions_end_the_cycle_with_nothing_applied_and_no_reboot():
    lab = boot({"1220SIP.cfg": model_file(device()), "device.cfg": settings(A="1")})
    again = power_cycle(lab)
    assert again.urls() == ["tftp://127.0.0.1/1220SIP.cfg"]
    assert again.phone.reboots == 0 and again.phone.state == "ready"
    assert "nothing applied" in again.phone.events[-1][2]


def test_filename_protocol_server_ip_and_credentials_locate_the_file():
    section = device(PROTOCOL="HTTP", SERVER_IP="127.0.0.9:8080", SRV_USER_NAME="prov", SRV_USER_PASS="pw")
    lab = boot({"1220SIP.cfg": model_file(section), "device.cfg": settings(A="1")})
    fetch = lab.network.fetches[1]
    assert fetch.url == "http://127.0.0.9:8080/device.cfg"
    assert fetch.credentials == Credentials("prov", "pw")


def test_protocol_defaults_to_tftp_and_server_ip_to_where_the_model_file_came_from():
    lab = boot({"prov/1220SIP.cfg": model_file(device()), "prov/device.cfg": settings(A="1")},
               options={66: b"http://127.0.0.1:8080/prov/"})
    assert lab.urls()[1] == "tftp://127.0.0.1/prov/device.cfg"


def test_server_ip_default_keeps_the_model_files_port_for_the_same_protocol():
    lab = boot({"1220SIP.cfg": model_file(device()), "device.cfg": settings(A="1")},
               options={66: b"tftp://127.0.0.1:6969/"})
    assert lab.urls()[1] == "tftp://127.0.0.1:6969/device.cfg"


def test_ftp_protocol_section_is_fetched_over_ftp():
    lab = boot({"1220SIP.cfg": model_file(device(PROTOCOL="FTP", SERVER_IP="127.0.0.1")), "device.cfg": b"A 1\n"})
    assert lab.urls()[1] == "ftp://127.0.0.1/device.cfg"
    assert lab.network.fetches[1].credentials is None  # FTP's default: anonymous


def test_model_file_credentials_are_reused_on_the_same_server_only():
    sections = [device(PROTOCOL="HTTP"), ("IMAGES", {"VERSION": "000001", "FILENAME": "bg.png",
                                                     "PROTOCOL": "HTTP", "SERVER_IP": "127.0.0.9"})]
    lab = boot({"1220SIP.cfg": model_file(*sections), "device.cfg": b"A 1\n", "bg.png": b"png"},
               options={66: b"http://u;p@127.0.0.1/"})
    by_name = {fetch.url.rsplit("/", 1)[1]: fetch.credentials for fetch in lab.network.fetches}
    assert by_name["device.cfg"] == Credentials("u", "p")
    assert by_name["bg.png"] is None
    lab = boot({"1220SIP.cfg": model_file(device(PROTOCOL="HTTP")), "device.cfg": b"A 1\n"},
               options={66: b"http://u;p@127.0.0.1/"},
               behaviour=avaya.AvayaBehaviour(reuse_model_file_credentials=False))
    assert lab.network.fetches[1].credentials is None


def test_unknown_protocol_skips_the_section():
    lab = boot({"1220SIP.cfg": model_file(device(PROTOCOL="SCP")), "device.cfg": b"A 1\n"})
    assert not lab.fetched("device.cfg") and "PROTOCOL" in lab.notes()


def test_line_longer_than_80_characters_makes_the_phone_ignore_the_rest_of_the_file():
    text = ("[DEVICE_CONFIG]\nVERSION 000001\nFILENAME device.cfg\n"
            "# " + "-" * 79 + "\n"
            "[USER_CONFIG]\nVERSION 000001\n")
    lab = boot({"1220SIP.cfg": text.encode(), "device.cfg": b"A 1\n", USER_FILE: b"B 2\n"})
    assert lab.fetched("device.cfg")
    assert not lab.fetched(USER_FILE)
    assert "longer than 80 characters" in lab.notes()


def test_values_are_sticky_until_overwritten():
    lab = boot({"1220SIP.cfg": model_file(device("000001")), "device.cfg": settings(A="1", B="2")})
    lab = power_cycle(lab, {"1220SIP.cfg": model_file(device("000002")), "device.cfg": settings(A="3")})
    assert lab.phone.flash.settings == {"A": "3", "B": "2"}


def test_factory_reset_clears_values_versions_and_profiles():
    lab = boot({"1220SIP.cfg": model_file(device()),
                "device.cfg": settings(A="1", PRIMARY_SERVER_PROFILE="p.cfg"), "p.cfg": settings(P="1")})
    flash = lab.phone.flash
    assert flash.settings and flash.versions and flash.profiles
    flash.factory_reset(avaya.default_firmware("1220"))
    assert flash.settings == {} and flash.versions == {} and flash.profiles == {}
    assert avaya.effective_settings(flash) == {}


def test_resource_sections_download_their_files_into_flash():
    sections = [("DIALING_PLAN", {"VERSION": "000001", "FILENAME": "dialplan.txt"}),
                ("LANGUAGE", {"VERSION": "000001", "FILENAME": ["French.lng", "German.lng"]}),
                ("TONES", {"VERSION": "000001", "FILENAME": "ring.wav"}),
                ("IMAGES", {"VERSION": "000001", "FILENAME": "bg.png"})]
    names = ["dialplan.txt", "French.lng", "German.lng", "ring.wav", "bg.png"]
    lab = boot({"1220SIP.cfg": model_file(*sections), **{name: name.encode() for name in names}})
    assert [url.rsplit("/", 1)[1] for url in lab.urls()[1:]] == names
    assert set(names) <= set(lab.phone.flash.file_md5)
    assert lab.phone.flash.versions == {"DIALING_PLAN": "000001", "LANGUAGE": "000001",
                                        "TONES": "000001", "IMAGES": "000001"}


def test_any_other_section_is_timed_as_its_name_in_lower_case_which_a_metric_can_carry():
    # A section the guide does not name is still a resource section; its stage is its name
    # made into one a stage.<name>.<stat> expectation can say: no dot, no space, never empty.
    sections = [("CUSTOM_RINGS", {"VERSION": "000001", "FILENAME": "a.wav"}),
                ("Ring Tones.v2", {"VERSION": "000001", "FILENAME": "b.wav"}),
                ("", {"VERSION": "000001", "FILENAME": "c.wav"})]
    lab = boot({"1220SIP.cfg": model_file(*sections), "a.wav": b"a", "b.wav": b"b", "c.wav": b"c"})
    assert {"a.wav", "b.wav", "c.wav"} <= set(lab.phone.flash.file_md5)
    assert [timing.stage for timing in lab.phone.stages][2:] == ["custom_rings", "ring_tones_v2", "section"]
    assert set(avaya.STAGES) >= {"dialing_plan", "language", "tones", "images"}
    # What labsim validate reads from the scenario's copy of the model file: the same names.
    copies = {"1220SIP.cfg": [model_file(device(), *sections)]}
    assert avaya.stages_in_files("1220", lambda name: copies.get(name, [])) == ("custom_rings", "ring_tones_v2",
                                                                               "section")
    assert avaya.stages_in_files("1220", lambda name: []) is None


def test_failed_section_download_is_not_remembered_so_it_is_tried_again():
    lab = boot({"1220SIP.cfg": model_file(device())})
    assert lab.phone.state == "failed" and "device.cfg" in lab.phone.failure
    assert "DEVICE_CONFIG" not in lab.phone.flash.versions
    again = power_cycle(lab)
    assert again.fetched("device.cfg")


# --- server profiles ----------------------------------------------------------------------


PROFILE_SYSTEM = settings(SIP_DOMAIN1="system.example", PRIMARY_SERVER_PROFILE="primary.cfg")


def profile_lab(system: bytes, profiles: dict[str, bytes], *, flash=None, version="000001") -> Lab:
    return boot({"1220SIP.cfg": model_file(device(version)), "device.cfg": system, **profiles}, flash=flash)


def with_old_profile(role="primary", name="old.cfg", **values) -> Flash:
    flash = Flash(firmware=FW_OLD)
    avaya.store_profile(flash, role, name, values or {"SIP_DOMAIN1": "old.example"})
    return flash


def test_server_profile_named_is_downloaded_after_the_system_configuration_file():
    lab = profile_lab(PROFILE_SYSTEM, {"primary.cfg": settings(SIP_DOMAIN1="profile.example")})
    assert [url.rsplit("/", 1)[1] for url in lab.urls()] == ["1220SIP.cfg", "device.cfg", "primary.cfg"]
    assert avaya.effective_settings(lab.phone.flash)["SIP_DOMAIN1"] == "profile.example"
    assert lab.phone.flash.settings["SIP_DOMAIN1"] == "system.example"  # the system value is kept beneath
    assert lab.phone.flash.profiles == {"primary": "primary.cfg"}


def test_server_profile_named_but_not_downloadable_keeps_old_profile_from_flash():
    lab = profile_lab(PROFILE_SYSTEM, {}, flash=with_old_profile())
    assert lab.fetched("primary.cfg")
    assert lab.phone.flash.profiles == {"primary": "old.cfg"}
    assert avaya.effective_settings(lab.phone.flash)["SIP_DOMAIN1"] == "old.example"


def test_server_profile_named_but_not_downloadable_without_old_profile_uses_system_configuration():
    lab = profile_lab(PROFILE_SYSTEM, {})
    assert lab.phone.flash.profiles == {}
    assert avaya.effective_settings(lab.phone.flash)["SIP_DOMAIN1"] == "system.example"


def test_server_profile_present_but_blank_uses_system_configuration_and_deletes_old_profile():
    system = settings(SIP_DOMAIN1="system.example", PRIMARY_SERVER_PROFILE="")
    lab = profile_lab(system, {}, flash=with_old_profile())
    assert lab.phone.flash.profiles == {}
    assert avaya.stored_profile(lab.phone.flash, "primary") == {}
    assert avaya.effective_settings(lab.phone.flash)["SIP_DOMAIN1"] == "system.example"
    assert len(lab.urls()) == 2  # nothing to download for a blank name


def test_server_profile_absent_keeps_old_profile_from_flash():
    lab = profile_lab(settings(SIP_DOMAIN1="system.example"), {}, flash=with_old_profile())
    assert lab.phone.flash.profiles == {"primary": "old.cfg"}
    assert avaya.effective_settings(lab.phone.flash)["SIP_DOMAIN1"] == "old.example"


def test_server_profile_absent_without_old_profile_uses_system_configuration():
    lab = profile_lab(settings(SIP_DOMAIN1="system.example"), {})
    assert lab.phone.flash.profiles == {}
    assert avaya.effective_settings(lab.phone.flash)["SIP_DOMAIN1"] == "system.example"


def test_factory_reset_removes_all_profiles():
    system = settings(PRIMARY_SERVER_PROFILE="primary.cfg", SECONDARY_SERVER_PROFILE="secondary.cfg")
    lab = profile_lab(system, {"primary.cfg": settings(X="p"), "secondary.cfg": settings(X="s")})
    flash = lab.phone.flash
    assert set(flash.profiles) == {"primary", "secondary"}
    flash.factory_reset(avaya.default_firmware("1220"))
    assert flash.profiles == {}
    assert avaya.stored_profile(flash, "primary") == {} and avaya.stored_profile(flash, "secondary") == {}
    # After the reset, a system file that no longer names a profile leaves none in use.
    lab = power_cycle(lab, {"1220SIP.cfg": model_file(device()), "device.cfg": settings(X="system")})
    assert lab.phone.flash.profiles == {}
    assert avaya.effective_settings(lab.phone.flash)["X"] == "system"


def test_only_one_profile_is_active_at_a_time():
    system = settings(X="system", PRIMARY_SERVER_PROFILE="primary.cfg", SECONDARY_SERVER_PROFILE="secondary.cfg")
    lab = profile_lab(system, {"primary.cfg": settings(X="p"),
                               "secondary.cfg": settings(X="s", ONLY_SECONDARY="1")})
    effective = avaya.effective_settings(lab.phone.flash)
    assert effective["X"] == "p" and "ONLY_SECONDARY" not in effective
    assert avaya.stored_profile(lab.phone.flash, "secondary") == {"X": "s", "ONLY_SECONDARY": "1"}


def test_active_profile_file_names_are_visible_in_flash():
    system = settings(PRIMARY_SERVER_PROFILE="primary.cfg", SECONDARY_SERVER_PROFILE="secondary.cfg")
    lab = profile_lab(system, {"primary.cfg": settings(X="p"), "secondary.cfg": settings(X="s")})
    assert lab.phone.flash.summary()["profiles"] == {"primary": "primary.cfg", "secondary": "secondary.cfg"}


@pytest.mark.parametrize("key", sorted(avaya.SOFT_REBOOT_KEYS))
def test_new_profile_changing_a_soft_reboot_key_soft_reboots_once(key):
    lab = profile_lab(PROFILE_SYSTEM, {"primary.cfg": settings(**{key: "1"})})
    assert lab.phone.reboots == 1
    reboot = next(event[2] for event in lab.phone.events if event[1] == "rebooting")
    assert "soft reboot" in reboot and key in reboot
    assert lab.phone.state == "ready"  # after the reboot the versions match: no second one


def test_new_profile_changing_other_keys_applies_without_reboot():
    lab = profile_lab(PROFILE_SYSTEM, {"primary.cfg": settings(SIP_DOMAIN1="p.example", DND_ENABLE="YES")})
    assert lab.phone.reboots == 0 and lab.phone.state == "ready"
    assert avaya.effective_settings(lab.phone.flash)["DND_ENABLE"] == "YES"


def test_new_profile_repeating_the_running_value_does_not_reboot():
    flash = with_old_profile(FIPS_MODE="1")
    lab = profile_lab(PROFILE_SYSTEM, {"primary.cfg": settings(FIPS_MODE="1")}, flash=flash)
    assert lab.phone.reboots == 0
    assert lab.phone.flash.profiles == {"primary": "primary.cfg"}


def test_system_configuration_changing_a_soft_reboot_key_applies_without_reboot():
    lab = profile_lab(settings(FIPS_MODE="1"), {})
    assert lab.phone.reboots == 0 and lab.phone.flash.settings["FIPS_MODE"] == "1"


def test_forced_profile_soft_reboot_does_not_loop():
    sections = [device(DOWNLOAD_MODE="FORCED")]
    lab = boot({"1220SIP.cfg": model_file(*sections), "device.cfg": PROFILE_SYSTEM,
                "primary.cfg": settings(USB_HEADSET="NO")})
    assert lab.phone.reboots == 1 and lab.phone.state == "ready"
    assert sum(url.endswith("/primary.cfg") for url in lab.urls()) == 2


# --- firmware -------------------------------------------------------------------------------


def fw_section(version=FW_NEW, mode="AUTO", filename=None):
    return ("FW", {"DOWNLOAD_MODE": mode, "VERSION": version, "FILENAME": filename or version + ".bin"})


def test_new_firmware_version_downloads_the_image_and_reboots():
    lab = boot({"1220SIP.cfg": model_file(fw_section()), FW_NEW + ".bin": avaya_cfg.sign_firmware(b"load")})
    phone = lab.phone
    assert phone.reboots == 1 and phone.state == "ready"
    assert phone.flash.firmware == FW_NEW and phone.flash.versions["FW"] == FW_NEW
    assert sum(url.endswith(".bin") for url in lab.urls()) == 1  # the second cycle found it current
    assert lab.network.fetches[-1].user_agent == "AVAYA/SIP12x0/04.01.13.00"


def test_same_firmware_version_in_auto_mode_is_not_downloaded():
    lab = boot({"1220SIP.cfg": model_file(fw_section(FW_OLD)), FW_OLD + ".bin": avaya_cfg.sign_firmware()})
    assert not lab.fetched(FW_OLD + ".bin") and lab.phone.reboots == 0


def test_forced_firmware_downgrade_installs_the_older_load():
    older = "SIP12x003.02.16.00"
    lab = boot({"1220SIP.cfg": model_file(fw_section(older, "FORCED")), older + ".bin": avaya_cfg.sign_firmware()})
    assert lab.phone.flash.firmware == older
    assert lab.phone.reboots == 1  # downgraded once; the next FORCED pass finds it running


def test_forced_firmware_already_running_is_downloaded_but_not_flashed_again():
    lab = boot({"1220SIP.cfg": model_file(fw_section(FW_OLD, "FORCED")), FW_OLD + ".bin": avaya_cfg.sign_firmware()})
    assert lab.fetched(FW_OLD + ".bin") and lab.phone.reboots == 0


def test_firmware_that_fails_authentication_is_not_installed_old_firmware_stays():
    lab = boot({"1220SIP.cfg": model_file(fw_section()), FW_NEW + ".bin": b"unsigned image"})
    phone = lab.phone
    assert phone.flash.firmware == FW_OLD and "FW" not in phone.flash.versions
    assert phone.reboots == 0
    assert phone.state == "failed" and "authentication" in phone.failure


def test_firmware_that_cannot_be_downloaded_leaves_the_old_firmware():
    lab = boot({"1220SIP.cfg": model_file(device(), fw_section()), "device.cfg": b"A 1\n"})
    assert lab.phone.flash.firmware == FW_OLD and lab.phone.reboots == 0
    assert lab.phone.state == "ready"  # the configuration still applied


# --- the daily check ------------------------------------------------------------------------


def daily_files(time_s: int, range_h: int | None) -> dict[str, bytes]:
    values = {"AUTO_UPDATE": "YES", "AUTO_UPDATE_TIME": str(time_s)}
    if range_h is not None:
        values["AUTO_UPDATE_TIME_RANGE"] = str(range_h)
    return {"1220SIP.cfg": model_file(device()), "device.cfg": settings(**values)}


def check_times(lab: Lab, until_s: float) -> list[float]:
    """Clock times at which the phone fetched its model file."""
    times = [0.0]
    count = 1
    while lab.clock.getDelayedCalls() and min(c.getTime() for c in lab.clock.getDelayedCalls()) <= until_s:
        advance_to_next_call(lab.clock)
        if len(lab.network.fetches) > count and lab.network.fetches[-1].url.endswith("1220SIP.cfg"):
            times.append(lab.clock.seconds())
        count = len(lab.network.fetches)
    return times[1:]


def test_auto_update_checks_daily_at_the_time_plus_an_offset_within_the_range():
    lab = boot(daily_files(7200, 2))
    checks = check_times(lab, 3 * avaya.DAY_S)
    assert len(checks) == 3
    for day, at in enumerate(checks):
        assert day * avaya.DAY_S + 7200 <= at < day * avaya.DAY_S + 7200 + 2 * 3600
    assert lab.phone.reboots == 0
    # the pass that set AUTO_UPDATE_TIME says which clock it keeps: no FORCE_TIME_ZONE here
    assert "clock UTC, the lab's (FORCE_TIME_ZONE not YES: the user's own zone, not modelled): no summer time" in [
        text for _, _, text, _ in lab.phone.events]


def test_auto_update_offset_is_per_phone_from_its_rng():
    first = check_times(boot(daily_files(3600, 6), seed=1), avaya.DAY_S)
    same = check_times(boot(daily_files(3600, 6), seed=1), avaya.DAY_S)
    other = check_times(boot(daily_files(3600, 6), seed=2), avaya.DAY_S)
    assert first == same
    assert first != other


def test_next_daily_check_inside_todays_window_is_tomorrow():
    rng = random.Random(5)
    values = {"AUTO_UPDATE": "YES", "AUTO_UPDATE_TIME": "3600", "AUTO_UPDATE_TIME_RANGE": "1"}
    before = avaya.next_daily_check_s(values, 1000.0, rng)
    assert 2600 <= before < 2600 + 3600
    inside = avaya.next_daily_check_s(values, 4000.0, rng)
    assert avaya.DAY_S - 4000 + 3600 <= inside < avaya.DAY_S - 4000 + 3600 + 3600


def test_clock_start_sets_the_simulated_wall_clock():
    values = {"AUTO_UPDATE": "YES", "AUTO_UPDATE_TIME": "3600", "AUTO_UPDATE_TIME_RANGE": "1"}
    behaviour = avaya.AvayaBehaviour(clock_start_s=3000.0)
    delay = avaya.next_daily_check_s(values, 0.0, random.Random(1), behaviour)
    assert 600 <= delay < 600 + 3600


BEFORE_US_SPRING = 62 * 86400.0  # Saturday 2026-03-07 00:00 UTC; North America's clocks change on Sunday the 8th
JULY = 178 * 86400.0  # Wednesday 2026-07-01 00:00 UTC


@pytest.mark.parametrize("zone, start, opens_at", [
    # AUTO_UPDATE_TIME 03:00 on the phone's clock, on the lab's (UTC) in January
    ({"TIMEZONE_OFFSET": "-18000", "FORCE_TIME_ZONE": "YES"}, 0.0, 8 * 3600),  # EST: 08:00 UTC
    ({"TIMEZONE_OFFSET": "3600", "FORCE_TIME_ZONE": "YES", "DST_ENABLED": "NO"}, 0.0, 2 * 3600),
    ({"TIMEZONE_OFFSET": "-18000"}, 0.0, 3 * 3600),  # FORCE_TIME_ZONE absent: the user's zone (the lab's clock)
    ({"TIMEZONE_OFFSET": "-18000", "FORCE_TIME_ZONE": "NO"}, 0.0, 3 * 3600),
    ({"TIMEZONE_OFFSET": "-5:00", "FORCE_TIME_ZONE": "YES"}, 0.0, 3 * 3600),  # not seconds: no zone
    # in July: North America's summer time, unless DST_ENABLED NO
    ({"TIMEZONE_OFFSET": "-18000", "FORCE_TIME_ZONE": "YES"}, JULY, 7 * 3600),
    ({"TIMEZONE_OFFSET": "-18000", "FORCE_TIME_ZONE": "YES", "DST_ENABLED": "NO"}, JULY, 8 * 3600),
    ({"TIMEZONE_OFFSET": "3600", "FORCE_TIME_ZONE": "YES"}, JULY, 1 * 3600),  # the one rule it knows, in Europe too
])
def test_auto_update_time_is_on_the_phones_own_clock(zone, start, opens_at):
    values = {"AUTO_UPDATE": "YES", "AUTO_UPDATE_TIME": "10800", "AUTO_UPDATE_TIME_RANGE": "1", **zone}
    behaviour = avaya.AvayaBehaviour(clock_start_s=start)
    delays = [avaya.next_daily_check_s(values, 0.0, random.Random(seed), behaviour) for seed in range(50)]
    assert all(0 <= (delay - opens_at) % avaya.DAY_S < 3600 for delay in delays), sorted(delays)[:3]


@pytest.mark.parametrize("zone, clock", [
    ({"TIMEZONE_OFFSET": "-18000", "FORCE_TIME_ZONE": "YES"}, "clock -18000: summer time +60 min"),
    ({"TIMEZONE_OFFSET": "3600", "FORCE_TIME_ZONE": "YES", "DST_ENABLED": "NO"}, "clock 3600: no summer time"),
    ({"TIMEZONE_OFFSET": "-18000"}, "clock UTC, the lab's (FORCE_TIME_ZONE not YES: the user's own zone, not modelled): "
                                    "no summer time"),
    ({"TIMEZONE_OFFSET": "-5:00", "FORCE_TIME_ZONE": "YES"},
     "clock UTC, the lab's (TIMEZONE_OFFSET '-5:00' is no zone): no summer time"),
    ({"FORCE_TIME_ZONE": "YES"}, "clock UTC, the lab's (TIMEZONE_OFFSET not set): no summer time"),
])
def test_the_timeline_says_which_clock_the_daily_check_keeps(zone, clock):
    assert avaya.describe_clock({"AUTO_UPDATE": "YES", "AUTO_UPDATE_TIME": "10800", **zone}) == clock


def test_auto_update_time_follows_north_americas_spring_change():
    # 03:00 EST on Saturday is 08:00 UTC; on Sunday, after the change at 07:00 UTC, 03:00
    # EDT is 07:00 UTC.
    values = {"AUTO_UPDATE": "YES", "AUTO_UPDATE_TIME": "10800", "AUTO_UPDATE_TIME_RANGE": "1",
              "TIMEZONE_OFFSET": "-18000", "FORCE_TIME_ZONE": "YES"}
    behaviour = avaya.AvayaBehaviour(clock_start_s=BEFORE_US_SPRING)
    saturday = avaya.next_daily_check_s(values, 0.0, random.Random(3), behaviour)
    assert 8 * 3600 <= saturday < 9 * 3600
    sunday = saturday + avaya.next_daily_check_s(values, saturday, random.Random(3), behaviour)
    assert 86400 + 7 * 3600 <= sunday < 86400 + 8 * 3600


@pytest.mark.parametrize("range_text, hours", [("0", 1), ("9", 6), ("3", 3)])
def test_auto_update_time_range_is_one_to_six_hours(range_text, hours):
    values = {"AUTO_UPDATE": "YES", "AUTO_UPDATE_TIME": "0", "AUTO_UPDATE_TIME_RANGE": range_text}
    delays = [avaya.next_daily_check_s(values, 0.0, random.Random(seed)) for seed in range(200)]
    assert all(avaya.DAY_S <= d < avaya.DAY_S + hours * 3600 for d in delays)
    assert max(delays) > avaya.DAY_S + (hours - 0.5) * 3600  # the whole range is used


def test_without_auto_update_yes_there_is_no_daily_check():
    assert avaya.next_daily_check_s({"AUTO_UPDATE_TIME": "3600"}, 0.0, random.Random(1)) is None
    assert avaya.next_daily_check_s({"AUTO_UPDATE": "NO", "AUTO_UPDATE_TIME": "3600"}, 0.0, random.Random(1)) is None
    lab = boot({"1220SIP.cfg": model_file(device()), "device.cfg": settings(A="1")})
    assert check_times(lab, 2 * avaya.DAY_S) == []


def test_check_sync_is_ignored_by_default():
    lab = boot({"1220SIP.cfg": model_file()})
    lab.driver.deliver(CheckSync())
    assert lab.phone.state == "ready" and len(lab.urls()) == 1
    assert "check-sync ignored" in lab.notes()


def test_check_sync_setting_stands_in_for_check_for_updates():
    lab = boot({"1220SIP.cfg": model_file()}, behaviour=avaya.AvayaBehaviour(check_sync="resync"))
    lab.driver.deliver(CheckSync())
    while not lab.phone.settled and advance_to_next_call(lab.clock):
        pass
    assert lab.urls() == ["tftp://127.0.0.1/1220SIP.cfg"] * 2 and lab.phone.reboots == 0


def test_vendor_is_registered():
    from labsim.phones.vendors import VENDORS

    assert VENDORS["avaya"] is avaya
    assert avaya.MODELS == ("1210", "1220", "1230", "1120E", "1140E", "1165E")


def test_a_fleets_check_sync_setting_reaches_the_phone():
    # The fleet's behaviour settings are bound into every profile function that takes
    # them, check_sync_action included (it was once left out: the setting did nothing).
    from labsim.phones.vendors import profile_for

    assert profile_for("avaya").check_sync_action(None, False) == "ignore"
    assert profile_for("avaya", {"check_sync": "resync"}).check_sync_action(None, False) == "resync"
    assert profile_for("avaya", {"check_sync": "resync"}).check_sync_action(None, True) == "reboot"

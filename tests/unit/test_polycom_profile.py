"""Polycom/Poly UC rules from spec/phones.md ("Breadth profiles"), one test each (fake
clock, in-memory network, no sockets). docs/phones-polycom.md maps each rule to its test."""

import hashlib
from types import SimpleNamespace

import pytest
from hypothesis import given, strategies as st

from labsim.phones import polycom
from labsim.phones.events import CheckSync, PowerCycle, Put
from labsim.phones.flash import Flash
from labsim.phones.vendors import profile_for
from labsim.wire import dhcp, polycom_cfg
from tests.phonelab import PhoneLab

MAC = "00:04:f2:ab:cd:ef"
BARE = "0004f2abcdef"
HTTP = {66: b"http://127.0.0.1:8080/"}
RUNNING = "4.1.4.7430"


def cfg(**settings) -> bytes:
    return polycom_cfg.render_config({key.replace("__", "."): str(value) for key, value in settings.items()})


def master(*config_files, app="", **attributes) -> bytes:
    return polycom_cfg.render_master(list(config_files), app, **attributes)


def lab(files, *, options=HTTP, model="VVX400", flash=None, profile=polycom, **kw):
    return PhoneLab(profile, model=model, mac=MAC, options=options, files=files, flash=flash, **kw)


def names(l) -> list[str]:
    """The file names the phone asked for (GETs only), in order."""
    return [f.url.rsplit("/", 1)[1] for f in l.network.fetches if not isinstance(f, Put)]


def puts(l) -> list[Put]:
    return [f for f in l.network.fetches if isinstance(f, Put)]


# --- identity on the wire -----------------------------------------------------------------


def test_option_60_is_rfc3925_enterprise_13885_with_polycom_model_part_number_and_version():
    l = lab({"000000000000.cfg": master()})
    l.boot()
    discover = l.network.dhcp_sent[0]
    payload = discover.options[60]
    assert payload[:4] == (13885).to_bytes(4, "big") and payload[4] == len(payload) - 5
    [(enterprise, subs)] = polycom_cfg.decode_vendor_class(payload)
    assert enterprise == 13885
    assert subs == {1: b"Polycom", 2: b"VVX-VVX_400", 3: b"3111-46157-002", 4: b"SIP/" + RUNNING.encode()}


def test_option_60_says_the_flashed_application_version_after_an_upgrade():
    image = b"PolycomUC 5.9.0.1234\n" + b"\0" * 64
    l = lab({"000000000000.cfg": master(app="sip.ld"), "sip.ld": image})
    l.boot()
    after_reboot = l.network.dhcp_sent[-1]  # the INIT-REBOOT REQUEST for the address it had
    assert after_reboot.message_type == dhcp.REQUEST and 50 in after_reboot.options
    assert polycom_cfg.decode_vendor_class(after_reboot.options[60])[0][1][4] == b"SIP/5.9.0.1234"


@pytest.mark.parametrize("model, expected", [
    ("VVX400", "FileTransport PolycomVVX-VVX_400-UA/4.1.4.7430 Type/Application"),
    ("SPIP650", "FileTransport PolycomSoundPointIP-SPIP_650-UA/4.0.15.1009 Type/Application"),
])
def test_user_agent_is_filetransport_family_model_ua_version_type_application(model, expected):
    l = lab({"000000000000.cfg": master()}, model=model)
    l.boot()
    assert {f.user_agent for f in l.network.fetches} == {expected}


# --- the boot server ------------------------------------------------------------------------


def test_boot_server_custom_option_160_before_option_66():
    l = lab({"000000000000.cfg": master()}, options={66: b"http://127.0.0.1:1/", 160: b"http://127.0.0.1:8080/p/"})
    l.boot()
    assert l.network.fetches[0].url == f"http://127.0.0.1:8080/p/{BARE}.cfg"
    assert "DHCP option 160" in l.steps()[0]


def test_boot_server_option_66_when_no_custom_option():
    l = lab({"000000000000.cfg": master()})
    phone = l.boot()
    assert phone.state == "ready" and l.network.fetches[0].url == f"http://127.0.0.1:8080/{BARE}.cfg"


def test_boot_server_use_opt_0_reads_only_option_66():
    flash = Flash(firmware=RUNNING, settings={"device.dhcp.bootSrvUseOpt": "0"})
    l = lab({"000000000000.cfg": master()}, options={66: b"http://127.0.0.1:8080/", 160: b"http://127.0.0.1:1/"},
            flash=flash)
    l.boot()
    assert l.network.fetches[0].url.startswith("http://127.0.0.1:8080/")


def test_boot_server_custom_option_number_is_a_setting():
    flash = Flash(firmware=RUNNING, settings={"device.dhcp.bootSrvOpt": "161", "device.dhcp.bootSrvUseOpt": "1"})
    l = lab({"000000000000.cfg": master()}, options={66: b"http://127.0.0.1:1/", 161: b"http://127.0.0.1:8080/x/"},
            flash=flash)
    l.boot()
    assert l.network.fetches[0].url.startswith("http://127.0.0.1:8080/x/")


def test_static_boot_server_mode_uses_device_prov_server_name():
    flash = Flash(firmware=RUNNING, settings={"device.dhcp.bootSrvUseOpt": "2",
                                             "device.prov.serverName": "http://127.0.0.1:8080/static/"})
    l = lab({"static/000000000000.cfg": master()}, flash=flash)
    assert l.boot().state == "ready"
    assert l.network.fetches[0].url.startswith("http://127.0.0.1:8080/static/")


def test_bare_host_means_tftp_by_default_and_ftp_uses_the_factory_login():
    l = lab({"000000000000.cfg": master()}, options={66: b"127.0.0.1"})
    l.boot()
    assert l.network.fetches[0].url == f"tftp://127.0.0.1/{BARE}.cfg"
    l = lab({"000000000000.cfg": master()}, options={66: b"127.0.0.1"},
            profile=profile_for("polycom", {"bare_host_scheme": "ftp"}))
    l.boot()
    first = l.network.fetches[0]
    assert first.url.startswith("ftp://127.0.0.1/") and (first.credentials.user, first.credentials.password) == (
        "PlcmSpIp", "PlcmSpIp")


def test_no_boot_server_is_a_recorded_failure():
    phone = lab({}, options={}).boot()
    assert phone.state == "failed" and "no boot server" in phone.failure


# --- the master configuration file ----------------------------------------------------------


def test_boot_server_url_naming_a_cfg_is_the_master_file():
    l = lab({"site/lab.cfg": master("a.cfg"), "site/a.cfg": cfg(x=1)},
            options={66: b"http://127.0.0.1:8080/site/lab.cfg"})
    phone = l.boot()
    assert names(l)[0] == "lab.cfg" and BARE + ".cfg" not in names(l)
    assert phone.flash.settings == {"x": "1"}


def test_mac_cfg_first_then_000000000000_cfg():
    l = lab({"000000000000.cfg": master("a.cfg"), "a.cfg": cfg(x=1)})
    l.boot()
    assert names(l)[:2] == [f"{BARE}.cfg", "000000000000.cfg"]


def test_mac_cfg_found_means_the_default_master_is_not_asked_for():
    l = lab({f"{BARE}.cfg": master("mine.cfg"), "000000000000.cfg": master("other.cfg"), "mine.cfg": cfg(x=1)})
    phone = l.boot()
    assert "000000000000.cfg" not in names(l) and phone.flash.settings == {"x": "1"}


@pytest.mark.parametrize("body, why", [
    (b"\x00\xffnot xml at all", "not well-formed XML"),
    (b"<APPLICATION CONFIG_FILES='a.cfg'", "not well-formed XML"),
    (b"<?xml version='1.0'?><SOMETHING/>", "no <APPLICATION>"),
    (b"", "not well-formed XML"),
])
def test_broken_master_file_is_a_recorded_failure(body, why):
    l = lab({"000000000000.cfg": body, "a.cfg": cfg(x=1)})
    phone = l.boot()
    assert phone.state == "failed" and "000000000000.cfg" in phone.failure and why in phone.failure
    assert "a.cfg" not in names(l)


def test_no_master_file_is_a_recorded_failure():
    phone = lab({}).boot()
    assert phone.state == "failed" and f"{BARE}.cfg or 000000000000.cfg" in phone.failure


def test_config_files_are_fetched_in_listed_order():
    l = lab({"000000000000.cfg": master("c.cfg", "a.cfg", "b.cfg"), "a.cfg": cfg(a=1), "b.cfg": cfg(b=1),
             "c.cfg": cfg(c=1)})
    l.boot()
    assert [n for n in names(l) if n in ("a.cfg", "b.cfg", "c.cfg")] == ["c.cfg", "a.cfg", "b.cfg"]


def test_config_files_first_file_that_sets_a_parameter_wins():
    files = {"000000000000.cfg": master("first.cfg", "second.cfg"),
             "first.cfg": cfg(reg__1__address="1001", only__first="1"),
             "second.cfg": cfg(reg__1__address="2002", only__second="2")}
    phone = lab(files).boot()
    assert phone.flash.settings == {"reg.1.address": "1001", "only.first": "1", "only.second": "2"}


def test_phone_mac_address_macro_in_config_files():
    files = {"000000000000.cfg": master("phone[PHONE_MAC_ADDRESS].cfg", "sip.cfg"),
             f"phone{BARE}.cfg": cfg(reg__1__address="me"), "sip.cfg": cfg(x=1)}
    l = lab(files)
    phone = l.boot()
    assert f"phone{BARE}.cfg" in names(l) and phone.flash.settings["reg.1.address"] == "me"


def test_model_element_overrides_config_files_and_application_for_that_model():
    body = (b'<APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="generic.cfg">'
            b'<APPLICATION_VVX400 APP_FILE_PATH_VVX400="vvx400.ld" CONFIG_FILES_VVX400="vvx400.cfg"/>'
            b'<APPLICATION_SPIP650 CONFIG_FILES_SPIP650="spip.cfg"/></APPLICATION>')
    files = {"000000000000.cfg": body, "generic.cfg": cfg(g=1), "vvx400.cfg": cfg(v=1), "spip.cfg": cfg(s=1)}
    l = lab(files)
    phone = l.boot()
    assert "vvx400.ld" in names(l) and "sip.ld" not in names(l)
    assert phone.flash.settings == {"v": "1"}
    l = lab(files, model="SPIP650")
    phone = l.boot()
    assert "sip.ld" in names(l) and phone.flash.settings == {"s": "1"}


def test_missing_config_file_is_skipped_or_fails_by_setting():
    files = {"000000000000.cfg": master("gone.cfg", "a.cfg"), "a.cfg": cfg(x=1)}
    phone = lab(files).boot()
    assert phone.state == "ready" and phone.flash.settings == {"x": "1"}
    phone = lab(files, profile=profile_for("polycom", {"missing_config_file_fails": True})).boot()
    assert phone.state == "failed" and "gone.cfg" in phone.failure


def test_unreadable_config_file_is_rejected_and_the_others_apply():
    l = lab({"000000000000.cfg": master("bad.cfg", "a.cfg"), "bad.cfg": b"<oops", "a.cfg": cfg(x=1)})
    phone = l.boot()
    assert phone.state == "ready" and phone.flash.settings == {"x": "1"}
    assert any(s.startswith("rejected bad.cfg") for s in l.steps())


# --- the overrides file -----------------------------------------------------------------------


def test_overrides_file_wins_over_config_files():
    overrides = polycom_cfg.render_config({"reg.1.label": "mine"}, "PHONE_CONFIG", "OVERRIDES")
    files = {"000000000000.cfg": master("a.cfg"), "a.cfg": cfg(reg__1__label="central", x=1),
             f"{BARE}-phone.cfg": overrides}
    phone = lab(files).boot()
    assert phone.flash.settings == {"reg.1.label": "mine", "x": "1"}


def test_overrides_file_is_read_from_overrides_directory():
    overrides = polycom_cfg.render_config({"y": "2"}, "PHONE_CONFIG", "OVERRIDES")
    files = {"000000000000.cfg": master("a.cfg", OVERRIDES_DIRECTORY="over"), "a.cfg": cfg(x=1),
             f"over/{BARE}-phone.cfg": overrides}
    l = lab(files)
    phone = l.boot()
    assert f"http://127.0.0.1:8080/over/{BARE}-phone.cfg" in l.urls()
    assert phone.flash.settings == {"x": "1", "y": "2"}


# --- device parameters, change detection, restart ---------------------------------------------------


def test_device_parameters_apply_only_with_device_set_and_their_own_set():
    files = {"000000000000.cfg": master("a.cfg"),
             "a.cfg": cfg(device__sntp__serverName="ntp.lab", device__sntp__gmtOffset="3600",
                          device__sntp__serverName__set="1")}
    phone = lab(files).boot()  # no device.set: neither applies
    assert "device.sntp.serverName" not in phone.flash.settings and phone.reboots == 0
    files["a.cfg"] = cfg(device__set="1", device__sntp__serverName="ntp.lab", device__sntp__serverName__set="1",
                         device__sntp__gmtOffset="3600")
    phone = lab(files).boot()  # device.set and its own .set: only serverName applies
    assert phone.flash.settings["device.sntp.serverName"] == "ntp.lab"
    assert "device.sntp.gmtOffset" not in phone.flash.settings


def test_device_parameter_change_restarts_once_then_the_cycle_ends_without_a_second_restart():
    files = {"000000000000.cfg": master("a.cfg"),
             "a.cfg": cfg(device__set="1", device__sntp__serverName="ntp.lab", device__sntp__serverName__set="1")}
    l = lab(files)
    phone = l.boot()
    assert phone.state == "ready" and phone.reboots == 1
    assert l.states() == ["booting", "dhcp", "provisioning", "rebooting", "dhcp", "provisioning", "ready"]
    assert "no parameter changed" in phone.events[-1][2]


def test_other_parameter_change_applies_without_restart():
    phone = lab({"000000000000.cfg": master("a.cfg"), "a.cfg": cfg(reg__1__address="1001")}).boot()
    assert phone.state == "ready" and phone.reboots == 0 and phone.flash.settings == {"reg.1.address": "1001"}


def test_restart_prefixes_is_a_setting():
    profile = profile_for("polycom", {"restart_prefixes": "device.,voIpProt.server."})
    files = {"000000000000.cfg": master("a.cfg"), "a.cfg": cfg(voIpProt__server__1__address="sip.lab")}
    phone = lab(files, profile=profile).boot()
    assert phone.reboots == 1 and phone.state == "ready"


def test_parameters_no_file_sets_any_more_leave_flash_but_applied_device_parameters_stay():
    flash = Flash(firmware=RUNNING, settings={"old.key": "1", "device.sntp.serverName": "ntp.old"})
    phone = lab({"000000000000.cfg": master("a.cfg"), "a.cfg": cfg(x=1)}, flash=flash).boot()
    assert phone.flash.settings == {"x": "1", "device.sntp.serverName": "ntp.old"}


def test_file_md5s_are_remembered_in_flash():
    files = {"000000000000.cfg": master("a.cfg"), "a.cfg": cfg(x=1)}
    phone = lab(files).boot()
    assert phone.flash.file_md5 == {name: hashlib.md5(files[name]).hexdigest() for name in files}


# --- the application ------------------------------------------------------------------------------


def test_new_application_is_flashed_and_restarts_before_any_configuration_file():
    image = b"PolycomUC 5.9.0.1234\n" + b"\0" * 64
    l = lab({"000000000000.cfg": master("a.cfg", app="sip.ld"), "sip.ld": image, "a.cfg": cfg(x=1)})
    phone = l.boot()
    assert phone.flash.firmware == "5.9.0.1234" and phone.reboots == 1 and phone.state == "ready"
    first_pass = names(l)[: names(l).index("sip.ld") + 1]
    assert "a.cfg" not in first_pass and names(l).count("a.cfg") == 1  # only after the restart
    assert l.network.fetches[-3].user_agent.endswith("UA/5.9.0.1234 Type/Application")


def test_same_application_version_is_not_flashed_again():
    image = b"PolycomUC " + RUNNING.encode() + b"\n"
    phone = lab({"000000000000.cfg": master("a.cfg", app="sip.ld"), "sip.ld": image, "a.cfg": cfg(x=1)}).boot()
    assert phone.reboots == 0 and phone.flash.firmware == RUNNING


def test_missing_application_keeps_the_running_one():
    l = lab({"000000000000.cfg": master("a.cfg", app="sip.ld"), "a.cfg": cfg(x=1)})
    phone = l.boot()
    assert phone.state == "ready" and phone.flash.firmware == RUNNING and phone.reboots == 0
    assert any("keeps running" in s for s in l.steps())


def test_application_without_a_version_is_flashed_once_by_its_md5():
    l = lab({"000000000000.cfg": master("a.cfg", app="sip.ld"), "sip.ld": b"\0" * 128, "a.cfg": cfg(x=1)})
    phone = l.boot()
    assert phone.reboots == 1 and phone.state == "ready"
    l.driver.deliver(CheckSync())
    l.advance(5)
    assert phone.reboots == 1 and phone.state == "ready"


# --- uploads ---------------------------------------------------------------------------------------


def test_uploads_app_log_into_log_file_directory_with_http_put():
    l = lab({"000000000000.cfg": master("a.cfg", LOG_FILE_DIRECTORY="logs"), "a.cfg": cfg(x=1)})
    l.boot()
    log = [p for p in puts(l) if p.url.endswith("-app.log")]
    assert [p.url for p in log] == [f"http://127.0.0.1:8080/logs/{BARE}-app.log"]
    assert log[0].user_agent.startswith("FileTransport PolycomVVX-VVX_400-UA/")
    assert b"downloaded a.cfg" in l.network.uploads[f"logs/{BARE}-app.log"]


def test_uploads_overrides_file_when_the_server_has_none_and_reads_it_next_time():
    l = lab({"000000000000.cfg": master("a.cfg", OVERRIDES_DIRECTORY="over"), "a.cfg": cfg(x=1)})
    l.boot()
    assert f"over/{BARE}-phone.cfg" in l.network.uploads
    assert polycom_cfg.parse_config(l.network.uploads[f"over/{BARE}-phone.cfg"]) == {}
    l.network.uploads.clear()
    l.driver.deliver(CheckSync())
    l.advance(5)
    assert f"over/{BARE}-phone.cfg" not in l.network.uploads  # it exists now: not created again
    assert f"{BARE}-app.log" in l.network.uploads


def test_refused_upload_is_noted_and_not_a_failure():
    l = lab({"000000000000.cfg": master("a.cfg"), "a.cfg": cfg(x=1)})
    l.network.accept_uploads = False
    phone = l.boot()
    assert phone.state == "ready" and len(puts(l)) == 2
    assert any(s.startswith(f"upload of {BARE}-app.log failed") for s in l.steps())


def test_uploads_can_be_turned_off():
    l = lab({"000000000000.cfg": master("a.cfg"), "a.cfg": cfg(x=1)},
            profile=profile_for("polycom", {"upload_log": False, "upload_overrides": "never"}))
    l.boot()
    assert puts(l) == []


# --- polling and check-sync ------------------------------------------------------------------------


def polling(**settings):
    return cfg(prov__polling__enabled=1, **{f"prov__polling__{k}": v for k, v in settings.items()})


def pass_times(l) -> list[float]:
    return [t for t, state, _, kind in l.phone.events if kind == "state" and state == "provisioning"]


def test_polling_rel_mode_every_period_seconds():
    l = lab({"000000000000.cfg": master("a.cfg"), "a.cfg": polling(mode="rel", period=600)})
    l.boot()
    l.advance(1300)
    times = pass_times(l)
    assert len(times) == 3 and times[2] - times[1] == pytest.approx(600, abs=0.1)  # from the end of a pass


def test_polling_abs_mode_daily_at_the_polling_time():
    l = lab({"000000000000.cfg": master("a.cfg"), "a.cfg": polling(mode="abs", time="03:00")})
    l.boot()
    l.advance(2 * 86400)
    assert [round(t) for t in pass_times(l)[1:]] == [3 * 3600, 86400 + 3 * 3600]


def test_polling_random_mode_between_time_and_random_end():
    l = lab({"000000000000.cfg": master("a.cfg"), "a.cfg": polling(mode="random", time="01:00", timeRandomEnd="03:00")})
    l.boot()
    l.advance(86400)
    [second] = pass_times(l)[1:]
    assert 3600 <= second <= 3 * 3600


def test_the_polling_period_is_rounded_up_to_whole_days_in_abs_mode():
    # The UC Software guides: "rounded up to the nearest number of days in absolute and
    # random mode" (86401 is two days).
    l = lab({"000000000000.cfg": master("a.cfg"), "a.cfg": polling(mode="abs", time="03:00", period=86401)})
    l.boot()
    l.advance(5 * 86400)
    assert [round(t) for t in pass_times(l)[1:]] == [3 * 3600, 2 * 86400 + 3 * 3600, 4 * 86400 + 3 * 3600]


def random_poller(mac: str, seed: int = 1, period: int = 86400) -> PhoneLab:
    files = {"000000000000.cfg": master("a.cfg"),
             "a.cfg": polling(mode="random", time="01:00", timeRandomEnd="05:00", period=period)}
    return PhoneLab(polycom, model="VVX400", mac=mac, options=HTTP, files=files, seed=seed)


@pytest.mark.parametrize("seed", range(1, 4))
def test_random_polling_keeps_its_moment_until_a_reboot_draws_another(seed):
    # "The time within the start and end is calculated again with every reboot": the same
    # moment every day (drawn at each pass, it was another every day), another after a boot.
    l = random_poller(MAC, seed)
    l.boot()
    l.advance(4 * 86400)
    moments = [t % 86400 for t in pass_times(l)[1:]]
    assert len(moments) == 4 and 3600 <= moments[0] <= 5 * 3600
    assert max(moments) - min(moments) < 1.0, moments
    l.driver.deliver(PowerCycle())
    l.advance(3 * 86400)
    after = [t % 86400 for t in pass_times(l)[6:]]
    assert len(after) == 3 and max(after) - min(after) < 1.0 and abs(after[0] - moments[0]) > 1.0


def test_random_polling_over_several_days_polls_once_a_period_on_the_day_its_mac_gives():
    # A 3-day period: each phone polls once every 3 days, on the day of the period its MAC
    # determines, which "does not change with a reboot"; phones of other MACs on other days.
    days_of = {}
    for last in range(6):
        mac = f"00:04:f2:ab:cd:{last:02x}"
        l = random_poller(mac, period=3 * 86400)
        l.boot()
        l.advance(9 * 86400)
        l.driver.deliver(PowerCycle())
        l.advance(6 * 86400)
        boot_again = pass_times(l).index(next(t for t in pass_times(l) if t > 9 * 86400))
        polls = [t for i, t in enumerate(pass_times(l)) if i not in (0, boot_again)]
        days = [int(t // 86400) for t in polls]
        assert [b - a for a, b in zip(days, days[1:])] == [3] * (len(days) - 1) and len(days) == 5, (mac, polls)
        assert all(3600 <= t % 86400 <= 5 * 3600 for t in polls)
        days_of[mac] = days[0] % 3
    assert sorted(set(days_of.values())) == [0, 1, 2]  # the MACs spread the fleet over the period


def test_no_polling_means_no_timer():
    l = lab({"000000000000.cfg": master("a.cfg"), "a.cfg": cfg(x=1)})
    l.boot()
    assert l.pending_calls() == []


def test_check_sync_restarts_only_when_the_configuration_changed():
    files = {"000000000000.cfg": master("a.cfg"), "a.cfg": cfg(x=1)}
    l = lab(files)
    phone = l.boot()
    l.driver.deliver(CheckSync())
    l.advance(5)
    assert phone.reboots == 0 and phone.state == "ready"
    l.files["a.cfg"] = cfg(x=2)
    l.driver.deliver(CheckSync())
    l.advance(10)
    assert phone.reboots == 1 and phone.state == "ready" and phone.flash.settings == {"x": "2"}


def test_check_sync_always_reboot_setting():
    files = {"000000000000.cfg": master("a.cfg"), "a.cfg": cfg(voIpProt__SIP__specialEvent__checkSync__alwaysReboot=1)}
    l = lab(files)
    phone = l.boot()
    l.driver.deliver(CheckSync())
    l.advance(10)
    assert phone.reboots == 1 and phone.state == "ready"


# --- codecs ----------------------------------------------------------------------------------------


def test_config_parameters_are_attributes_at_any_depth():
    body = b'<polycomConfig><reg reg.1.address="1001"><deep reg.1.label="L"/></reg><x a.b="1" a.b.c=""/></polycomConfig>'
    assert polycom_cfg.parse_config(body) == {"reg.1.address": "1001", "reg.1.label": "L", "a.b": "1", "a.b.c": ""}


text = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=40)


@given(model=text, part=text, version=text)
def test_vendor_class_round_trips(model, part, version):
    [(enterprise, subs)] = polycom_cfg.decode_vendor_class(polycom_cfg.vendor_class(model, part, version))
    assert enterprise == 13885 and subs == {1: b"Polycom", 2: model.encode(), 3: part.encode(), 4: version.encode()}


@given(st.dictionaries(st.from_regex(r"[a-z][a-zA-Z0-9]{0,8}(\.[a-zA-Z0-9]{1,8}){0,3}", fullmatch=True), text,
                       max_size=8))
def test_render_and_parse_config_round_trip(settings):
    assert polycom_cfg.parse_config(polycom_cfg.render_config(settings)) == settings


def test_behaviour_choices_are_checked():
    with pytest.raises(ValueError, match="boot_server_mode"):
        profile_for("polycom", {"boot_server_mode": "option66"})
    with pytest.raises(ValueError, match="unknown polycom behaviour"):
        profile_for("polycom", {"no_such": 1})


@pytest.mark.parametrize("gmt_offset, hour_utc", [("-18000", 8), ("3600", 2), ("19800", 21.5), ("0", 3), ("", 3),
                                                  ("x", 3)])
def test_polling_time_is_kept_in_the_phones_time_zone(gmt_offset, hour_utc):
    # prov.polling.time 03:00 is local time: tcpIpApp.sntp.gmtOffset (seconds east of UTC)
    # moves it on the lab's clock; none, or one that is not a number, keeps the factory 0
    # (in January: no summer time yet).
    zone = {"tcpIpApp__sntp__gmtOffset": gmt_offset} if gmt_offset else {}
    l = lab({"000000000000.cfg": master("a.cfg"),
             "a.cfg": cfg(prov__polling__enabled=1, prov__polling__mode="abs", prov__polling__time="03:00", **zone)})
    l.boot()
    l.advance(2 * 86400)
    later = [round(t) for t in pass_times(l)[1:]]
    first = round(hour_utc * 3600) % 86400
    assert later == [first, first + 86400], later


# --- summer time ------------------------------------------------------------------------------------

BEFORE_US_SPRING = 62 * 86400.0  # Saturday 2026-03-07 00:00 UTC: 62 days after the calendar's origin


@pytest.mark.parametrize("summer, sunday_utc", [
    ({}, 7),  # the factory rule: the second Sunday of March (on or after the 8th), 02:00
    ({"tcpIpApp__sntp__daylightSavings__enable": "0"}, 8),
    ({"tcpIpApp__sntp__daylightSavings__start__date": "15"}, 8),  # the third Sunday: not yet
    ({"tcpIpApp__sntp__daylightSavings__fixedDayEnable": "1", "tcpIpApp__sntp__daylightSavings__start__date": "8"}, 7),
    ({"tcpIpApp__sntp__daylightSavings__start__dayOfWeek__lastInMonth": "1"}, 8),  # the last Sunday of March
])
def test_polling_time_follows_summer_time(summer, sunday_utc):
    # prov.polling.time 03:00 local at gmtOffset -18000 (UTC-5) from Saturday 2026-03-07:
    # Saturday at 08:00 UTC, Sunday 8 March at 07:00 UTC once summer time has started.
    profile = profile_for("polycom", {"clock_start_s": BEFORE_US_SPRING})
    l = lab({"000000000000.cfg": master("a.cfg"),
             "a.cfg": cfg(prov__polling__enabled=1, prov__polling__mode="abs", prov__polling__time="03:00",
                          tcpIpApp__sntp__gmtOffset="-18000", **summer)}, profile=profile)
    l.boot()
    l.advance(2 * 86400)
    later = [t for t, state, _, kind in l.phone.events if kind == "state" and state == "provisioning"][1:]
    assert [round(t) for t in later] == [8 * 3600, 86400 + sunday_utc * 3600]


def settings_phone(settings: dict, option_2: bytes | None = None) -> SimpleNamespace:
    lease = SimpleNamespace(options={2: option_2}) if option_2 is not None else None
    return SimpleNamespace(flash=SimpleNamespace(settings=settings), lease=lease)


def test_the_factory_offset_is_utc_with_the_united_states_summer_time():
    # No gmtOffset, or one that is not a number: the factory 0, and the factory summer
    # time (on, the United States' rule) with it: such a phone's clock is UTC+1 from March
    # to November.
    for settings in ({}, {"tcpIpApp.sntp.gmtOffset": "x"}, {"tcpIpApp.sntp.gmtOffset": "0"}):
        zone = polycom.phone_zone(settings_phone(settings))
        assert zone.standard_s == 0 and zone.has_summer_time and zone.offset_at(180 * 86400) == 3600
    assert not polycom.phone_zone(settings_phone({"tcpIpApp.sntp.gmtOffset": "0",
                                                  "tcpIpApp.sntp.daylightSavings.start.month": "13"})).has_summer_time


MINUS_2 = (-7200).to_bytes(4, "big", signed=True)


@pytest.mark.parametrize("settings, option_2, hour_utc, clock", [
    # overrideDHCP 0, the factory value: the DHCP server's option 2 (-2) stands for gmtOffset
    ({}, MINUS_2, 5, "clock -2 from DHCP option 2 (tcpIpApp.sntp.gmtOffset.overrideDHCP 0): summer time +60 min"),
    ({"tcpIpApp__sntp__gmtOffset__overrideDHCP": "1"}, MINUS_2, 8, "clock -18000: summer time +60 min"),
    ({}, None, 8, "clock -18000: summer time +60 min"),
    ({"tcpIpApp__sntp__gmtOffset": None}, None, 3,
     "clock 0, the factory zone (tcpIpApp.sntp.gmtOffset not set): summer time +60 min"),
])
def test_option_2_stands_for_gmt_offset_unless_the_configured_one_overrides_it(settings, option_2, hour_utc, clock):
    # prov.polling.time 03:00 local; gmtOffset -18000 (UTC-5) unless the case takes it out.
    values = {"prov__polling__enabled": 1, "prov__polling__mode": "abs", "prov__polling__time": "03:00",
              "tcpIpApp__sntp__gmtOffset": "-18000", **settings}
    options = dict(HTTP)
    if option_2 is not None:
        options[2] = option_2
    l = lab({"000000000000.cfg": master("a.cfg"),
             "a.cfg": cfg(**{key: value for key, value in values.items() if value is not None})}, options=options)
    l.boot()
    l.advance(2 * 86400)
    assert [round(t) for t in pass_times(l)[1:]] == [hour_utc * 3600, 86400 + hour_utc * 3600]
    assert clock in [text for _, _, text, _ in l.phone.events]

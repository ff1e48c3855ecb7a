"""Snom rules from spec/phones.md ("Breadth profiles") and Snom's provisioning wiki, one
test each (fake clock, in-memory network, no sockets). docs/phones-snom.md maps each rule
to its test."""

import pytest

from labsim.phones import snom
from labsim.phones.events import CheckSync
from labsim.phones.flash import Flash
from labsim.phones.vendors import profile_for
from labsim.services.pnp import PnpResponder, PnpResponderConfig
from labsim.transport.driver import PhoneDriver
from labsim.wire import dhcp, snom_cfg
from tests.phonelab import PhoneLab

MAC = "00:04:13:ab:cd:ef"
MACU, MACL = "000413ABCDEF", "000413abcdef"
HTTP = {66: b"http://127.0.0.1:8080/", 67: b"snom.xml"}
RUNNING = "10.1.33.33"


def xml(setting_files=(), perm="RW", **settings) -> bytes:
    return snom_cfg.render_xml({key: str(value) for key, value in settings.items()}, perm=perm,
                               setting_files=tuple(setting_files))


def lab(files, *, options=HTTP, model="D785", settings=None, profile=snom, pnp_url=None, **kw):
    flash = Flash(firmware=snom.default_firmware(model), settings=dict(settings or {}))
    l = PhoneLab(profile, model=model, mac=MAC, options=options, files=files, flash=flash, **kw)
    if pnp_url is not None:  # a PnP responder on the in-memory network, as test_pnp_phone does
        l.network.pnp_responder = PnpResponder(PnpResponderConfig(url=pnp_url, local=("127.0.0.1", 5070)))
        l.driver = PhoneDriver(l.phone, l.clock, l.network)
    return l


def option43(**subs) -> bytes:
    return dhcp.encode_tlvs([(int(code[1:]), value) for code, value in subs.items()])


def pass_times(l) -> list[float]:
    return [t for t, state, _, kind in l.phone.events if kind == "state" and state == "provisioning"]


def steps(l) -> list[str]:
    return [detail for _, _, detail, kind in l.phone.events if kind == "step"]


def subscribes(l):
    return [message for message, _to in l.network.sip_sent if message.method == "SUBSCRIBE"]


# --- identity ----------------------------------------------------------------------------------


def test_user_agent_option_60_and_parameter_request_list():
    l = lab({"snom.xml": xml(a=1)})
    l.boot()
    assert l.network.fetches[0].user_agent == "Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 1.1.4-IFX-05.01.12)"
    discover = l.network.dhcp_sent[0]
    assert discover.options[60] == b"snomD785" and {43, 66, 67} <= set(discover.options[55])
    assert snom.MAC_PREFIXES == ("00:04:13",)


def test_models_d7xx_d3xx_7xx():
    assert set(snom.MODELS) == {"D717", "D735", "D785", "D315", "D345", "D385", "710", "715", "760"}
    l = lab({"snom.xml": xml(a=1)}, model="760")
    assert l.boot().state == "ready"
    assert l.network.fetches[0].user_agent.startswith("Mozilla/4.0 (compatible; snom760-SIP 8.9.3.80 ")


# --- where the setting URL comes from -----------------------------------------------------------------


def test_option_43_sub_options_66_67_win_over_plain_66_67():
    options = {43: option43(o66=b"http://127.0.0.43:8080/p", o67=b"s43.xml"), **HTTP}
    l = lab({"p/s43.xml": xml(a=1)}, options=options)
    phone = l.boot()
    assert l.urls() == ["http://127.0.0.43:8080/p/s43.xml"] and phone.state == "ready"
    assert "setting URL http://127.0.0.43:8080/p/s43.xml from DHCP option 43 (sub-options 66/67)" in l.steps()


def test_option_43_without_sub_option_66_leaves_plain_66_67_in_charge():
    l = lab({"snom.xml": xml(a=1)}, options={43: option43(o1=b"x"), **HTTP})
    l.boot()
    assert l.urls() == ["http://127.0.0.1:8080/snom.xml"]


@pytest.mark.parametrize("options, expected", [
    ({66: b"http://127.0.0.1:8080/prov", 67: b"/d/snom.xml"}, "http://127.0.0.1:8080/prov/d/snom.xml"),
    ({66: b"http://127.0.0.1:8080/prov/", 67: b"snom.php?mac={mac}"}, f"http://127.0.0.1:8080/prov/snom.php?mac={MACU}"),
    ({66: b"127.0.0.1", 67: b"snom.xml"}, "tftp://127.0.0.1/snom.xml"),
    ({67: b"http://127.0.0.1:8080/only67.xml"}, "http://127.0.0.1:8080/only67.xml"),
])
def test_option_66_and_67_are_joined_into_the_setting_url(options, expected):
    l = lab({}, options=options)
    l.boot()
    assert l.urls()[0] == expected


def test_option_66_alone_names_a_folder_the_phone_asks_for_its_model_htm():
    l = lab({"snomD785.htm": snom_cfg.render_text({"a": "1"})}, options={66: b"127.0.0.1"})
    phone = l.boot()
    assert l.urls() == ["tftp://127.0.0.1/snomD785.htm"] and phone.state == "ready"


def test_pnp_is_asked_when_dhcp_gives_no_server():
    l = lab({"pnp/snomD785.htm": xml(source="pnp")}, options={}, pnp_url="http://127.0.0.1:8080/pnp/")
    phone = l.boot()
    assert phone.state == "ready" and phone.flash.settings["source"] == "pnp"
    [subscribe] = subscribes(l)
    event = subscribe.header("Event")
    assert 'vendor="snom"' in event and 'model="snomD785"' in event and f'version="{RUNNING}"' in event
    assert "setting URL http://127.0.0.1:8080/pnp/snomD785.htm from SIP PnP" in l.steps()


def test_dhcp_wins_over_pnp_and_pnp_is_then_not_asked():
    l = lab({"snom.xml": xml(source="dhcp")}, pnp_url="http://127.0.0.1:8080/pnp/")
    phone = l.boot()
    assert phone.flash.settings["source"] == "dhcp" and subscribes(l) == []


def test_pnp_config_off_skips_pnp():
    l = lab({"pnp/snomD785.htm": xml(a=1)}, options={}, settings={"pnp_config": "off"},
            pnp_url="http://127.0.0.1:8080/pnp/")
    phone = l.boot()
    assert subscribes(l) == [] and phone.state == "failed"


def test_pnp_answer_from_boot_serves_later_passes():
    l = lab({"pnp/snomD785.htm": xml(settings_refresh_timer=60)}, options={}, pnp_url="http://127.0.0.1:8080/pnp/")
    l.boot()
    l.advance(61)
    assert len(subscribes(l)) == 1 and l.urls() == ["http://127.0.0.1:8080/pnp/snomD785.htm"] * 2


def test_setting_server_in_flash_is_the_last_source():
    files = {"flash/snomD785.htm": xml(source="flash"), "snom.xml": xml(source="dhcp")}
    phone = lab(files, options={}, settings={"setting_server": "http://127.0.0.1:8080/flash/"}).boot()
    assert phone.state == "ready" and phone.flash.settings["source"] == "flash"
    phone = lab(files, settings={"setting_server": "http://127.0.0.1:8080/flash/"}).boot()
    assert phone.flash.settings["source"] == "dhcp"


def test_setting_server_from_a_file_is_used_when_dhcp_later_gives_none():
    l = lab({"snom.xml": xml(setting_server="http://127.0.0.1:8080/new/{mac}.xml"), f"new/{MACU}.xml": xml(z=1)})
    phone = l.boot()
    l.servers[0].reconfigure_options({})
    l.driver.deliver(CheckSync(reboot=True))
    l.run()
    assert l.urls()[-1] == f"http://127.0.0.1:8080/new/{MACU}.xml" and phone.flash.settings["z"] == "1"


def test_no_source_fails_and_the_redirection_service_is_not_contacted():
    l = lab({}, options={})
    phone = l.boot()
    assert phone.state == "failed" and "redirection service is not contacted" in phone.failure
    assert l.network.fetches == []


# --- URL macros ---------------------------------------------------------------------------------------


def test_mac_macro_is_uppercase_and_model_macro_is_snom_model():
    options = {66: b"http://127.0.0.1:8080/{model}/", 67: b"{mac}.xml"}
    l = lab({f"snomD785/{MACU}.xml": xml(a=1)}, options=options)
    assert l.boot().state == "ready" and l.urls() == [f"http://127.0.0.1:8080/snomD785/{MACU}.xml"]
    l = lab({}, options=options, profile=profile_for("snom", {"mac_uppercase": False}))
    l.boot()
    assert l.urls() == [f"http://127.0.0.1:8080/snomD785/{MACL}.xml"]
    assert snom_cfg.expand_macros("{mac}/{unknown}", {"mac": MACU}) == f"{MACU}/{{unknown}}"


def test_credentials_in_the_url_travel_separately():
    l = lab({"snom.xml": xml(a=1)}, options={66: b"http://prov:s3cret@127.0.0.1:8080/", 67: b"snom.xml"})
    l.boot()
    request = l.network.fetches[0]
    assert request.url == "http://127.0.0.1:8080/snom.xml"
    assert (request.credentials.user, request.credentials.password) == ("prov", "s3cret")


def test_unsupported_scheme_fails_the_pass():
    phone = lab({}, options={66: b"gopher://127.0.0.1/"}).boot()
    assert phone.state == "failed" and "not a tftp, ftp, http or https URL" in phone.failure


# --- settings files ---------------------------------------------------------------------------------------


def test_xml_settings_idx_and_perm():
    body = (b'<?xml version="1.0" encoding="utf-8"?><settings><phone-settings e="2">'
            b'<language perm="RW">English</language><user_name idx="1" perm="R">1001</user_name>'
            b'<user_host idx="1" perm="">127.0.0.1</user_host><plain>v</plain></phone-settings>'
            b'<functionKeys><fkey idx="0" context="active" perm="R">line</fkey></functionKeys>'
            b'<tbook><item context="active" type="none" index="0"><name>x</name></item></tbook>'
            b'<setting-files><file url="http://h/a.xml"/><file url="http://h/b.xml"/></setting-files></settings>')
    parsed = snom_cfg.parse(body)
    assert [(s.name, s.value, s.perm) for s in parsed.settings] == [
        ("language", "English", "RW"), ("user_name1", "1001", "R"), ("user_host1", "127.0.0.1", None),
        ("plain", "v", None), ("fkey0", "line", "R")]
    assert parsed.setting_files == ["http://h/a.xml", "http://h/b.xml"] and parsed.form == "xml"


def test_text_form_flags_record_perm_and_apply_value():
    body = b"<html><pre>\n# comment\nlanguage$: English\nuser_name1!: 1001\nuser_realname1: Lab Phone 1\nempty:\n</pre></html>\n"
    parsed = snom_cfg.parse(body)
    assert [(s.name, s.value, s.perm) for s in parsed.settings] == [
        ("language", "English", "RW"), ("user_name1", "1001", "R"), ("user_realname1", "Lab Phone 1", None),
        ("empty", "", None)]
    phone = lab({"snom.xml": body}).boot()
    settings = phone.flash.settings
    assert settings["user_name1"] == "1001" and settings["user_name1#perm"] == "R"
    assert settings["language#perm"] == "RW" and "user_realname1#perm" not in settings


@pytest.mark.parametrize("body", [b"<settings><phone-settings><a>1</phone-settings>", b"\xff\xfe\x00binary",
                                  b"<html><body>Welcome</body></html>\nnot a setting line", b"<foo/>", b""])
def test_unreadable_settings_file_fails_the_pass(body):
    with pytest.raises(snom_cfg.NotASnomSettingsFile):
        snom_cfg.parse(body)
    phone = lab({"snom.xml": body}).boot()
    assert phone.state == "failed" and "snom.xml" in phone.failure


def test_missing_main_file_fails_the_pass():
    phone = lab({}).boot()
    assert phone.state == "failed" and "http://127.0.0.1:8080/snom.xml: not_found" in phone.failure


def test_setting_files_are_read_in_order_and_later_files_override():
    files = {
        "snom.xml": xml(["http://127.0.0.1:8080/a.xml", "b.xml"], x="main", m=1),
        "a.xml": xml(["/{mac}.xml"], x="a", a=1),
        f"{MACU}.xml": xml(x="mac", c=1),
        "b.xml": snom_cfg.render_text({"x": "b", "b": "1"}),
    }
    l = lab(files)
    phone = l.boot()
    assert [u.rsplit("/", 1)[1] for u in l.urls()] == ["snom.xml", "a.xml", f"{MACU}.xml", "b.xml"]
    assert phone.flash.settings["x"] == "b" and {"m", "a", "c", "b"} <= set(phone.flash.settings)
    assert set(phone.flash.file_md5) == {"snom.xml", "a.xml", f"{MACU}.xml", "b.xml"}


def test_setting_files_nesting_is_depth_limited_and_a_loop_is_read_once():
    chain = {f"f{n}.xml": xml([f"f{n + 1}.xml"], **{f"k{n}": n}) for n in range(10)}
    chain["snom.xml"] = xml(["f0.xml", "snom.xml"])
    l = lab(chain)
    phone = l.boot()
    assert l.urls().count("http://127.0.0.1:8080/snom.xml") == 1
    assert "k3" in phone.flash.settings and "k4" not in phone.flash.settings  # f0 is depth 1 ... f3 depth 4
    assert any("nest deeper than 4" in step for step in l.steps())
    l = lab(chain, profile=profile_for("snom", {"max_chain_depth": 1}))
    assert "k0" in l.boot().flash.settings and "k1" not in l.phone.flash.settings


def test_missing_chained_file_is_skipped_unless_the_setting_says_fail():
    files = {"snom.xml": xml(["gone.xml", "there.xml"], a=1), "there.xml": xml(b=1)}
    phone = lab(files).boot()
    assert phone.state == "ready" and phone.flash.settings["b"] == "1"
    phone = lab(files, profile=profile_for("snom", {"chained_failure_fails": True})).boot()
    assert phone.state == "failed" and "gone.xml: not_found" in phone.failure


def test_settings_are_sticky_until_a_file_changes_them():
    l = lab({"snom.xml": xml(a=1, b=1)})
    phone = l.boot()
    l.files["snom.xml"] = xml(b=2)
    l.driver.deliver(CheckSync())
    l.advance(1)
    assert phone.flash.settings["a"] == "1" and phone.flash.settings["b"] == "2"


# --- applying and rebooting ----------------------------------------------------------------------------------


def test_network_setting_change_reboots_once_other_changes_do_not():
    l = lab({"snom.xml": xml(vlan_id=100, user_name1=1001)})
    phone = l.boot()
    assert phone.reboots == 1 and phone.state == "ready"
    assert l.states() == ["booting", "dhcp", "provisioning", "rebooting", "dhcp", "provisioning", "ready"]
    phone = lab({"snom.xml": xml(user_name1=1001, language="Deutsch")}).boot()
    assert phone.reboots == 0 and phone.state == "ready"


def test_check_sync_resyncs_and_reboot_true_reboots():
    l = lab({"snom.xml": xml(a=1)})
    phone = l.boot()
    l.files["snom.xml"] = xml(a=2)
    l.driver.deliver(CheckSync())
    l.advance(1)
    assert phone.flash.settings["a"] == "2" and phone.reboots == 0
    l.driver.deliver(CheckSync(reboot=True))
    l.run()
    assert phone.reboots == 1 and phone.state == "ready"


# --- firmware --------------------------------------------------------------------------------------------------

IMAGE = "fw/snomD785-10.1.54.13-SIP-r.bin"


def test_firmware_status_names_another_version_flash_and_reboot_once():
    files = {"snom.xml": xml(firmware_status="http://127.0.0.1:8080/fw/{model}-status.txt"),
             "fw/snomD785-status.txt": snom_cfg.render_text({"firmware": "snomD785-10.1.54.13-SIP-r.bin"}),
             IMAGE: b"\0" * 512}
    l = lab(files)
    phone = l.boot()
    assert phone.flash.firmware == "10.1.54.13" and phone.reboots == 1 and phone.state == "ready"
    assert l.urls(".bin") == [f"http://127.0.0.1:8080/{IMAGE}"]  # once: then it is running
    assert "snomD785-SIP 10.1.54.13 " in l.network.fetches[-1].user_agent


def test_firmware_setting_naming_the_running_version_is_not_downloaded():
    l = lab({"snom.xml": xml(firmware=f"http://127.0.0.1:8080/fw/snomD785-{RUNNING}-SIP-r.bin")})
    phone = l.boot()
    assert l.urls(".bin") == [] and phone.reboots == 0


@pytest.mark.parametrize("policy", ["settings_only", "never_update_firm", "ask_for_update"])
def test_update_policy_that_forbids_updates_keeps_the_firmware(policy):
    l = lab({"snom.xml": xml(firmware=f"http://127.0.0.1:8080/{IMAGE}", update_policy=policy), IMAGE: b"img"})
    phone = l.boot()
    assert l.urls(".bin") == [] and phone.flash.firmware == RUNNING and phone.reboots == 0


def test_missing_firmware_image_keeps_the_running_version():
    phone = lab({"snom.xml": xml(firmware=f"http://127.0.0.1:8080/{IMAGE}")}).boot()
    assert phone.state == "ready" and phone.flash.firmware == RUNNING and phone.reboots == 0


@pytest.mark.parametrize("name, version", [
    ("http://h/fw/snomD785-10.1.54.13-SIP-r.bin", "10.1.54.13"), ("snom760-8.9.3.80-SIP-r.bin", "8.9.3.80"),
    ("tftp://h/snomD345-10.1.46.16.bin", "10.1.46.16"), ("custom.bin", "custom.bin"),
])
def test_image_version_from_its_name(name, version):
    assert snom_cfg.image_version(name) == version


# --- when the phone provisions again -----------------------------------------------------------------------------


def test_back_off_after_failures_random_3_to_6_s_doubling_capped_at_3600():
    for seed in (1, 2, 3):
        l = lab({}, seed=seed)
        l.boot()
        l.advance(6 * 3600)
        times = pass_times(l)
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert len(gaps) >= 12
        for n, gap in enumerate(gaps):
            low, high = min(3 * 2 ** n, 3600), min(6 * 2 ** n, 3600)
            assert low <= gap <= high + 0.01, (n, gap)
        assert gaps[-1] == pytest.approx(3600, abs=0.01)
    firsts = [snom.retry_delay_s(lab({}, seed=seed).phone, 0) for seed in range(50)]
    assert min(firsts) < 3.5 and max(firsts) > 5.5  # random over the whole 3-6 s


def test_back_off_counts_failures_the_phone_no_longer_keeps_in_its_events():
    """A long run keeps a phone's first and last events only (EventLog trims the middle):
    the back-off still counts every failure since the last good pass or restart."""
    from labsim.observe.events_log import EventLog

    l = lab({})
    l.phone.journal = EventLog(keep_per_phone=4)
    l.boot()
    l.advance(6 * 3600)
    assert l.phone.events_dropped > 0 and len(l.phone.events) <= 6
    assert l.phone.failures_in_a_row >= 12
    delays = [float(detail.rsplit("retry in ", 1)[1].rstrip("s")) for _, state, detail, kind in l.phone.events
              if state == "failed" and kind == "state"]
    assert delays[-1] == pytest.approx(3600, abs=0.01)


def test_back_off_starts_again_after_a_good_pass_or_a_restart():
    l = lab({})
    phone = l.boot()
    l.advance(60)  # several failures: the back-off has grown
    l.files["snom.xml"] = xml(settings_refresh_timer=1000)
    l.advance(200)
    assert phone.state == "ready"
    l.files.pop("snom.xml")
    ready_at = [t for t, state, _, kind in phone.events if state == "ready"][-1]
    l.advance(1100)
    after = [t for t in pass_times(l) if t > ready_at]  # the refresh fails, then the retries
    assert after[0] - ready_at == pytest.approx(1000, abs=0.01)
    assert 3 <= after[1] - after[0] <= 6.01 and 6 <= after[2] - after[1] <= 12.01
    l.driver.deliver(CheckSync(reboot=True))  # a restart: the count is in RAM
    l.advance(30)
    booted_at = [t for t, state, _, kind in phone.events if state == "rebooting"][-1]
    after = [t for t in pass_times(l) if t > booted_at]
    assert 3 <= after[1] - after[0] <= 6.01


def test_settings_refresh_timer_resyncs_and_zero_is_off():
    l = lab({"snom.xml": xml(settings_refresh_timer=300)})
    l.boot()
    l.advance(601)
    times = pass_times(l)
    assert len(times) == 3 and times[2] - times[1] == pytest.approx(300, abs=0.01)
    l = lab({"snom.xml": xml(a=1)})
    l.boot()
    assert l.pending_calls() == []


def polling(**settings) -> bytes:
    return xml(prov_polling_enabled="on", **{f"prov_polling_{key}": value for key, value in settings.items()})


def test_provisioning_polling_rel_every_period_and_off_by_default():
    # Snom's wiki, "Provisioning Polling for desk phones": Relative, every Polling Period s.
    l = lab({"snom.xml": polling(mode="rel", period=600)})
    l.boot()
    l.advance(1300)
    times = pass_times(l)
    assert [round(b - a) for a, b in zip(times, times[1:])] == [600, 600]
    off = lab({"snom.xml": xml(prov_polling_mode="rel", prov_polling_period=600)})  # prov_polling_enabled: off
    off.boot()
    assert off.pending_calls() == []


def test_provisioning_polling_abs_every_day_at_the_polling_time():
    l = lab({"snom.xml": polling(mode="abs", time="09:00")})
    l.boot()
    l.advance(3 * 86400)
    assert [round(t) for t in pass_times(l)[1:]] == [9 * 3600 + day * 86400 for day in range(3)]


def test_provisioning_polling_random_under_a_day_at_random_intervals_within_the_period():
    # "at any interval within the Polling Period randomly"; the polling times are ignored.
    l = lab({"snom.xml": polling(mode="random", period=3600, time="09:00", time_rand_end="09:10")})
    l.boot()
    l.advance(12 * 3600)
    gaps = [b - a for a, b in zip(pass_times(l), pass_times(l)[1:])]
    assert len(gaps) >= 12 and all(0 <= gap <= 3600.1 for gap in gaps) and len({round(g) for g in gaps}) > 5


@pytest.mark.parametrize("seed", range(1, 4))
def test_provisioning_polling_random_over_days_from_the_next_day_between_the_times(seed):
    # The wiki's example 2: 259200 s is every 3 days, "starting the next day after the
    # setting was changed", at a random time between 09:00 and 09:10.
    l = lab({"snom.xml": polling(mode="random", period=259200, time="09:00", time_rand_end="09:10")}, seed=seed)
    l.boot()  # day 0, just after midnight: the first poll is on day 1, not day 0's 09:00
    l.advance(8 * 86400)
    polls = pass_times(l)[1:]
    assert [int(t // 86400) for t in polls] == [1, 4, 7]
    assert all(9 * 3600 <= t % 86400 <= 9 * 3600 + 600 for t in polls)
    assert len({round(t % 86400) for t in polls}) > 1  # drawn for each poll


def test_the_sooner_of_settings_refresh_timer_and_the_polling_wins():
    l = lab({"snom.xml": xml(prov_polling_enabled="on", prov_polling_mode="rel", prov_polling_period=900,
                             settings_refresh_timer=600)})
    l.boot()
    l.advance(1300)
    times = pass_times(l)
    assert [round(b - a) for a, b in zip(times, times[1:])] == [600, 600]


def test_behaviour_knobs_are_checked():
    with pytest.raises(ValueError, match="unknown snom behaviour"):
        profile_for("snom", {"no_such": 1})


@pytest.mark.parametrize("zone, utc_hour", [("GER+1", 8), ("ITA+1", 8), ("USA-5", 14), ("IND+5:30", 3.5), ("GBR-0", 9)])
def test_provisioning_polling_times_are_the_phones_own_clock_moved_by_its_timezone(zone, utc_hour):
    # Snom's configuration file examples: <timezone>GER+1</timezone>, a region and hours east
    # of UTC. 09:00 on a GER+1 phone is 08:00 on the lab's clock (UTC; January: no summer time).
    l = lab({"snom.xml": xml(timezone=zone, prov_polling_enabled="on", prov_polling_mode="abs",
                             prov_polling_time="09:00")})
    l.boot()
    l.advance(3 * 86400)
    polls = pass_times(l)[1:]
    assert len(polls) == 3 and all(round(t % 86400) == round(utc_hour * 3600) for t in polls), polls
    assert any(step.startswith(f"clock {zone} (UTC") for step in steps(l))


def test_random_polling_over_days_counts_the_days_of_the_phones_own_clock():
    # JPN+9: the lab's Sunday 00:00 (the boot) is 09:00 on the phone's Sunday, so its "next
    # day" starts at 15:00 on the lab's Sunday, and its 02:00-02:10 window is 17:00-17:10 of
    # the lab's days 0, 3 and 6 (on the lab's own clock it would be days 1, 4 and 7).
    l = lab({"snom.xml": xml(timezone="JPN+9", prov_polling_enabled="on", prov_polling_mode="random",
                             prov_polling_period=259200, prov_polling_time="02:00",
                             prov_polling_time_rand_end="02:10")})
    l.boot()
    l.advance(8 * 86400)
    polls = pass_times(l)[1:]
    assert [int(t // 86400) for t in polls] == [0, 3, 6]
    assert all(17 * 3600 <= t % 86400 <= 17 * 3600 + 600 for t in polls), polls


@pytest.mark.parametrize("zone", ["", "Berlin", "GER+25", "+1"])
def test_a_timezone_that_is_no_zone_keeps_the_labs_clock_and_says_so(zone):
    l = lab({"snom.xml": xml(timezone=zone, prov_polling_enabled="on", prov_polling_mode="abs",
                             prov_polling_time="09:00")})
    l.boot()
    l.advance(2 * 86400)
    assert [round(t % 86400) for t in pass_times(l)[1:]] == [9 * 3600, 9 * 3600]
    assert any(step.startswith("clock UTC, the lab's (timezone") for step in steps(l))

"""Grandstream rules from spec/phones.md ("Breadth profiles") and the admin guides, one
test each (fake clock, in-memory network, no sockets). docs/phones-grandstream.md maps
each rule to its test."""

import pytest

from labsim.phones import grandstream
from labsim.phones.events import CheckSync
from labsim.phones.flash import Flash
from labsim.phones.vendors import profile_for
from labsim.wire import grandstream_cfg
from tests.phonelab import PhoneLab

MAC = "00:0b:82:ab:cd:ef"
BARE = "000b82abcdef"
HTTP = {66: b"http://127.0.0.1:8080/"}
RUNNING = "1.0.11.3"  # GXP2170's default firmware


def gs(mac=None, version="1", **values) -> bytes:
    return grandstream_cfg.render_provision({key: str(value) for key, value in values.items()}, mac=mac,
                                            config_version=version)


def lab(files, *, options=HTTP, model="GXP2170", settings=None, firmware=None, profile=grandstream, **kw):
    flash = Flash(firmware=firmware or grandstream.default_firmware(model), settings=dict(settings or {}))
    return PhoneLab(profile, model=model, mac=MAC, options=options, files=files, flash=flash, **kw)


def names(l) -> list[str]:
    return [url.rsplit("/", 1)[1] for url in l.urls()]


def pass_times(l) -> list[float]:
    return [t for t, state, _, kind in l.phone.events if kind == "state" and state == "provisioning"]


def timers(l) -> list[float]:
    return [call.getTime() - l.clock.seconds() for call in l.pending_calls()]


ALL_NAMES = [f"cfg{BARE}", f"cfg{BARE}.xml", "cfggxp2170.xml", "cfg.xml"]


# --- identity --------------------------------------------------------------------------------------


def test_user_agent_and_dhcp_identity():
    l = lab({"cfg.xml": gs(P1=1)})
    l.boot()
    assert l.network.fetches[0].user_agent == f"Grandstream Model HW GXP2170 SW {RUNNING} DevId {BARE}"
    discover = l.network.dhcp_sent[0]
    assert discover.options[60] == b"Grandstream GXP2170" and discover.options[12] == b"GXP2170"
    assert {43, 66} <= set(discover.options[55])


def test_p148_and_p146_set_option_60_and_12_from_the_next_boot():
    l = lab({"cfg.xml": gs(P148="lab-class", P146="desk-7")})
    l.boot()
    assert l.network.dhcp_sent[0].options[60] == b"Grandstream GXP2170"
    assert l.network.dhcp_sent[-1].options[60] == b"lab-class" and l.network.dhcp_sent[-1].options[12] == b"desk-7"


def test_models_and_mac_prefixes():
    assert {"GXP1625", "GXP2170", "GRP2614", "GXV3275"} <= set(grandstream.MODELS)
    assert grandstream.MAC_PREFIXES == ("00:0b:82", "c0:74:ad", "ec:74:d7")


# --- the config server --------------------------------------------------------------------------------


def test_option_66_url_is_the_config_server():
    l = lab({"gs/cfg.xml": gs(P1=1)}, options={66: b"http://127.0.0.1:8080/gs"})
    phone = l.boot()
    assert l.urls()[0] == f"http://127.0.0.1:8080/gs/cfg{BARE}" and phone.state == "ready"
    assert phone.flash.settings["P1"] == "1"


@pytest.mark.parametrize("via, scheme", [("0", "tftp"), ("1", "http"), ("2", "https"), ("3", "ftp")])
def test_bare_host_with_path_uses_the_p212_protocol(via, scheme):
    l = lab({}, options={66: b"127.0.0.1:8080/prov"}, settings={"P212": via})
    l.boot()
    assert l.urls()[0] == f"{scheme}://127.0.0.1:8080/prov/cfg{BARE}"


def test_factory_p212_is_https():
    l = lab({}, options={66: b"127.0.0.1"})
    l.boot()
    assert l.urls()[0] == f"https://127.0.0.1/cfg{BARE}"


def test_p212_4_ftps_is_not_simulated_a_recorded_failure():
    l = lab({}, options={66: b"127.0.0.1"}, settings={"P212": "4"})
    phone = l.boot()
    assert phone.state == "failed" and "FTPS" in phone.failure and l.urls() == []


def test_without_option_66_the_phone_uses_p237():
    l = lab({"p/cfg.xml": gs(P1=1)}, options={}, settings={"P237": "127.0.0.1:8080/p", "P212": "1"})
    phone = l.boot()
    assert l.urls()[0] == f"http://127.0.0.1:8080/p/cfg{BARE}" and phone.state == "ready"


def test_p145_0_ignores_option_66_for_p237():
    l = lab({"p/cfg.xml": gs(P1=1)}, settings={"P145": "0", "P237": "http://127.0.0.1:9090/p/"})
    l.boot()
    assert {url.split("/")[2] for url in l.urls()} == {"127.0.0.1:9090"}


def test_factory_p237_is_empty_no_server_no_request():
    phone = lab({"cfg.xml": gs(P1=1)}, options={}).boot()
    assert phone.state == "failed" and "P237 is empty" in phone.failure
    assert phone.flash.settings == {}


def test_option_43_only_when_the_setting_names_it_text_or_sub_option_66():
    files = {"a/cfg.xml": gs(P1=1), "b/cfg.xml": gs(P1=2)}
    plain = {43: b"http://127.0.0.1:8080/a/"}
    assert lab(files, options=plain).boot().state == "failed"  # the default reads 66 only
    with43 = profile_for("grandstream", {"dhcp_server_options": "43,66"})
    assert lab(files, options=plain, profile=with43).boot().flash.settings["P1"] == "1"
    url = b"http://127.0.0.1:8080/b/"
    tlvs = {43: bytes([1, 2, 0, 0, 66, len(url)]) + url + b"\xff", 66: b"http://127.0.0.1:8080/a/"}
    assert lab(files, options=tlvs, profile=with43).boot().flash.settings["P1"] == "2"


def test_http_credentials_from_p1360_p1361_or_the_url():
    l = lab({"cfg.xml": gs(P1=1)}, settings={"P1360": "prov", "P1361": "s3cret"})
    l.boot()
    assert (l.network.fetches[0].credentials.user, l.network.fetches[0].credentials.password) == ("prov", "s3cret")
    l = lab({"cfg.xml": gs(P1=1)}, options={66: b"http://u:p@127.0.0.1:8080/"})
    l.boot()
    request = l.network.fetches[0]
    assert request.url == f"http://127.0.0.1:8080/cfg{BARE}" and request.credentials.password == "p"


# --- which files, in which order ----------------------------------------------------------------------


def test_file_order_cfg_mac_then_cfg_mac_xml_then_model_lower_case_then_cfg_xml():
    l = lab({})
    phone = l.boot()
    assert names(l) == ALL_NAMES
    assert phone.state == "failed" and "no configuration file applied" in phone.failure


def test_every_file_found_is_applied_mac_values_win():
    files = {f"cfg{BARE}.xml": gs(P1="mac", P2="mac"), "cfggxp2170.xml": gs(P1="model", P3="model", P2="model"),
             "cfg.xml": gs(P1="all", P3="all", P4="all")}
    phone = lab(files).boot()
    assert phone.flash.settings == {"P1": "mac", "P2": "mac", "P3": "model", "P4": "all"}
    assert set(phone.flash.file_md5) == {f"cfg{BARE}.xml", "cfggxp2170.xml", "cfg.xml"}


def test_p8467_0_or_the_setting_stops_at_the_first_file_found():
    files = {"cfggxp2170.xml": gs(P1="model"), "cfg.xml": gs(P1="all", P4="all")}
    l = lab(files, settings={"P8467": "0"})
    phone = l.boot()
    assert names(l)[:3] == ALL_NAMES[:3] and "cfg.xml" not in names(l)
    assert phone.flash.settings == {"P8467": "0", "P1": "model"}
    l = lab(files, profile=profile_for("grandstream", {"process_all_files": False}))
    assert "P4" not in l.boot().flash.settings
    l = lab(files, settings={"P8467": "1"}, profile=profile_for("grandstream", {"process_all_files": False}))
    assert l.boot().flash.settings["P4"] == "all"  # P8467 in flash wins over the setting


def test_xml_served_as_cfg_mac_is_read_and_cfg_mac_xml_is_not_asked_for():
    l = lab({f"cfg{BARE}": gs(P1="legacy-name"), f"cfg{BARE}.xml": gs(P1="xml-name")})
    phone = l.boot()
    assert f"cfg{BARE}.xml" not in names(l) and phone.flash.settings["P1"] == "legacy-name"


def test_legacy_binary_cfg_mac_is_skipped_and_cfg_mac_xml_is_read():
    l = lab({f"cfg{BARE}": b"\x00\x01\x8f\xfe encrypted", f"cfg{BARE}.xml": gs(P1="xml")})
    phone = l.boot()
    assert names(l)[:2] == ALL_NAMES[:2] and phone.flash.settings["P1"] == "xml"
    assert f"cfg{BARE}" not in phone.flash.file_md5
    assert any("legacy binary" in step for step in l.steps())


def test_config_prefix_p234_and_postfix_p235_wrap_every_name():
    l = lab({}, settings={"P234": "gs_", "P235": ".txt"})
    l.boot()
    assert names(l) == [f"gs_{name}.txt" for name in ALL_NAMES]


def test_a_file_naming_another_mac_is_refused():
    files = {f"cfg{BARE}.xml": gs(mac="00:0b:82:00:00:01", P1="other"), "cfg.xml": gs(mac=MAC, P1="mine")}
    l = lab(files)
    phone = l.boot()
    assert phone.flash.settings["P1"] == "mine" and f"cfg{BARE}.xml" not in phone.flash.file_md5
    assert any("000b82000001 is not this phone" in step for step in l.steps())


def test_config_version_2_alias_items_are_read_by_their_names():
    phone = lab({"cfg.xml": gs(version="2", **{"account.1.enable": "Yes"})}).boot()
    assert phone.flash.settings["account.1.enable"] == "Yes"


@pytest.mark.parametrize("body", [b"<gs_provision><config version='1'><P1>1</config>",
                                  b"<flat-profile><P1>1</P1></flat-profile>",
                                  b"<gs_provision><P1>1</P1></gs_provision>",
                                  b"<gs_provision><config version='9'/></gs_provision>"])
def test_unreadable_files_are_refused_and_the_others_applied(body):
    l = lab({"cfggxp2170.xml": body, "cfg.xml": gs(P2=2)})
    phone = l.boot()
    assert phone.flash.settings == {"P2": "2"} and any("cfggxp2170.xml: refused" in s for s in l.steps())


def test_parse_version_1_reads_p_values_only_and_the_mac_in_any_spelling():
    body = (b'<?xml version="1.0"?><gs_provision version="1"><mac>00:0B:82:AB:CD:EF</mac>'
            b'<config version="1"><P271>1</P271><P270> Line 1 </P270><P3/><note>x</note></config></gs_provision>')
    config = grandstream_cfg.parse_provision(body)
    assert config.values == {"P271": "1", "P270": "Line 1", "P3": ""} and config.ignored == ("note",)
    assert config.is_for(MAC) and not config.is_for("00:0b:82:00:00:01")
    assert grandstream_cfg.parse_provision(gs(P1=1)).is_for("anything")


# --- applying and rebooting ------------------------------------------------------------------------


def test_changed_p_values_reboot_once_then_steady():
    l = lab({"cfg.xml": gs(P271=1)})
    phone = l.boot()
    assert phone.reboots == 1 and phone.state == "ready"
    assert l.states() == ["booting", "dhcp", "provisioning", "rebooting", "dhcp", "provisioning", "ready"]


def test_a_pass_that_changes_nothing_does_not_reboot():
    phone = lab({"cfg.xml": gs(P271=1)}, settings={"P271": "1"}).boot()
    assert phone.reboots == 0 and phone.state == "ready"


def test_reboot_on_change_setting_off_applies_without_reboot():
    phone = lab({"cfg.xml": gs(P271=1)}, profile=profile_for("grandstream", {"reboot_on_change": False})).boot()
    assert phone.reboots == 0 and phone.flash.settings["P271"] == "1"


def test_values_stay_until_a_file_changes_them():
    l = lab({"cfg.xml": gs(P1=1, P2=1)})
    phone = l.boot()
    l.files["cfg.xml"] = gs(P2=2)
    l.driver.deliver(CheckSync())
    l.run()
    assert phone.flash.settings["P1"] == "1" and phone.flash.settings["P2"] == "2" and phone.reboots == 2


# --- firmware -------------------------------------------------------------------------------------------


FW = {"P192": "http://127.0.0.1:8080/fw"}


def test_another_firmware_version_is_flashed_and_the_phone_reboots_once():
    files = {"cfg.xml": gs(**FW), "fw/gxp2170fw.bin": grandstream_cfg.render_image("1.0.11.79")}
    l = lab(files, settings=FW)
    phone = l.boot()
    assert phone.flash.firmware == "1.0.11.79" and phone.reboots == 1 and phone.state == "ready"
    assert names(l).count("gxp2170fw.bin") == 2  # checked at every pass (P238 0): the second finds it running
    assert l.network.fetches[-1].user_agent.endswith(f"SW 1.0.11.79 DevId {BARE}")


def test_the_running_version_is_not_flashed_and_a_missing_image_keeps_the_firmware():
    files = {"cfg.xml": gs(P1=1), "fw/gxp2170fw.bin": grandstream_cfg.render_image(RUNNING)}
    phone = lab(files, settings=dict(FW, P1="1")).boot()
    assert phone.reboots == 0 and phone.flash.firmware == RUNNING
    phone = lab({"cfg.xml": gs(P1=1)}, settings=dict(FW, P1="1")).boot()
    assert phone.reboots == 0 and phone.state == "ready" and phone.flash.firmware == RUNNING


def test_firmware_name_is_prefix_image_postfix_and_p192_bare_host_uses_p212():
    l = lab({}, model="GXP1625", settings={"P192": "127.0.0.1/fw", "P212": "0", "P232": "beta_", "P233": ".v2"})
    l.boot()
    assert l.urls(".v2") == ["tftp://127.0.0.1/fw/beta_gxp1600fw.bin.v2"]


def test_p238_2_never_checks_and_1_checks_only_when_prefix_or_postfix_changed():
    image = {"fw/gxp2170fw.bin": grandstream_cfg.render_image("1.0.11.79")}
    l = lab(dict(image, **{"cfg.xml": gs(P1=1)}), settings=dict(FW, P238="2", P1="1"))
    l.boot()
    assert l.urls(".bin") == []
    l = lab(dict(image, **{"cfg.xml": gs(P1=1)}), settings=dict(FW, P238="1", P1="1"))
    l.boot()
    assert l.urls(".bin") == []  # prefix and postfix as at the factory
    l.files["cfg.xml"] = gs(P1=1, P233=".new")
    l.files["fw/gxp2170fw.bin.new"] = grandstream_cfg.render_image("1.0.11.80")
    l.driver.deliver(CheckSync())
    l.run()
    assert l.urls(".bin.new") == ["http://127.0.0.1:8080/fw/gxp2170fw.bin.new"]  # once: then the pair is known
    assert l.phone.flash.firmware == "1.0.11.80"


def test_empty_p192_means_no_firmware_check():
    l = lab({"cfg.xml": gs(P1=1)}, settings={"P1": "1"})
    l.boot()
    assert l.urls(".bin") == [] and any("P192 is empty" in step for step in l.steps())


@pytest.mark.parametrize("body, version", [
    (grandstream_cfg.render_image("1.0.11.3"), "1.0.11.3"), (b"\x00hdr 1.0.7.13\x00 2.0.0.0", "1.0.7.13"),
    (b"no version here", None), (b"x" * 600 + b"1.2.3.4", None),
])
def test_image_version_is_the_first_dotted_quad_in_the_header(body, version):
    assert grandstream_cfg.image_version(body) == version


# --- when the phone provisions again ----------------------------------------------------------------------


def test_p194_0_no_automatic_check_at_the_factory():
    l = lab({"cfg.xml": gs(P1=1)}, settings={"P1": "1"})
    l.boot()
    assert timers(l) == []


def test_p194_1_every_p193_minutes():
    l = lab({"cfg.xml": gs(P1=1)}, settings={"P1": "1", "P194": "1", "P193": "30"})
    l.boot()
    l.advance(2 * 1800 + 1)
    times = pass_times(l)
    assert len(times) == 3 and times[2] - times[1] == pytest.approx(1800, abs=0.1)


def test_p194_2_daily_at_hour_p285():
    l = lab({"cfg.xml": gs(P1=1)}, settings={"P1": "1", "P194": "2", "P285": "3"})
    l.boot()
    l.advance(2 * 86400)
    assert [round(t) for t in pass_times(l)[1:]] == [3 * 3600, 86400 + 3 * 3600]


@pytest.mark.parametrize("zone, at_utc", [("EST5EDT,M3.2.0,M11.1.0", 8 * 3600), ("CET-1CEST,M3.5.0,M10.5.0/3", 2 * 3600),
                                          ("IST-5:30", 21 * 3600 + 1800), ("", 3 * 3600), ("auto", 3 * 3600),
                                          ("420", 3 * 3600)])  # old firmware's GMT-5 (minutes + 720): not read
def test_p285_is_an_hour_of_the_time_zone_in_p64(zone, at_utc):
    # Daily at 03:00 local: P64 (POSIX, hours west of UTC) moves it on the lab's clock (UTC).
    settings = {"P1": "1", "P194": "2", "P285": "3", **({"P64": zone} if zone else {})}
    l = lab({"cfg.xml": gs(P1=1)}, settings=settings)
    l.boot()
    l.advance(2 * 86400)
    assert [round(t) for t in pass_times(l)[1:]] == [at_utc, at_utc + 86400]


MINUS_2 = (-7200).to_bytes(4, "big", signed=True)


@pytest.mark.parametrize("values, option_2, at_utc, clock", [
    # P143 1, the factory value: the DHCP server's option 2 (-2) overrides P64, summer time and all
    ({}, MINUS_2, 5 * 3600, "clock -2 from DHCP option 2 (P143 1): no summer time"),
    ({"P143": "0"}, MINUS_2, 8 * 3600, "clock EST5EDT,M3.2.0,M11.1.0: summer time +60 min"),
    ({}, None, 8 * 3600, "clock EST5EDT,M3.2.0,M11.1.0: summer time +60 min"),
    ({"P64": "auto"}, None, 3 * 3600, "clock UTC, the lab's (P64 'auto' is no POSIX time zone): no summer time"),
    ({"P64": "customize", "P246": "<+0530>-5:30"}, None, 21 * 3600 + 1800, "clock <+0530>-5:30: no summer time"),
    ({"P64": "customize", "P246": "x"}, None, 3 * 3600, "clock UTC, the lab's (P246 'x' is no POSIX time zone): "
                                                       "no summer time"),
])
def test_dhcp_option_2_overrides_p64_with_p143_on(values, option_2, at_utc, clock):
    # Daily at 03:00 local, P64 New York's zone unless the case says otherwise.
    options = dict(HTTP)
    if option_2 is not None:
        options[2] = option_2
    l = lab({"cfg.xml": gs(**{"P194": "2", "P285": "3", "P64": "EST5EDT,M3.2.0,M11.1.0", **values})}, options=options)
    l.boot()
    l.advance(2 * 86400)
    assert [round(t) for t in pass_times(l) if t > 3600] == [at_utc, at_utc + 86400]
    assert clock in [text for _, _, text, _ in l.phone.events]


def test_p194_3_weekly_on_day_p286_at_hour_p285():
    behaviour = profile_for("grandstream", {"clock_start_s": 2 * 86400.0})  # the run starts on Tuesday 00:00
    l = lab({"cfg.xml": gs(P1=1)}, settings={"P1": "1", "P194": "3", "P285": "2", "P286": "1"}, profile=behaviour)
    l.boot()
    l.advance(14 * 86400)
    later = pass_times(l)[1:]
    assert [round(t) for t in later] == [6 * 86400 + 2 * 3600, 13 * 86400 + 2 * 3600]  # Mondays 02:00


def test_a_failed_pass_waits_for_the_same_schedule():
    l = lab({}, settings={"P194": "1", "P193": "5"})
    phone = l.boot()
    assert phone.state == "failed" and timers(l) == [pytest.approx(300)]
    l.files["cfg.xml"] = gs(P1=1)
    l.advance(301)
    l.run()
    assert phone.flash.settings["P1"] == "1"


def test_check_sync_resyncs_or_reboots_or_is_ignored_by_the_setting():
    l = lab({"cfg.xml": gs(P1=1)}, settings={"P1": "1"})
    phone = l.boot()
    l.driver.deliver(CheckSync())
    l.run()
    assert len(pass_times(l)) == 2 and phone.reboots == 0
    l.driver.deliver(CheckSync(reboot=True))
    l.run()
    assert phone.reboots == 1
    l = lab({"cfg.xml": gs(P1=1)}, settings={"P1": "1"}, profile=profile_for("grandstream", {"check_sync": "reboot"}))
    l.boot()
    l.driver.deliver(CheckSync())
    l.run()
    assert l.phone.reboots == 1
    l = lab({"cfg.xml": gs(P1=1)}, settings={"P1": "1"}, profile=profile_for("grandstream", {"check_sync": "ignore"}))
    l.boot()
    l.driver.deliver(CheckSync())
    l.run()
    assert len(pass_times(l)) == 1


def test_behaviour_knobs_are_checked():
    with pytest.raises(ValueError, match="unknown grandstream behaviour"):
        profile_for("grandstream", {"no_such": 1})
    with pytest.raises(ValueError, match="check_sync"):
        profile_for("grandstream", {"check_sync": "maybe"})
    with pytest.raises(ValueError, match="dhcp_server_options"):
        profile_for("grandstream", {"dhcp_server_options": "66,150"})


SPRING_WEEKEND = 83 * 86400.0  # Saturday 2026-03-28 00:00 UTC: 83 days after the calendar's origin


@pytest.mark.parametrize("settings, sunday_utc", [
    ({"P64": "CET-1CEST,M3.5.0,M10.5.0/3"}, 2),  # 04:00 CEST
    ({"P64": "customize", "P246": "CET-1CEST,M3.5.0,M10.5.0/3"}, 2),  # the self-defined zone
    ({"P64": "CET-1"}, 3),  # no summer time
    ({"P64": "CET-1CEST,M4.1.0,M10.5.0/3"}, 3),  # not until April
])
def test_p285_follows_the_summer_time_of_the_posix_zone(settings, sunday_utc):
    # Daily at 04:00 local from Saturday 2026-03-28: 03:00 UTC on Saturday, and on Sunday
    # an hour earlier once Europe's summer time has started at 02:00.
    profile = profile_for("grandstream", {"clock_start_s": SPRING_WEEKEND})
    l = lab({"cfg.xml": gs(P1=1)}, settings={"P1": "1", "P194": "2", "P285": "4", **settings}, profile=profile)
    l.boot()
    l.advance(2 * 86400)
    assert [round(t) for t in pass_times(l)[1:]] == [3 * 3600, 86400 + sunday_utc * 3600]

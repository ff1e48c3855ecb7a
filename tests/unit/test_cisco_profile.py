"""Cisco SPA/MPP rules from spec/phones.md ("Breadth profiles"), one test each (fake
clock, in-memory network, no sockets). docs/phones-cisco.md maps each rule to its test."""

import gzip
import hashlib
from datetime import datetime, timezone

import pytest
from twisted.internet import defer

from labsim.phones import cisco
from labsim.phones.events import CheckSync, FetchResult
from labsim.phones.flash import Flash
from labsim.phones.vendors import profile_for
from labsim.wire import cisco_cfg, cisco_crypt, dhcp
from tests.phonelab import PhoneLab

MAC = "00:0e:08:ab:cd:ef"
MA, MAU = "000e08abcdef", "000E08ABCDEF"
HTTP = {66: b"http://127.0.0.1:8080/"}
NO_DELAY = {"Resync_Random_Delay": "0"}


def xml(**settings) -> bytes:
    return cisco_cfg.render_xml({key: str(value) for key, value in settings.items()})


def lab(files, *, options=HTTP, model="SPA504G", settings=None, firmware=None, profile=cisco, **kw):
    flash = Flash(firmware=firmware or cisco.default_firmware(model), settings=dict(NO_DELAY, **(settings or {})))
    return PhoneLab(profile, model=model, mac=MAC, options=options, files=files, flash=flash, **kw)


def pass_times(l) -> list[float]:
    return [t for t, state, _, kind in l.phone.events if kind == "state" and state == "provisioning"]


def unreachable(l, *hosts):
    """Make TFTP/HTTP servers on ``hosts`` time out; the rest are served from files."""
    serve = l.network.fetch

    def fetch(request):
        if any(f"//{host}/" in request.url for host in hosts):
            l.network.fetches.append(request)
            return defer.succeed(FetchResult("timeout", detail="no answer"))
        return serve(request)

    l.network.fetch = fetch


# --- identity ---------------------------------------------------------------------------------


def test_user_agent_and_dhcp_identity():
    l = lab({"spa504G.cfg": xml(A=1)})
    l.boot()
    assert l.network.fetches[0].user_agent == f"Cisco/SPA504G-7.6.2 ({MAU})"
    discover = l.network.dhcp_sent[0]
    assert discover.options[60] == b"Cisco SPA504G" and discover.options[12] == b"SEP" + MAU.encode()
    assert {66, 150, 159, 160} <= set(discover.options[55])


# --- profile rules and macros ---------------------------------------------------------------------


def test_default_profile_rule_spa_is_spa_psn_cfg():
    l = lab({"spa504G.cfg": xml(Line_Enable_1_="Yes")})
    phone = l.boot()
    assert l.urls() == ["http://127.0.0.1:8080/spa504G.cfg"]
    assert phone.state == "ready" and phone.flash.settings["Line_Enable_1_"] == "Yes"


def test_default_profile_rule_mpp_is_psn_xml():
    l = lab({"7841.xml": xml(A=1)}, model="CP-7841-3PCC")
    assert l.boot().state == "ready" and l.urls() == ["http://127.0.0.1:8080/7841.xml"]


def test_macros_ma_mau_mac_pn_psn_swver():
    values = {"MA": MA, "MAU": MAU, "MAC": "00:0e:08:ab:cd:ef", "PN": "SPA504G", "PSN": "504G", "SWVER": "7.6.2"}
    assert cisco_cfg.expand_macros("/$MA/$MAU/$MAC/$PN/$PSN/$SWVER.cfg", values) == \
        f"/{MA}/{MAU}/00:0e:08:ab:cd:ef/SPA504G/504G/7.6.2.cfg"
    rule = "http://127.0.0.1:8080/p/$PN-$MAU-$SWVER/$MA.xml"
    l = lab({f"p/SPA504G-{MAU}-7.6.2/{MA}.xml": xml(A=1)}, settings={"Profile_Rule": rule})
    assert l.boot().state == "ready"


def test_macro_in_parentheses_and_double_dollar():
    values = {"MA": MA, "PSN": "504G"}
    assert cisco_cfg.expand_macros("$(MA)x/$$PSN/$(PSN)/$UNKNOWN", values) == f"{MA}x/$PSN/504G/$UNKNOWN"


def test_a_macro_substring_is_p_on_or_q_characters_from_p():
    # The guide's examples, for a MAC of 000E08012345: $(MAU:4) is 08012345, $(MAU:8:2) is 23.
    values = {"MAU": "000E08012345"}
    assert cisco_cfg.expand_macros("/$(MAU:4)/$(MAU:8:2)/$(MAU:0:6)/$(MAU:20)/$(NONE:1:2)", values) == \
        "/08012345/23/000E08//$(NONE:1:2)"


def test_absolute_rule_ignores_dhcp():
    l = lab({"x/a.xml": xml(A=1)}, options={66: b"http://127.0.0.1:1/"},
            settings={"Profile_Rule": "http://127.0.0.1:8080/x/a.xml"})
    l.boot()
    assert l.urls() == ["http://127.0.0.1:8080/x/a.xml"]


def test_rule_with_server_but_no_scheme_means_tftp():
    l = lab({"x/a.xml": xml(A=1)}, settings={"Profile_Rule": "127.0.0.1/x/a.xml"})
    l.boot()
    assert l.urls() == ["tftp://127.0.0.1/x/a.xml"]


def test_rule_uid_pwd_options_are_the_credentials():
    l = lab({"a.xml": xml(A=1)}, settings={"Profile_Rule": "[--uid admin --pwd 's3 cret'] http://127.0.0.1:8080/a.xml"})
    l.boot()
    request = l.network.fetches[0]
    assert request.url == "http://127.0.0.1:8080/a.xml"
    assert (request.credentials.user, request.credentials.password) == ("admin", "s3 cret")


def test_credentials_in_the_rule_url_travel_separately():
    l = lab({"a.xml": xml(A=1)}, settings={"Profile_Rule": "http://u:p@127.0.0.1:8080/a.xml"})
    l.boot()
    request = l.network.fetches[0]
    assert request.url == "http://127.0.0.1:8080/a.xml" and request.credentials.password == "p"


def test_an_encrypted_profile_is_decrypted_with_the_rules_key_and_a_compressed_one_unpacked():
    # The guides: `openssl enc -e -aes-256-cbc -k SecretPhrase1234`, compression (gzip)
    # before encryption, and [--key "SecretPhrase1234"] in the rule (macros expanded).
    profile = xml(A=1, Resync_Periodic=0)
    files = {"plain.cfg": cisco_crypt.encrypt(profile, "SecretPhrase1234"),
             "packed.cfg": cisco_crypt.encrypt(gzip.compress(xml(B=2)), "SecretPhrase1234"),
             "only-packed.cfg": gzip.compress(xml(C=3))}
    rules = {"Profile_Rule": '[--key "SecretPhrase1234"] http://127.0.0.1:8080/plain.cfg',
             "Profile_Rule_B": "[--key $GPP_K] http://127.0.0.1:8080/packed.cfg",
             "Profile_Rule_C": "http://127.0.0.1:8080/only-packed.cfg", "GPP_K": "SecretPhrase1234"}
    phone = lab(files, settings=rules).boot()
    assert phone.state == "ready", phone.failure
    assert (phone.flash.settings["A"], phone.flash.settings["B"], phone.flash.settings["C"]) == ("1", "2", "3")
    assert phone.flash.file_md5["plain.cfg"] == hashlib.md5(files["plain.cfg"]).hexdigest()  # the file as served


@pytest.mark.parametrize("rule, body, why", [
    ("[--key Wrong] http://127.0.0.1:8080/a.cfg", cisco_crypt.encrypt(b"<flat-profile/>", "Right"),
     "cannot decrypt the profile with its --key: a wrong phrase, or a key derived with another digest than md5"),
    ("[--key Right] http://127.0.0.1:8080/a.cfg", cisco_crypt.encrypt(b"<flat-profile/>", "Right", digest="sha256"),
     "(OpenSSL 1.1 and later derive the key with SHA-256 unless given -md md5)"),
    ("http://127.0.0.1:8080/a.cfg", cisco_crypt.encrypt(b"<flat-profile/>", "Right"),
     "an encrypted profile ('Salted__'), but its rule has no [--key ...]"),
    ("[--key Right] http://127.0.0.1:8080/a.cfg", b"<flat-profile/>",
     "the rule has --key, but the profile is not encrypted"),
    ("[--key Right] http://127.0.0.1:8080/a.cfg", cisco_crypt.encrypt(b"<flat-profile/>", "Right")[:-5],
     "is cut short"),
    ("http://127.0.0.1:8080/a.cfg", gzip.compress(b"<flat-profile/>", mtime=0)[:-8], "a gzip-compressed profile cut short"),
], ids=["wrong-phrase", "sha256-file", "no-key", "not-encrypted", "cut", "cut-gzip"])  # the bodies differ each run:
# ids keep the test names the same in every test process (pytest-xdist compares them)
def test_a_profile_that_does_not_decrypt_or_unpack_fails_the_resync_saying_why(rule, body, why):
    phone = lab({"a.cfg": body}, settings={"Profile_Rule": rule}).boot()
    assert phone.state == "failed" and why in phone.failure, phone.failure


def test_the_key_digest_is_a_behaviour_setting():
    body = cisco_crypt.encrypt(xml(A=1), "Right", digest="sha256")
    profile = profile_for("cisco", {"key_digest": "sha256"})
    phone = lab({"a.cfg": body}, settings={"Profile_Rule": "[--key Right] http://127.0.0.1:8080/a.cfg"},
                profile=profile).boot()
    assert phone.state == "ready" and phone.flash.settings["A"] == "1"
    with pytest.raises(ValueError, match="key_digest: 'sha1'; allowed: md5, sha256"):
        profile_for("cisco", {"key_digest": "sha1"})


def test_profile_rules_b_c_d_run_in_order_after_profile_rule_later_ones_override():
    files = {"a.xml": xml(X="a", A=1, Profile_Rule_C="http://127.0.0.1:8080/c.xml"), "b.xml": xml(X="b", B=1),
             "c.xml": xml(X="c", C=1), "d.xml": xml(D=1)}
    l = lab(files, settings={"Profile_Rule": "http://127.0.0.1:8080/a.xml", "Profile_Rule_B": "http://127.0.0.1:8080/b.xml",
                             "Profile_Rule_D": "http://127.0.0.1:8080/d.xml"})
    phone = l.boot()
    assert [u.rsplit("/", 1)[1] for u in l.urls()] == ["a.xml", "b.xml", "c.xml", "d.xml"]
    assert phone.flash.settings["X"] == "c" and {"A", "B", "C", "D"} <= set(phone.flash.settings)


# --- conditions, alternatives and assignments in a rule (wire.cisco_rules) -----------------------------

SERVER = "http://127.0.0.1:8080"


@pytest.mark.parametrize("model, fetched", [("SPA504G", "desk.xml"), ("SPA303", "lobby.xml")])
def test_a_rule_takes_the_first_alternative_whose_condition_holds(model, fetched):
    rule = f'( "$PN" eq "SPA504G" )? {SERVER}/desk.xml | {SERVER}/lobby.xml'
    l = lab({"desk.xml": xml(X="desk"), "lobby.xml": xml(X="lobby")}, model=model, settings={"Profile_Rule": rule})
    phone = l.boot()
    assert phone.state == "ready" and l.urls() == [f"{SERVER}/{fetched}"]
    assert phone.flash.settings["X"] == fetched.split(".")[0]
    assert ('Profile_Rule: ( "$PN" eq "SPA504G" )? holds' in l.steps()) == (fetched == "desk.xml")


def test_assignments_are_made_before_the_url_is_expanded_and_fetched():
    rule = f'( GPP_A = "site-$MA" ; b = "7" ; )! {SERVER}/$GPP_A.xml'
    l = lab({f"site-{MA}.xml": xml(X=1)}, settings={"Profile_Rule": rule})
    phone = l.boot()
    assert l.urls() == [f"{SERVER}/site-{MA}.xml"] and phone.state == "ready"
    assert phone.flash.settings["GPP_A"] == f"site-{MA}" and phone.flash.settings["GPP_B"] == "7"


def test_when_no_condition_holds_nothing_is_fetched_and_nothing_fails():
    l = lab({"x.xml": xml(X=1)}, settings={"Profile_Rule": f'( "$PN" eq "SPA303" )? {SERVER}/x.xml'})
    phone = l.boot()
    assert l.urls() == [] and phone.state == "ready" and "X" not in phone.flash.settings
    assert "Profile_Rule: no alternative's condition holds: nothing fetched" in l.steps()


@pytest.mark.parametrize("running, flashed", [("7.5.5", "7.6.2c"), ("7.6.2", "7.6.2")])
def test_an_upgrade_rule_with_a_version_condition_upgrades_only_older_firmware(running, flashed):
    rule = f"( $SWVER lt 7.6.0 )? {SERVER}/fw/spa50x-30x-7-6-2c.bin"
    l = lab({"spa504G.cfg": xml(Upgrade_Rule=rule), "fw/spa50x-30x-7-6-2c.bin": b"\0" * 256}, firmware=running)
    phone = l.boot()
    assert phone.flash.firmware == flashed and phone.reboots == (running != flashed)
    assert len(l.urls(".bin")) == (running != flashed)


@pytest.mark.parametrize("condition, running, holds", [
    ("! 7.6.2", "7.6.2", False),  # the older firmware's forms: no left operand ($SWVER), '!' for '!='
    ("!= 7.6.2", "7.6.3", True), ("$SWVER ge 7.6.2(a) and $SWVER le 7.6.2(c)", "7.6.2(b)", True),
    ("$SWVER gt 7.6.2", "7.6.10", True),  # numbers, not text: 10 > 2
    ('"$PN" ne "SPA504G" and 1 = 1', "7.6.2", False), ("3 >= 12", "7.6.2", False)])
def test_conditions_compare_versions_integers_and_strings_as_the_guide_says(condition, running, holds):
    l = lab({"a.xml": xml(A=1)}, firmware=running, settings={"Profile_Rule": f"( {condition} )? {SERVER}/a.xml"})
    l.boot()
    assert bool(l.urls()) == holds


@pytest.mark.parametrize("rule, says", [
    (f"{SERVER}/a.xml | {SERVER}/b.xml", "alternative 1 of 2 has no condition"),
    (f'( "$PN" lt "SPA600" )? {SERVER}/a.xml', "strings compare only with = or != (eq, ne), not lt"),
    (f"( $PN eq SPA504G )? {SERVER}/a.xml", "'SPA504G' is no integer, version number"),
    (f'( "$PN" eq 7.6.2 )? {SERVER}/a.xml', "is a string, 7.6.2 is a version: they do not compare"),
    (f"( $SWVER )? {SERVER}/a.xml", "is not 'OPERAND OPERATOR OPERAND'"),
    (f"( $SWVER ne 1.0.0 ) {SERVER}/a.xml", "must be followed by '?' (a condition) or '!' (assignments)"),
    (f'( GPP_A = unquoted ; )! {SERVER}/a.xml', "is not NAME = \"VALUE\" ;"),
    (f"( $SWVER ne 1.0.0 {SERVER}/a.xml", "'(' without its ')'")])
def test_a_rule_that_does_not_read_is_a_recorded_failure_naming_what(rule, says):
    l = lab({"a.xml": xml(A=1), "b.xml": xml(B=1)}, settings={"Profile_Rule": rule})
    phone = l.boot()
    assert phone.state == "failed" and says in phone.failure, phone.failure
    assert l.urls() == []


# --- where a relative rule's server comes from --------------------------------------------------------


def test_relative_rule_uses_option_66_host_as_tftp():
    l = lab({"spa504G.cfg": xml(A=1)}, options={66: b"127.0.0.1"})
    assert l.boot().state == "ready" and l.urls() == ["tftp://127.0.0.1/spa504G.cfg"]


def test_option_66_url_is_the_server_folder():
    l = lab({"prov/spa504G.cfg": xml(A=1)}, options={66: b"http://127.0.0.1:8080/prov/"})
    assert l.boot().state == "ready" and l.urls() == ["http://127.0.0.1:8080/prov/spa504G.cfg"]


def test_option_150_servers_are_tried_in_order_when_one_does_not_answer():
    l = lab({"spa504G.cfg": xml(A=1)}, options={150: dhcp.encode_ip_list(["127.0.0.5", "127.0.0.6", "127.0.0.7"])})
    unreachable(l, "127.0.0.5")
    phone = l.boot()
    assert l.urls() == ["tftp://127.0.0.5/spa504G.cfg", "tftp://127.0.0.6/spa504G.cfg"]
    assert phone.state == "ready" and "DHCP option 150 (2 of 3)" in " ".join(l.steps())


def test_option_150_not_found_is_an_answer_no_next_server():
    l = lab({}, options={150: dhcp.encode_ip_list(["127.0.0.5", "127.0.0.6"])})
    phone = l.boot()
    assert l.urls() == ["tftp://127.0.0.5/spa504G.cfg"] and phone.state == "failed"
    l = lab({}, options={150: dhcp.encode_ip_list(["127.0.0.5", "127.0.0.6"])},
            profile=profile_for("cisco", {"option150_next_on_not_found": True}))
    l.boot()
    assert len(l.urls()) == 2


def test_option_150_all_servers_silent_is_a_failure():
    l = lab({"spa504G.cfg": xml(A=1)}, options={150: dhcp.encode_ip_list(["127.0.0.5", "127.0.0.6"])})
    unreachable(l, "127.0.0.5", "127.0.0.6")
    phone = l.boot()
    assert phone.state == "failed" and "no server answered (2 tried)" in phone.failure


@pytest.mark.parametrize("present, expected", [
    ({66: b"127.0.0.66", 160: b"http://127.0.0.160/", 159: b"http://127.0.0.159/", 150: b"\x7f\x00\x00\x96"}, "127.0.0.66"),
    ({160: b"http://127.0.0.160/", 159: b"http://127.0.0.159/", 150: b"\x7f\x00\x00\x96"}, "127.0.0.160"),
    ({159: b"http://127.0.0.159/", 150: b"\x7f\x00\x00\x96"}, "127.0.0.159"),
    ({150: b"\x7f\x00\x00\x96"}, "127.0.0.150"),
])
def test_dhcp_option_order_is_66_then_160_159_150(present, expected):
    l = lab({"spa504G.cfg": xml(A=1)}, options=present)
    l.boot()
    assert f"//{expected}/" in l.urls()[0]


def test_dhcp_option_to_use_setting_changes_the_order():
    l = lab({}, options={66: b"127.0.0.66", 150: b"\x7f\x00\x00\x96"}, settings={"DHCP_Option_To_Use": "150,66"})
    l.boot()
    assert l.urls()[0] == "tftp://127.0.0.150/spa504G.cfg"


def test_option_159_or_160_url_naming_a_file_is_the_profile():
    l = lab({f"p/{MA}.xml": xml(A=1)}, options={160: b"http://127.0.0.1:8080/p/$MA.xml"})
    phone = l.boot()
    assert l.urls() == [f"http://127.0.0.1:8080/p/{MA}.xml"] and phone.state == "ready"


def test_relative_rule_without_any_dhcp_server_fails():
    phone = lab({}, options={}).boot()
    assert phone.state == "failed" and "no server in the rule and none from DHCP" in phone.failure


# --- profile syntax -------------------------------------------------------------------------------------


def test_xml_flat_profile_leaf_elements_are_parameters():
    body = (b'<?xml version="1.0"?><flat-profile><Profile_Rule ua="na">/x.cfg</Profile_Rule>'
            b"<Resync_Periodic>60</Resync_Periodic><Empty/><Group><Inner_1_>v</Inner_1_></Group></flat-profile>")
    assert cisco_cfg.parse_profile(body) == {"Profile_Rule": "/x.cfg", "Resync_Periodic": "60", "Empty": "",
                                             "Inner_1_": "v"}


def test_plain_text_profile_syntax():
    body = b'# comment\nResync_Periodic "60" ;\nLine_Enable[1] "Yes";\nProfile_Rule "http://h/$MA.cfg" ;\nBare 5;\n'
    assert cisco_cfg.parse_profile(body) == {"Resync_Periodic": "60", "Line_Enable_1_": "Yes",
                                             "Profile_Rule": "http://h/$MA.cfg", "Bare": "5"}
    phone = lab({"spa504G.cfg": body}).boot()
    assert phone.state == "ready" and phone.flash.settings["Line_Enable_1_"] == "Yes"
    phone = lab({"spa504G.cfg": body}, profile=profile_for("cisco", {"accept_plain_text": False})).boot()
    assert phone.state == "failed" and "not an XML profile" in phone.failure


@pytest.mark.parametrize("body", [b"<flat-profile><A>1</flat-profile>", b"\x00\x01\x02\xff\xfe binary", b"what is this"])
def test_unreadable_profile_fails_the_resync_and_retries_after_the_error_delay(body):
    l = lab({"spa504G.cfg": body})
    phone = l.boot()
    assert phone.state == "failed" and "spa504G.cfg" in phone.failure
    assert [call.getTime() - l.clock.seconds() for call in l.pending_calls()] == [pytest.approx(3600)]


# --- when the phone resyncs ----------------------------------------------------------------------------------


def test_resync_on_reset_no_skips_the_power_on_resync():
    l = lab({"spa504G.cfg": xml(A=1)}, settings={"Resync_On_Reset": "No"})
    phone = l.boot()
    assert phone.state == "ready" and l.urls() == []
    l.advance(3601)
    assert l.urls() == ["http://127.0.0.1:8080/spa504G.cfg"]


def test_resync_random_delay_waits_up_to_its_value_in_20_second_units_before_the_first_resync():
    delays = []
    for seed in range(20):
        l = lab({"spa504G.cfg": xml(A=1)}, settings={"Resync_Random_Delay": "3"}, seed=seed)
        l.boot()
        lease_at = next(t for t, state, _, kind in l.phone.events if state == "provisioning")
        delays.append(l.phone.stages[-1].started - lease_at)
    assert all(0 <= d <= 60 for d in delays) and max(delays) > 20  # 3 units of 20 s


def test_resync_random_delay_is_not_waited_before_periodic_resyncs():
    l = lab({"spa504G.cfg": xml(A=1, Resync_Periodic=100, Resync_Random_Delay=3)})
    l.boot()
    l.advance(101)
    second = l.phone.stages[-1]
    assert second.started - pass_times(l)[1] < 0.1


def test_periodic_resync_every_resync_periodic_default_3600():
    l = lab({"spa504G.cfg": xml(A=1)})
    l.boot()
    l.advance(2 * 3600 + 1)
    times = pass_times(l)
    assert len(times) == 3 and times[2] - times[1] == pytest.approx(3600, abs=0.1)


def test_resync_periodic_from_the_profile_and_zero_disables_it():
    l = lab({"spa504G.cfg": xml(Resync_Periodic=30)})
    l.boot()
    l.advance(61)
    assert len(pass_times(l)) == 3
    l = lab({"spa504G.cfg": xml(Resync_Periodic=0)})
    l.boot()
    assert l.pending_calls() == []


def test_error_retry_delay_after_a_failed_resync():
    l = lab({}, settings={"Resync_Error_Retry_Delay": "120"})
    phone = l.boot()
    assert phone.state == "failed"
    l.files["spa504G.cfg"] = xml(A=1)
    l.advance(121)
    assert phone.state == "ready" and len(l.urls()) == 2


def test_error_retry_delay_is_a_schedule_one_element_a_failure_in_a_row_the_last_repeated():
    # The guide's "Configurable Schedules": 30 s, 60 s, 120 s, then every 120 s; a success
    # starts it over.
    l = lab({}, settings={"Resync_Error_Retry_Delay": "30,60,120", "Resync_Periodic": "1000"})
    phone = l.boot()
    l.advance(30 + 60 + 120 + 120 + 1)
    times = pass_times(l)
    assert [round(b - a) for a, b in zip(times, times[1:])] == [30, 60, 120, 120] and phone.state == "failed"
    l.files["spa504G.cfg"] = xml(A=1)
    l.advance(121)
    assert phone.state == "ready"
    del l.files["spa504G.cfg"]
    l.advance(1000 + 31)  # the periodic resync fails: the schedule's first element again
    times = pass_times(l)
    assert [round(b - a) for a, b in zip(times[-3:], times[-2:])] == [1000, 30]


def test_a_schedule_element_plus_r_adds_a_random_extra_delay_up_to_r():
    waits = []
    for seed in range(12):
        l = lab({"spa504G.cfg": xml(A=1, Resync_Periodic="100+50")}, seed=seed)
        l.boot()
        [call] = l.pending_calls()
        waits.append(call.getTime() - l.clock.seconds())
    assert all(100 <= wait <= 150 for wait in waits) and len({round(w, 3) for w in waits}) > 6


@pytest.mark.parametrize("value", ["0", "0,60", "soon", "60,,120"])
def test_a_schedule_of_0_or_that_does_not_read_turns_the_timer_off(value):
    l = lab({}, settings={"Resync_Error_Retry_Delay": value})
    l.boot()
    assert l.pending_calls() == []


def test_resync_fails_on_fnf_yes_fails_and_no_succeeds():
    phone = lab({}).boot()
    assert phone.state == "failed" and "not found" in phone.failure
    l = lab({}, settings={"Resync_Fails_On_FNF": "No"})
    phone = l.boot()
    assert phone.state == "ready"
    assert [call.getTime() - l.clock.seconds() for call in l.pending_calls()] == [pytest.approx(3600)]


def test_resync_at_daily_with_its_random_delay():
    l = lab({"spa504G.cfg": xml(Resync_Periodic=0, Resync_At="0230", Resync_At_Random_Delay=600, Time_Zone="GMT+00:00")})
    l.boot()
    l.advance(2 * 86400)
    later = pass_times(l)[1:]
    assert len(later) == 2
    assert 9000 <= later[0] <= 9600 and 86400 + 9000 <= later[1] <= 86400 + 9600


@pytest.mark.parametrize("seed", range(1, 5))
def test_resync_at_set_means_resync_periodic_is_ignored_and_the_daily_moment_is_kept(seed):
    # The SPA and MPP guides: "If the Resync_At parameter is provisioned, the Resync_Periodic
    # parameter is ignored." Hourly in the profile, one pass a day at 02:30 + up to an hour.
    def run(check_sync_at=None):
        l = lab({"spa504G.cfg": xml(Resync_Periodic=3600, Resync_At="0230", Resync_At_Random_Delay=3600,
                                    Time_Zone="GMT+00:00")}, seed=seed)
        l.boot()
        if check_sync_at is not None:
            l.advance(check_sync_at - l.clock.seconds())
            l.driver.deliver(CheckSync())
        l.advance(3 * 86400 - l.clock.seconds())
        return l, [t for t in pass_times(l)[1:] if t != check_sync_at]

    l, daily = run()
    assert len(daily) == 3 and all(day * 86400 + 9000 <= t <= day * 86400 + 12600 for day, t in enumerate(daily))
    assert "error" not in l.phone.failure
    # A check-sync inside the window before the phone's moment neither moves it nor serves it
    # (drawing the moment again at every pass would pull it towards 02:30).
    _, with_check_sync = run(check_sync_at=9001.0)
    assert with_check_sync == daily


def test_a_resync_at_that_is_not_a_time_leaves_resync_periodic():
    l = lab({"spa504G.cfg": xml(Resync_Periodic=3600, Resync_At="25:00")})
    l.boot()
    l.advance(3 * 3600 + 60)
    assert len(pass_times(l)) == 4


def test_provision_enable_no_means_no_resync_at_all():
    l = lab({"spa504G.cfg": xml(A=1)}, settings={"Provision_Enable": "No"})
    phone = l.boot()
    assert phone.state == "ready" and l.urls() == [] and l.pending_calls() == []


def profile_fetch_times(l, name="7841.xml") -> list[int]:
    """When the phone fetched its profile (the step each fetch notes), to the second."""
    return [round(t) for t, _, detail, kind in l.phone.events
            if kind == "step" and detail.startswith(f"Profile_Rule: http://127.0.0.1:8080/{name}")]


def trigger_lab(trigger: str, model="CP-7841-3PCC", name="7841.xml", **settings):
    """A phone whose flash holds ``Resync_Trigger_1`` from an earlier provisioning."""
    return lab({name: xml(Resync_Periodic=3600)}, model=model,
               settings={"Resync_Trigger_1": trigger, "Resync_Periodic": "3600", **settings})


def test_mpp_resync_triggers_hold_back_every_resync_but_check_sync_unless_one_holds():
    # The MPP guides: the triggers, if set, "prevent resync unless one or more triggers
    # evaluates to true", even at power-on; only a SIP NOTIFY (or the action URL) ignores them.
    l = trigger_lab("$PRVTMR ge 7000")
    l.boot()
    assert l.urls() == [] and l.phone.state == "ready"
    assert any("Resync_Trigger_1: none holds ($PRVTMR 0, $UPGTMR 0): the resync is held back" in step
               for step in l.steps())
    l.advance(4 * 3600 + 60)
    # Hourly the timer is due; the trigger holds only when the last resync is 7,000 s old.
    assert [t - 1 for t in profile_fetch_times(l)] == [7200, 14400], profile_fetch_times(l)
    l.driver.deliver(CheckSync())
    l.advance(1)
    assert len(profile_fetch_times(l)) == 3  # a check-sync resyncs, its trigger or not


def test_either_trigger_holding_lets_the_resync_go_and_one_that_does_not_read_holds_nothing():
    l = trigger_lab("$PRVTMR ge", Resync_Trigger_2="( $UPGTMR ge 3600 )")
    l.boot()
    l.advance(3600 + 60)
    assert [t - 1 for t in profile_fetch_times(l)] == [3600]
    assert any(step.startswith("Resync_Trigger_1: condition") for step in l.steps())


def test_the_guides_example_trigger_holds_back_resyncs_while_the_lines_are_registered():
    # "$REGTMR1 gt 300 and $PRVTMR ge 600": resync when line 1 has lost its registration for
    # five minutes. labsim's phones register no line: as registered lines, never.
    l = trigger_lab("$REGTMR1 gt 300 and $PRVTMR ge 600")
    l.boot()
    l.advance(3 * 3600 + 60)
    assert profile_fetch_times(l) == []


def held_back_mpp_failing_its_upgrade(retry_delay: str):
    """An MPP phone whose profile sets a trigger that never holds and an image that is not
    on the server, three hours on: the first resync fetches the profile, then the
    triggers hold every resync back while the upgrade's retries go on."""
    l = lab({"7841.xml": xml(Resync_Periodic=3600, Resync_Trigger_1="$PRVTMR ge 100000",
                             Upgrade_Rule="/fw/sip78xx.14-0-1MPP-1.loads", Upgrade_Error_Retry_Delay=retry_delay)},
            model="CP-7841-3PCC")
    l.boot()
    l.advance(3 * 3600 + 60)
    return l


def test_triggers_hold_back_resyncs_not_the_upgrades_retries():
    # The triggers gate resyncs; a failed upgrade's retry timer is the upgrade's own.
    l = held_back_mpp_failing_its_upgrade("1800")
    tries = [round(t) for t, _, detail, kind in l.phone.events
             if kind == "step" and detail.startswith("Upgrade_Rule:") and ".loads" in detail]
    assert [t - tries[0] for t in tries] == [1800 * n for n in range(7)], tries
    assert profile_fetch_times(l) == [tries[0]] and l.phone.state == "ready"
    assert any("the resync is held back" in step for step in l.steps())


def test_a_resync_held_back_in_the_pass_of_an_upgrade_retry_starts_its_timer_again():
    # Both timers due together (hourly both), the triggers holding the resync back: one pass
    # a timer's period, not a second pass at once for the resync's timer left in the past.
    passes = pass_times(held_back_mpp_failing_its_upgrade("3600"))
    assert [round(b - a) for a, b in zip(passes, passes[1:])] == [3600, 3600, 3600], passes


def test_a_failed_resync_stays_failed_through_the_upgrades_retries_and_its_schedule_goes_on():
    # The profile is missing (a failed resync, retried by its schedule); between those, the
    # upgrade's retries alone: the phone stays failed, and the resync schedule's index is the
    # resync failures', not reset by the upgrade's passes.
    l = lab({"fw-list": b""}, settings={"Upgrade_Rule": "/fw/spa50x-30x-7-6-3.bin", "Upgrade_Error_Retry_Delay": "1000",
                                        "Resync_Error_Retry_Delay": "3000,6000", "Resync_After_Upgrade_Attempt": "No"})
    phone = l.boot()
    l.advance(12000)
    first, *later = [round(timing.started) for timing in phone.stages if timing.stage == "profile"]
    assert [t - first for t in later] == [3000, 3000 + 6000], later
    assert len([timing for timing in phone.stages if timing.stage == "firmware"]) == 12
    assert phone.state == "failed" and "spa504G.cfg not found" in phone.failure


def test_spa_resync_triggers_are_not_modelled_so_they_hold_nothing_back():
    # The SPA guide has a true trigger start a resync: not modelled, and nothing held back.
    l = trigger_lab("$PRVTMR ge 7000", model="SPA504G", name="spa504G.cfg")
    l.boot()
    l.advance(2 * 3600 + 60)
    assert len(profile_fetch_times(l, "spa504G.cfg")) == 3


def test_check_sync_resyncs_with_resync_from_sip_and_is_ignored_without():
    l = lab({"spa504G.cfg": xml(A=1)})
    phone = l.boot()
    l.files["spa504G.cfg"] = xml(A=2)
    l.driver.deliver(CheckSync())
    l.advance(1)
    assert phone.flash.settings["A"] == "2" and phone.reboots == 0
    l.files["spa504G.cfg"] = xml(A=3, Resync_From_SIP="No")
    l.driver.deliver(CheckSync())
    l.advance(1)
    l.driver.deliver(CheckSync())
    l.advance(1)
    assert phone.flash.settings["A"] == "3" and len(l.urls()) == 3


# --- applying, rebooting, firmware ----------------------------------------------------------------------------


def test_parameters_are_sticky_until_a_profile_changes_them():
    l = lab({"spa504G.cfg": xml(A=1, B=1)})
    phone = l.boot()
    l.files["spa504G.cfg"] = xml(B=2)
    l.driver.deliver(CheckSync())
    l.advance(1)
    assert phone.flash.settings["A"] == "1" and phone.flash.settings["B"] == "2"


def test_profile_rule_set_by_a_profile_is_used_from_the_next_resync():
    l = lab({"spa504G.cfg": xml(Profile_Rule="http://127.0.0.1:8080/new/$MA.xml"), f"new/{MA}.xml": xml(Z=1)})
    phone = l.boot()
    assert l.urls() == ["http://127.0.0.1:8080/spa504G.cfg"]
    l.driver.deliver(CheckSync())
    l.advance(1)
    assert l.urls()[-1] == f"http://127.0.0.1:8080/new/{MA}.xml" and phone.flash.settings["Z"] == "1"


def test_network_parameter_change_reboots_once_then_steady():
    l = lab({"spa504G.cfg": xml(Enable_VLAN="Yes", VLAN_ID=100)})
    phone = l.boot()
    assert phone.reboots == 1 and phone.state == "ready"
    assert l.states() == ["booting", "dhcp", "provisioning", "rebooting", "dhcp", "provisioning", "ready"]


def test_other_changes_apply_without_reboot():
    phone = lab({"spa504G.cfg": xml(Line_Enable_1_="Yes", User_ID_1_="1001")}).boot()
    assert phone.reboots == 0 and phone.state == "ready"


def test_upgrade_rule_flashes_a_different_image_and_reboots_once():
    files = {"spa504G.cfg": xml(Upgrade_Rule="http://127.0.0.1:8080/fw/spa50x-30x-7-6-2c.bin"),
             "fw/spa50x-30x-7-6-2c.bin": b"\0" * 256}
    l = lab(files)
    phone = l.boot()
    assert phone.flash.firmware == "7.6.2c" and phone.reboots == 1 and phone.state == "ready"
    assert l.urls(".bin") == ["http://127.0.0.1:8080/fw/spa50x-30x-7-6-2c.bin"]  # once: then it is running
    assert l.network.fetches[-1].user_agent == f"Cisco/SPA504G-7.6.2c ({MAU})"


def test_upgrade_rule_naming_the_running_version_is_skipped():
    files = {"7841.xml": xml(Upgrade_Rule="/sip78xx.12-0-1MPP-417.loads")}
    l = lab(files, model="CP-7841-3PCC")
    phone = l.boot()
    assert phone.reboots == 0 and l.urls(".loads") == []


def test_relative_upgrade_rule_uses_the_dhcp_server():
    files = {"7841.xml": xml(Upgrade_Rule="/fw/sip78xx.14-0-1MPP-1.loads"), "fw/sip78xx.14-0-1MPP-1.loads": b"img"}
    l = lab(files, model="CP-7841-3PCC")
    phone = l.boot()
    assert l.urls(".loads") == ["http://127.0.0.1:8080/fw/sip78xx.14-0-1MPP-1.loads"]
    assert phone.flash.firmware == "sip78xx.14-0-1MPP-1" and phone.reboots == 1


def test_missing_upgrade_image_keeps_the_firmware():
    phone = lab({"spa504G.cfg": xml(Upgrade_Rule="/fw/spa50x-30x-7-6-3.bin")}).boot()
    assert phone.state == "ready" and phone.flash.firmware == "7.6.2" and phone.reboots == 0


def image_tries(l) -> list[float]:
    """When the phone asked for its image (the step each try notes), to the second."""
    return [round(t) for t, _, detail, kind in l.phone.events
            if kind == "step" and detail.startswith("Upgrade_Rule:") and ".bin" in detail]


def test_a_failed_upgrade_is_tried_again_after_upgrade_error_retry_delay_a_schedule():
    # The guides: "if an upgrade fails, a retry is performed after Upgrade_Error_Retry_Delay
    # seconds", a schedule as Resync_Error_Retry_Delay is (their example:
    # 1800,3600,7200,14400+3600). Resyncs daily only (Resync_At): the retries are the upgrade's.
    profile = xml(Upgrade_Rule="/fw/spa50x-30x-7-6-3.bin", Upgrade_Error_Retry_Delay="600,1200,2400",
                  Resync_At="0000", Resync_At_Random_Delay=0, Time_Zone="GMT+00:00")
    l = lab({"spa504G.cfg": profile})
    phone = l.boot()
    l.advance(6000)
    first, *later = image_tries(l)
    assert [t - first for t in later] == [600, 600 + 1200, 600 + 1200 + 2400], image_tries(l)
    assert phone.state == "ready" and phone.flash.firmware == "7.6.2"
    assert any("Upgrade_Error_Retry_Delay: the upgrade is tried again in 1200s (failure 2 in a row)" in step
               for step in l.steps())
    # The image comes: the next try flashes it, and the boot starts the count over.
    l.files["fw/spa50x-30x-7-6-3.bin"] = b"\0" * 64
    l.advance(2400)
    assert phone.flash.firmware == "7.6.3" and phone.reboots == 1
    assert cisco.UPGRADE_FAILURES not in phone.vendor_ram


@pytest.mark.parametrize("delay", ["0", "soon"])
def test_an_upgrade_error_retry_delay_of_0_or_that_does_not_read_leaves_the_retry_to_the_next_resync(delay):
    l = lab({"spa504G.cfg": xml(Upgrade_Rule="/fw/spa50x-30x-7-6-3.bin", Upgrade_Error_Retry_Delay=delay,
                                Resync_Periodic=7200)})
    l.boot()
    l.advance(7300)
    first, *later = image_tries(l)
    assert [t - first for t in later] == [7200]


@pytest.mark.parametrize("after_attempt, image_at, profile_at", [
    # Factory Yes, "triggers a resync after every firmware upgrade attempt": each retry's
    # pass fetches the profile after its attempt, which starts the resync's timer again.
    (None, [3600, 7200, 10800], [0, 3600, 7200, 10800]),
    # No: the upgrade's retry alone at 3600 (no resync is due), the resync every 5000 s,
    # which tries the upgrade after its profile and so starts the retry's timer again.
    ("No", [3600, 5000, 8600, 10000], [0, 5000, 10000]),
])
def test_upgrade_error_retry_delay_is_3600_by_default_and_resync_after_upgrade_attempt_follows_it(
        after_attempt, image_at, profile_at):
    settings = {"Resync_After_Upgrade_Attempt": after_attempt} if after_attempt else {}
    l = lab({"spa504G.cfg": xml(Upgrade_Rule="/fw/spa50x-30x-7-6-3.bin", Resync_Periodic=5000, **settings)})
    l.boot()
    l.advance(3 * 3600 + 60)
    first, *later = image_tries(l)
    assert [t - first for t in later] == image_at
    assert [t - first for t in profile_fetch_times(l, "spa504G.cfg")] == profile_at
    assert any("the upgrade's retry (no resync is due)" in step for step in l.steps())


@pytest.mark.parametrize("name, version", [
    ("spa50x-30x-7-6-2a.bin", "7.6.2a"), ("/fw/spa112-1-4-1.bin", "1.4.1"),
    ("sip78xx.12-0-1MPP-417.loads", "sip78xx.12-0-1MPP-417"), ("custom", "custom"),
])
def test_image_version_from_its_name(name, version):
    assert cisco.image_version(name) == version


def test_behaviour_knobs_are_checked():
    with pytest.raises(ValueError, match="unknown cisco behaviour"):
        profile_for("cisco", {"no_such": 1})


def test_option_160_file_stands_in_for_profile_rule_and_other_rules_use_its_folder():
    l = lab({"p/boot.xml": xml(Profile_Rule_B="/$MA.xml"), f"p/{MA}.xml": xml(Z=1)},
            options={160: b"http://127.0.0.1:8080/p/boot.xml"})
    phone = l.boot()
    assert l.urls() == ["http://127.0.0.1:8080/p/boot.xml", f"http://127.0.0.1:8080/p/{MA}.xml"]
    assert phone.flash.settings["Z"] == "1"


@pytest.mark.parametrize("zone, at_utc", [("GMT-05:00", 7 * 3600 + 1800), ("GMT+01:00", 3600 + 1800),
                                          ("GMT+05:30", 21 * 3600), ("GMT+00:00", 2 * 3600 + 1800),
                                          ("", 10 * 3600 + 1800), ("Pacific", 10 * 3600 + 1800)])
def test_resync_at_is_kept_in_the_phones_time_zone(zone, at_utc):
    # Resync_At 02:30 is local time: Time_Zone moves it on the lab's clock (UTC). None, or a
    # value that is not a zone, keeps the factory GMT-08:00 (no summer time in January).
    zone_setting = {"Time_Zone": zone} if zone else {}
    l = lab({"spa504G.cfg": xml(Resync_Periodic=0, Resync_At="0230", Resync_At_Random_Delay=0, **zone_setting)})
    l.boot()
    l.advance(2 * 86400)
    assert [round(t) for t in pass_times(l)[1:]] == [at_utc, at_utc + 86400]


# --- summer time ----------------------------------------------------------------------------------

SPRING_WEEKEND = 83 * 86400.0  # Saturday 2026-03-28 00:00 UTC: 83 days after the calendar's origin (Sunday 2026-01-04)


@pytest.mark.parametrize("settings, sunday_utc", [
    ({}, 2 * 3600),  # the factory rule: the last Sunday of March, 02:00: 04:00 CEST is 02:00 UTC
    ({"Daylight_Saving_Time_Enable": "No"}, 3 * 3600),
    ({"Daylight_Saving_Time_Rule": "start=4/1/7/2;end=10/-1/7/2;save=1"}, 3 * 3600),  # not until April
    ({"Daylight_Saving_Time_Rule": "start=3/-1/7/2;end=10/-1/7/2;save=2"}, 1 * 3600),  # two hours forward
])
def test_resync_at_follows_summer_time(settings, sunday_utc):
    # Resync_At 04:00 local in GMT+01:00 from Saturday 2026-03-28: Saturday at 03:00 UTC,
    # Sunday an hour earlier once summer time has started at 02:00.
    profile = profile_for("cisco", {"clock_start_s": SPRING_WEEKEND})
    l = lab({"spa504G.cfg": xml(Resync_Periodic=0, Resync_At="0400", Resync_At_Random_Delay=0,
                                Time_Zone="GMT+01:00", **settings)}, profile=profile)
    l.boot()
    l.advance(2 * 86400)
    assert [round(t) for t in pass_times(l)[1:]] == [3 * 3600, 86400 + sunday_utc]


@pytest.mark.parametrize("rule, starts, ends, save_s", [
    ("start=3/-1/7/2;end=10/-1/7/2;save=1", "2026-03-29 02:00", "2026-10-25 02:00", 3600),  # last Sundays
    ("start=3/8/7/2;end=11/1/7/2;save=1", "2026-03-08 02:00", "2026-11-01 02:00", 3600),  # Sundays on or after
    ("start=4/1/0/0:0:0;end=9/30/0/23:59:59;save=0:30", "2026-04-01 00:00", "2026-09-30 23:59", 1800),  # dates
    ("start=3/-8/6;end=10/-1/1/3:30;save=+1", "2026-03-21 00:00", "2026-10-26 03:30", 3600),  # on or before
])
def test_daylight_saving_time_rule_is_read_as_the_guide_writes_it(rule, starts, ends, save_s):
    zone = cisco._zone(0, True, rule)
    assert zone.summer_extra_s == save_s
    for change, expected in ((zone.summer_starts, starts), (zone.summer_ends, ends)):
        assert datetime.fromtimestamp(change.local_moment(2026), timezone.utc).strftime("%Y-%m-%d %H:%M") == expected


@pytest.mark.parametrize("summer, rule", [
    (True, "start=3/-1/7;end=10/-1/7/2"),  # save defaults to 1: this one is read
    (True, "start=13/-1/7/2;end=10/-1/7/2;save=1"),
    (True, "start=3/-1/8/2;end=10/-1/7/2;save=1"),
    (True, "start=3/-1/0/2;end=10/-1/7/2;save=1"),  # a date cannot count back
    (True, "start=3/-1/7/2;end=10/-1/7/2;save=-1"),  # summer time that goes back
    (True, "nonsense"),
    (False, "start=3/-1/7/2;end=10/-1/7/2;save=1"),
])
def test_only_a_rule_that_reads_gives_summer_time(summer, rule):
    read = cisco._zone(3600, summer, rule)
    assert read.has_summer_time == (rule == "start=3/-1/7;end=10/-1/7/2")
    assert read.standard_s == 3600


MINUS_2 = (-7200).to_bytes(4, "big", signed=True)


@pytest.mark.parametrize("settings, option_2, at_utc, clock", [
    # Ignore_DHCP_Time_Offset No: the DHCP server's option 2 (-2) stands for Time_Zone
    ({"Ignore_DHCP_Time_Offset": "No"}, MINUS_2, 4 * 3600 + 1800,
     "clock -2 from DHCP option 2 (Ignore_DHCP_Time_Offset No): summer time +60 min"),
    ({}, MINUS_2, 1 * 3600 + 1800, "clock GMT+01:00: summer time +60 min"),  # Yes, the factory value: ignored
    ({"Ignore_DHCP_Time_Offset": "No"}, None, 1 * 3600 + 1800, "clock GMT+01:00: summer time +60 min"),
    ({"Ignore_DHCP_Time_Offset": "No"}, b"\x00\x00\x1c", 1 * 3600 + 1800,  # not four bytes: not read
     "clock GMT+01:00: summer time +60 min"),
    ({"Ignore_DHCP_Time_Offset": "No", "Time_Zone": ""}, None, 10 * 3600 + 1800,
     "clock GMT-08:00, the factory zone (Time_Zone not set): summer time +60 min"),
])
def test_ignore_dhcp_time_offset_no_lets_option_2_stand_for_the_zone(settings, option_2, at_utc, clock):
    # Resync_At 02:30 local, Time_Zone GMT+01:00 in January (no summer time yet).
    options = dict(HTTP)
    if option_2 is not None:
        options[2] = option_2
    l = lab({"spa504G.cfg": xml(Resync_Periodic=0, Resync_At="0230", Resync_At_Random_Delay=0,
                                **{"Time_Zone": "GMT+01:00", **settings})}, options=options)
    phone = l.boot()
    l.advance(2 * 86400)
    assert [round(t) for t in pass_times(l)[1:]] == [at_utc, at_utc + 86400]
    assert clock in [text for _, _, text, _ in phone.events]

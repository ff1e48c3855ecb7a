"""What the fuzz targets found, each kept as a plain regression test."""

from __future__ import annotations

import pytest

from labsim.scenario.loader import ScenarioError, parse_scenario_text
from tests.fuzz.targets import TARGETS

BY_NAME = {t.name: t for t in TARGETS}


def test_digest_response_with_non_ascii_characters_is_a_401_not_a_500():
    _, _, check = BY_NAME["http"].build()
    check(b'GET /secret/a HTTP/1.1\r\nHost: x\r\nAuthorization: Digest username="u", realm="lab", nonce="n\xe9", '
          b'uri="/secret/a", response="\xff\xfe", qop=auth, nc=00000001, cnonce="c"\r\n\r\n')


def test_put_below_a_file_is_a_409_not_a_500():
    _, _, check = BY_NAME["http"].build()
    check(b"PUT /uploads/x.log HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    check(b"PUT /uploads/x.log/y.log HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")


def test_ftp_path_with_a_nul_is_answered_not_raised():
    _, _, check = BY_NAME["ftp"].build()
    check(b"USER anonymous\r\nPASS x\r\nCWD \x00\r\nRETR a\x00b\r\nPWD\r\n")


def test_an_unknown_key_that_looks_like_a_type_name_is_reported_not_raised():
    with pytest.raises(ScenarioError) as caught:
        parse_scenario_text("A: 1\nname: t\n", "f.yaml")
    assert any(p.field == "A" and "unknown key 'A'" in p.message for p in caught.value.problems)


def test_an_unknown_yaml_tag_is_a_located_problem_not_a_constructor_error():
    with pytest.raises(ScenarioError) as caught:
        parse_scenario_text("name: t\nseed: !weird 3\n", "f.yaml")
    [problem] = caught.value.problems
    assert problem.mark.line == 2 and "not valid YAML" in problem.message and "!weird" in problem.message


def test_a_contact_uri_with_a_space_gets_no_notify_nobody_could_parse():
    _, _, check = BY_NAME["sip_pnp"].build()
    from labsim.wire import sip_pnp

    subscribe = sip_pnp.build_subscribe(mac="001565aa0001", vendor="Yealink", model="T46S", version="66.85.0.5",
                                        local=("127.0.0.1", 5060), call_id="c1", tag="t1", branch="z9hG4bK1")
    data = subscribe.encode().replace(b"<sip:127.0.0.1:5060>", b"<sip:127.0.0. :5060>")
    assert b"127.0.0. :5060" in data
    check(data)  # parses what the responder sends: nothing, here


@pytest.mark.parametrize("contact", [b"<sipI.0.1.75>", b"sipI.0.1.75", b"<:127.0.0.1>", b"<1x:127.0.0.1>"])
def test_a_contact_that_is_no_uri_gets_no_notify_nobody_could_parse(contact):
    # Found by the long run of 2026-12-06 (seed 2106): Contact <sipI.0.1.75> (a colon
    # flipped) gave "NOTIFY sipI.0.1.75 SIP/2.0", a request line with no URI scheme.
    _, _, check = BY_NAME["sip_pnp"].build()
    from labsim.wire import sip_pnp

    subscribe = sip_pnp.build_subscribe(mac="001565aa0001", vendor="Yealink", model="T46S", version="66.85.0.5",
                                        local=("127.0.0.1", 5060), call_id="c1", tag="t1", branch="z9hG4bK1")
    data = subscribe.encode().replace(b"<sip:127.0.0.1:5060>", contact)
    assert contact in data
    check(data)  # parses what the responder sends: nothing, here


@pytest.mark.parametrize("vendor, root", [("grandstream", b"<gs_provision version='1'/>"),
                                          ("polycom", b"<polycomConfig/>"), ("snom", b"<settings/>"),
                                          ("cisco", b"<flat-profile/>")])
def test_a_config_file_declaring_an_encoding_python_does_not_know_fails_the_pass_not_the_phone(vendor, root):
    # encoding="TTF-8": ElementTree raised LookupError, not ParseError, and the phone
    # ended in "internal error in the grandstream procedure: LookupError(...)".
    from tests.fuzz.targets import PHONE_MODELS

    _, _, check = BY_NAME["phone_config"].build()
    check(bytes([sorted(PHONE_MODELS).index(vendor)]) + b'<?xml version="1.0" encoding="TTF-8"?>' + root)


def test_a_url_in_a_setting_that_does_not_split_fails_its_download_not_the_phone():
    # ringtone.url = http://[::1/...: urlsplit raised "Invalid IPv6 URL" out of the
    # network's fetch, and the phone never settled.
    from tests.fuzz.targets import PHONE_MODELS

    _, _, check = BY_NAME["phone_config"].build()
    check(bytes([sorted(PHONE_MODELS).index("yealink")]) + b"#!version:1.0.0.1\nringtone.url = http://[::1/r.wav\n")


@pytest.mark.parametrize("vendor", ["snom", "cisco", "polycom", "yealink", "grandstream", "avaya"])
@pytest.mark.parametrize("url", [b"http://[::1/p.htm", b"http://127.0.0.1:99999/", b"tftp://[x]]/p"])
def test_an_option_66_url_that_does_not_split_fails_the_pass_not_the_phone(vendor, url):
    # A DHCP server gave snom phones option 66 http://[::1/...: urlsplit raised out of the
    # procedure ("internal error in the snom procedure: ValueError('Invalid IPv6 URL')").
    from labsim.wire import dhcp
    from tests.fuzz.targets import PHONE_MODELS

    offer = dhcp.DhcpMessage(op=2, xid=0, chaddr=bytes(6), yiaddr="10.1.0.20",
                             options={53: bytes([dhcp.OFFER]), 54: bytes([127, 0, 0, 1]), 51: (3600).to_bytes(4, "big"),
                                      66: url, 160: url, 159: url, 150: bytes([127, 0, 0, 1])})
    _, _, check = BY_NAME["phone_dhcp"].build()
    check(bytes([sorted(PHONE_MODELS).index(vendor)]) + dhcp.encode(offer))



def test_an_option_66_host_no_dns_query_can_carry_is_a_note_not_a_unicode_error():
    # A byte the mutator changed in dns-outage.yaml's option 66 host (p\x80ovisioning.lab,
    # read as U+FFFD): the lookup notes raised UnicodeError out of dnslib's label.
    _, _, check = BY_NAME["scenario"].build()
    check(b'name: t\nservices:\n  dhcp:\n    options: {66: "http://p\x80ovisioning.lab:8080/"}\n  http: {port: 8080}\n'
          b'  dns:\n    records:\n      - {name: provisioning.lab, type: A, value: 127.0.0.1}\n'
          b'fleets:\n  - {vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}\n')


def test_a_fleet_vendor_written_as_a_mapping_is_a_problem_at_the_vendor_not_a_type_error():
    # Found by the scenario target (seed 3004): "vendor: {T46S: 200, T48S: 200}", the
    # quickstart's models mapping under the wrong key, crashed the stage names' check.
    text = ("name: t\nservices: {dhcp: {}}\nfleets:\n  - {vendor: {T46S: 200}, first_mac: '00:15:65:00:00:01'}\n"
            "expect:\n  - stage.mac_cfg.p95 < 1\n")
    with pytest.raises(ScenarioError) as caught:
        parse_scenario_text(text, "f.yaml")
    assert any(p.field == "fleets[0].vendor" for p in caught.value.problems), [str(p) for p in caught.value.problems]
    _, _, check = BY_NAME["scenario"].build()
    check(text.encode())


def test_a_number_among_the_services_keys_is_a_problem_there_not_a_type_error():
    # Found by the scenario target (seed 3005): an option's number, 66, dedented into
    # services: made the list of running services sort an int against strings.
    text = ("name: t\nservices:\n  dhcp: {}\n  66: http://127.0.0.1:8080/\n  http: {port: 8080}\n"
            "fleets:\n  - {vendor: yealink, model: T46S, count: 1, first_mac: '00:15:65:00:00:01'}\n"
            "timeline:\n  - {at: 5, do: {stop_service: tftp}}\n")
    with pytest.raises(ScenarioError) as caught:
        parse_scenario_text(text, "f.yaml")
    fields = [p.field for p in caught.value.problems]
    assert "services[66]" in fields and "timeline[0].do.stop_service" in fields, [str(p) for p in caught.value.problems]
    _, _, check = BY_NAME["scenario"].build()
    check(text.encode())

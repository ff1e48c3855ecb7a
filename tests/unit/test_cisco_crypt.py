"""Cisco's encrypted and compressed profiles (wire.cisco_crypt), the codec alone. The
phone's use of it is in test_cisco_profile.py; the real ``openssl enc`` in
tests/interop/test_cisco_openssl.py."""

import gzip
import os
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.wire import cisco_crypt
from labsim.wire.cisco_cfg import NotACiscoProfile


def test_the_key_and_iv_are_openssls_evp_bytes_to_key_one_round():
    # D1 = MD5(phrase + salt), D2 = MD5(D1 + phrase + salt), D3 = ...: the key is D1 + D2,
    # the IV D3 (32 + 16 bytes), as `openssl enc -md md5 -k phrase -S salt -P` prints them.
    key, iv = cisco_crypt.derive("SecretPhrase1234", bytes.fromhex("0102030405060708"))
    salt, secret = bytes.fromhex("0102030405060708"), b"SecretPhrase1234"
    d1 = hashlib.md5(secret + salt).digest()
    d2 = hashlib.md5(d1 + secret + salt).digest()
    d3 = hashlib.md5(d2 + secret + salt).digest()
    assert (key, iv) == (d1 + d2, d3)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.text(min_size=1, max_size=20), st.sampled_from(cisco_crypt.DIGESTS))
def test_what_is_encrypted_with_a_phrase_decrypts_with_it(plaintext, phrase, digest):
    body = cisco_crypt.encrypt(plaintext, phrase, digest=digest)
    assert body.startswith(b"Salted__") and (len(body) - 16) % 16 == 0
    assert cisco_crypt.decrypt(body, phrase, digest=digest) == plaintext


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(lambda b: b"Salted__" + b),
                 st.binary(max_size=200).map(gzip.compress).map(lambda b: b[:len(b) // 2] + b"x")))
def test_any_body_decrypts_unpacks_or_is_refused_with_the_reason(body):
    """The phone downloads whatever the server sends: never another exception."""
    for step in (lambda: cisco_crypt.decrypt(body, "phrase"), lambda: cisco_crypt.decompress(body)):
        try:
            assert isinstance(step(), bytes)
        except NotACiscoProfile as refused:
            assert str(refused)


def test_a_compressed_profile_that_unpacks_too_far_is_refused_not_unpacked():
    bomb = gzip.compress(b"\0" * (cisco_crypt.MAX_PROFILE_BYTES + 1))
    assert len(bomb) < 10_000
    with pytest.raises(NotACiscoProfile, match="unpacks past 4 MiB"):
        cisco_crypt.decompress(bomb)
    assert cisco_crypt.decompress(gzip.compress(b"<flat-profile/>")) == b"<flat-profile/>"


def scenario_with(per_phone: str, fleets: str = "") -> str:
    return ("name: t\nservices: {dhcp: {}, http: {}}\n"
            "fleets:\n  - {name: desk, vendor: cisco, model: SPA504G, count: 2, first_mac: '00:0e:08:00:00:01'}\n"
            + fleets + "provisioning:\n  per_phone:\n" + per_phone)


def test_a_per_phone_template_with_a_cisco_key_writes_each_file_encrypted_the_same_every_time(tmp_path):
    from labsim.fleet.fleet import build_fleets
    from labsim.run import materialize_provisioning
    from labsim.scenario.loader import load_scenario

    scenario = tmp_path / "s.yaml"
    scenario.write_text(scenario_with("    - {name: '{mac}.xml', cisco_key: 'Site Key 7', text: '<flat-profile>"
                                      "<GPP_A>{index}</GPP_A></flat-profile>'}\n"))
    loaded = load_scenario(str(scenario))
    made = []
    for run in ("one", "two"):
        root = materialize_provisioning(loaded, str(tmp_path / run), build_fleets(loaded.scenario))
        made.append(open(os.path.join(root, "000e08000002.xml"), "rb").read())
    assert made[0] == made[1] and cisco_crypt.is_encrypted(made[0])  # a replay serves the same bytes
    assert cisco_crypt.decrypt(made[0], "Site Key 7") == b"<flat-profile><GPP_A>2</GPP_A></flat-profile>"


def test_a_cisco_key_is_refused_on_another_vendors_fleet_beside_a_yealink_key_and_empty():
    from labsim.scenario.loader import ScenarioError, parse_scenario_text

    polycom = "  - {name: conf, vendor: polycom, model: VVX410, count: 1, first_mac: '00:04:f2:00:00:01'}\n"
    parse_scenario_text(scenario_with("    - {name: 'a{mac}', fleets: [desk], cisco_key: k, text: x}\n", polycom), "s.yaml")
    cases = [("    - {name: 'a{mac}', cisco_key: k, text: x}\n", "provisioning.per_phone[0].cisco_key",
              "encrypts each file for Cisco phones, but this template also makes files for 'conf' (polycom)"),
             ("    - {name: 'a{mac}', cisco_key: k, yealink_aes_key: Lab2MacKeyT48Sxx, fleets: [desk], text: x}\n",
              "provisioning.per_phone[0]", "give yealink_aes_key or cisco_key, not both"),
             ("    - {name: 'a{mac}', cisco_key: '', fleets: [desk], text: x}\n", "provisioning.per_phone[0].cisco_key",
              "a Cisco key is a phrase of at least one character")]
    for per_phone, field, message in cases:
        with pytest.raises(ScenarioError) as caught:
            parse_scenario_text(scenario_with(per_phone, polycom), "s.yaml")
        found = [p.message for p in caught.value.problems if p.field == field]
        assert found and message in found[0], [(p.field, p.message) for p in caught.value.problems]

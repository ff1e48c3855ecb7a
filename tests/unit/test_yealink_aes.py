"""Yealink AES against the files Yealink's own tool made, plus the CLI functions."""

from __future__ import annotations

import argparse
import hashlib
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labsim import yealink_tool
from labsim.wire import yealink_aes

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "yealink-aes"
VECTOR_KEY = "ljB7jiDIQQ7XD888"
VECTOR_MD5 = "1fe70f8465135aaee5be8ca9f815946c"


@pytest.fixture(scope="module")
def vectors():
    # The vectors live in the repository (tests/vectors/): a missing file is a failure.
    return (VECTORS / "test_Security.enc").read_bytes(), (VECTORS / "test.cfg").read_bytes()


def test_security_enc_decrypts_to_the_known_key(vectors):
    security, _ = vectors
    assert yealink_aes.decrypt_key(security) == VECTOR_KEY
    assert yealink_aes.encrypt_key(VECTOR_KEY) == security


def test_vector_decrypts_byte_for_byte(vectors):
    _, cfg = vectors
    blocks = yealink_aes.decrypt_blocks(cfg, VECTOR_KEY)
    assert len(blocks) == 800
    assert hashlib.md5(blocks).hexdigest() == VECTOR_MD5
    assert blocks.startswith(b"[ account ]\r\n")
    # The tool padded with spaces: the stripped text ends at the last CRLF.
    plain = yealink_aes.decrypt_file(cfg, VECTOR_KEY)
    assert plain.endswith(b"\r\n") and blocks == plain + b" " * (800 - len(plain))


def test_vector_reencrypts_to_the_same_file(vectors):
    _, cfg = vectors
    assert yealink_aes.encrypt_file(yealink_aes.decrypt_blocks(cfg, VECTOR_KEY), VECTOR_KEY) == cfg
    # and from the stripped text too: space padding restores the same last block
    assert yealink_aes.encrypt_file(yealink_aes.decrypt_file(cfg, VECTOR_KEY), VECTOR_KEY) == cfg


def test_vector_looks_encrypted_and_plain_does_not(vectors):
    _, cfg = vectors
    assert yealink_aes.looks_encrypted(cfg)
    assert not yealink_aes.looks_encrypted(yealink_aes.decrypt_blocks(cfg, VECTOR_KEY))
    assert not yealink_aes.looks_encrypted(b"#!version:1.0.0.1\naccount.1.enable = 1\n")
    assert not yealink_aes.looks_encrypted(b"account.1.enable = 1\n" * 16)


def test_a_ciphertext_that_starts_with_a_bracket_still_looks_encrypted():
    # One AES output in 256 starts with "[", which the old INI-style check took for a plain
    # file (a fleet with per-phone keys had a few phones apply ciphertext; the CLI test
    # with a fresh random key failed once in ~256 runs).
    plaintext = b"#!version:1.0.0.1\naccount.1.user_name = 1001\n"
    rng = random.Random(7)
    found = []
    while len(found) < 3:
        key = yealink_aes.generate_key(rng)
        ciphertext = yealink_aes.encrypt_file(plaintext, key)
        if ciphertext.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
            found.append(ciphertext)
    assert all(yealink_aes.looks_encrypted(ciphertext) for ciphertext in found)
    # while an old INI-style file is plain, even with mostly non-ASCII values
    assert not yealink_aes.looks_encrypted("[ account ]\nlabel = 会议室电话会议室电话会议室\n".encode())
    assert not yealink_aes.looks_encrypted(b"\xef\xbb\xbf\r\n[autoprovision]\r\nserver_address = 10.0.0.1\r\n")


def test_generate_key_alphabet_and_seeded_reproducibility():
    key = yealink_aes.generate_key()
    assert len(key) == 16 and all(c in yealink_aes.KEY_ALPHABET for c in key)
    assert yealink_aes.generate_key(random.Random(7)) == yealink_aes.generate_key(random.Random(7))
    assert len({yealink_aes.generate_key() for _ in range(20)}) == 20


def test_errors():
    with pytest.raises(ValueError):
        yealink_aes.decrypt_file(b"x" * 17, VECTOR_KEY)
    with pytest.raises(ValueError):
        yealink_aes.decrypt_key(b"x" * 15)
    with pytest.raises(ValueError):
        # 16 random-looking bytes decrypt to non-printable junk
        yealink_aes.decrypt_key(bytes(range(16)))
    with pytest.raises(ValueError):
        yealink_aes.encrypt_file(b"abc", "short")


@given(st.binary(max_size=300), st.text(alphabet=yealink_aes.KEY_ALPHABET, min_size=16, max_size=16))
def test_roundtrip(data, key):
    enc = yealink_aes.encrypt_file(data, key)
    assert len(enc) % 16 == 0 and len(enc) - len(data) < 16
    assert yealink_aes.decrypt_blocks(enc, key)[: len(data)] == data
    assert yealink_aes.decrypt_file(enc, key) == data.rstrip(b"\x00 ")
    assert yealink_aes.decrypt_key(yealink_aes.encrypt_key(key)) == key


def test_cli_encrypt_then_decrypt_with_key_file(tmp_path, capsys):
    src = tmp_path / "y000000000066.cfg"
    src.write_bytes(b"#!version:1.0.0.1\r\nstatic.auto_provision.power_on = 1\r\n")
    out = tmp_path / "enc" / "y000000000066.cfg"
    out.parent.mkdir()
    ns = argparse.Namespace(input=str(src), output=str(out), key=None)
    assert yealink_tool.main_encrypt(ns) == 0
    security = out.parent / "y000000000066_Security.enc"
    assert security.stat().st_size == 16
    key = yealink_aes.decrypt_key(security.read_bytes())
    assert key in capsys.readouterr().out
    assert yealink_aes.looks_encrypted(out.read_bytes())

    back = tmp_path / "back.cfg"
    ns = argparse.Namespace(input=str(out), output=str(back), key=None, key_file=str(security))
    assert yealink_tool.main_decrypt(ns) == 0
    assert back.read_bytes() == src.read_bytes()


def test_cli_parser_wiring_and_explicit_key(tmp_path, vectors):
    _, cfg = vectors
    parser = argparse.ArgumentParser(prog="labsim")
    yealink_tool.add_yealink_commands(parser.add_subparsers(dest="command"))
    enc_in = tmp_path / "test.cfg"
    enc_in.write_bytes(cfg)
    plain = tmp_path / "plain.cfg"
    args = parser.parse_args(["yealink", "decrypt", str(enc_in), "-o", str(plain), "--key", VECTOR_KEY])
    assert args.func(args) == 0
    again = tmp_path / "again.cfg"
    args = parser.parse_args(["yealink", "encrypt", str(plain), "-o", str(again), "--key", VECTOR_KEY])
    assert args.func(args) == 0
    assert again.read_bytes() == cfg
    assert (tmp_path / "again_Security.enc").read_bytes() == (VECTORS / "test_Security.enc").read_bytes()
    with pytest.raises(SystemExit):
        parser.parse_args(["yealink", "encrypt", str(plain), "-o", "x", "--key", "bad!"])
    with pytest.raises(SystemExit):  # decrypt needs --key or --key-file
        parser.parse_args(["yealink", "decrypt", str(enc_in), "-o", "x"])


def test_cli_decrypt_wrong_length_fails_cleanly(tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_bytes(b"not a multiple")
    ns = argparse.Namespace(input=str(bad), output=str(tmp_path / "o"), key=VECTOR_KEY, key_file=None)
    assert yealink_tool.main_decrypt(ns) == 2
    assert not (tmp_path / "o").exists()


def test_a_per_phone_template_with_a_yealink_key_is_written_encrypted_with_it(tmp_path):
    from labsim.fleet.fleet import build_fleets
    from labsim.run import materialize_provisioning
    from labsim.scenario.loader import load_scenario

    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: t\nservices: {dhcp: {}, http: {}}\n"
        "fleets:\n  - {name: a, vendor: yealink, model: T48S, count: 2, first_mac: '00:15:65:61:00:01'}\n"
        "  - {name: b, vendor: yealink, model: T46S, count: 1, first_mac: '00:15:65:62:00:01'}\n"
        "provisioning:\n  per_phone:\n"
        "    - {name: '{mac}.cfg', fleets: [a], yealink_aes_key: Lab2MacKeyT48Sxx, text: \"user = {index}\\n\"}\n"
        "    - {name: '{mac}.cfg', fleets: [b], text: \"user = {index}\\n\"}\n")
    loaded = load_scenario(str(scenario))
    root = Path(materialize_provisioning(loaded, str(tmp_path / "scratch"), build_fleets(loaded.scenario)))
    encrypted = (root / "001565610002.cfg").read_bytes()
    assert yealink_aes.looks_encrypted(encrypted) and len(encrypted) % 16 == 0
    assert yealink_aes.decrypt_file(encrypted, "Lab2MacKeyT48Sxx") == b"user = 2\n"
    assert (root / "001565620001.cfg").read_bytes() == b"user = 1\n"  # no key: as written


@pytest.mark.parametrize("key", ["short", "Lab2MacKeyT48Sxxx", "Lab2 MacKeyT48Sx", "Lab2MäcKeyT48Sxx"])
def test_a_per_phone_yealink_key_is_16_printable_characters(key):
    from labsim.scenario.loader import ScenarioError, parse_scenario_text

    text = ("name: t\nservices: {dhcp: {}}\n"
            "fleets:\n  - {vendor: yealink, model: T48S, count: 1, first_mac: '00:15:65:61:00:01'}\n"
            f"provisioning:\n  per_phone:\n    - {{name: '{{mac}}.cfg', yealink_aes_key: '{key}', text: x}}\n")
    with pytest.raises(ScenarioError) as caught:
        parse_scenario_text(text, "s.yaml")
    [problem] = caught.value.problems
    assert problem.field == "provisioning.per_phone[0].yealink_aes_key"
    assert "a Yealink AES key is 16 printable ASCII characters" in problem.message


def test_a_yealink_key_on_a_template_for_another_vendors_fleet_is_refused_there():
    from labsim.scenario.loader import ScenarioError, parse_scenario_text

    fleets = ("fleets:\n  - {name: desk, vendor: yealink, model: T48S, count: 1, first_mac: '00:15:65:61:00:01'}\n"
              "  - {name: conf, vendor: polycom, model: VVX410, count: 1, first_mac: '00:04:f2:00:00:01'}\n")

    def scenario(only: str) -> str:
        return ("name: t\nservices: {dhcp: {}}\n" + fleets + "provisioning:\n  per_phone:\n"
                f"    - {{name: '{{mac}}.cfg', yealink_aes_key: Lab2MacKeyT48Sxx, text: x{only}}}\n")

    parse_scenario_text(scenario(", fleets: [desk]"), "s.yaml")  # the Yealink fleet alone: fine
    for only in ("", ", fleets: [desk, conf]"):
        with pytest.raises(ScenarioError) as caught:
            parse_scenario_text(scenario(only), "s.yaml")
        [problem] = caught.value.problems
        assert problem.field == "provisioning.per_phone[0].yealink_aes_key"
        assert "also makes files for 'conf' (polycom), which could not read them" in problem.message

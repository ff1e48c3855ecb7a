"""The Avaya provisioning file formats (labsim/wire/avaya_cfg.py), without a phone."""

from hypothesis import given, strategies as st

from labsim.wire import avaya_cfg
from labsim.wire.avaya_cfg import Section


MODEL_FILE = b"""# 1220SIP.cfg
[DEVICE_CONFIG]
DOWNLOAD_MODE AUTO
VERSION 000001
FILENAME device.cfg
PROTOCOL HTTP
SERVER_IP 127.0.0.1:8080
SRV_USER_NAME admin
SRV_USER_PASS se;cret

[fw]
DOWNLOAD_MODE FORCED
VERSION SIP12x004.01.13.00
FILENAME SIP12x004.01.13.00.bin

[LANGUAGE]
VERSION 0000000002
FILENAME French.lng
FILENAME German.lng
"""


def test_sections_are_read_in_file_order_with_their_keywords():
    parsed = avaya_cfg.parse_provisioning(MODEL_FILE)
    assert [s.name for s in parsed.sections] == ["DEVICE_CONFIG", "FW", "LANGUAGE"]
    device, fw, language = parsed.sections
    assert device.version == "000001" and device.download_mode == "AUTO"
    assert device.filenames == ("device.cfg",)
    assert device.protocol == "HTTP" and device.server_ip == "127.0.0.1:8080"
    assert (device.user, device.password) == ("admin", "se;cret")
    assert fw.download_mode == "FORCED" and fw.line == 11
    assert language.filenames == ("French.lng", "German.lng")
    assert parsed.ignored_from_line is None and parsed.problems == ()


def test_defaults_are_auto_and_tftp():
    section = avaya_cfg.parse_provisioning(b"[TONES]\nVERSION 123456\nFILENAME ring.wav\n").sections[0]
    assert section.download_mode == "AUTO"
    assert section.protocol == "TFTP"
    assert section.server_ip is None and section.user is None


def test_hash_lines_are_comments():
    parsed = avaya_cfg.parse_provisioning(b"[DEVICE_CONFIG]\n# VERSION 999999\nVERSION 000002\n  # FILENAME x\n")
    assert parsed.sections[0].version == "000002"
    assert parsed.sections[0].filenames == ()


def test_line_of_exactly_80_characters_is_read():
    line = "FILENAME " + "a" * 71
    assert len(line) == 80
    parsed = avaya_cfg.parse_provisioning(f"[IMAGES]\nVERSION 000001\n{line}\n".encode())
    assert parsed.ignored_from_line is None
    assert parsed.sections[0].filenames == ("a" * 71,)


def test_line_longer_than_80_characters_ignores_the_rest_of_the_file():
    long_line = "# " + "x" * 79  # 81 characters, even though it is only a comment
    data = f"[DEVICE_CONFIG]\nVERSION 000001\n{long_line}\nFILENAME device.cfg\n[FW]\nVERSION SIP12x004.01.13.00\n"
    parsed = avaya_cfg.parse_provisioning(data.encode())
    assert parsed.ignored_from_line == 3
    assert [s.name for s in parsed.sections] == ["DEVICE_CONFIG"]
    assert parsed.sections[0].filenames == ()  # FILENAME came after the long line


def test_crlf_line_ends_do_not_count_towards_the_80_characters():
    line = "FILENAME " + "b" * 71
    parsed = avaya_cfg.parse_provisioning(f"[IMAGES]\r\nVERSION 000001\r\n{line}\r\n".encode())
    assert parsed.ignored_from_line is None and parsed.sections[0].filenames == ("b" * 71,)


def test_keyword_outside_a_section_is_reported_not_applied():
    parsed = avaya_cfg.parse_provisioning(b"VERSION 000001\n[TONES]\nVERSION 000002\n")
    assert parsed.problems and "outside" in parsed.problems[0]
    assert parsed.sections[0].version == "000002"


def test_version_is_mandatory_and_six_to_ten_digits():
    def problem(name, version):
        keywords = {} if version is None else {"VERSION": version}
        return avaya_cfg.version_problem(Section(name, 1, keywords))

    assert problem("DEVICE_CONFIG", None) is not None
    assert problem("DEVICE_CONFIG", "12345") is not None
    assert problem("DEVICE_CONFIG", "123456") is None
    assert problem("DEVICE_CONFIG", "1234567890") is None
    assert problem("DEVICE_CONFIG", "12345678901") is not None
    assert problem("DEVICE_CONFIG", "12345a") is not None
    assert problem("FW", "SIP12x004.01.13.00") is None
    assert problem("FW", "SIP1140e04.04.23.00") is None  # 19 characters: the maximum
    assert problem("FW", "SIP12x0004.01.13.00x") is not None
    assert problem("FW", "123456") is not None


def test_counter_versions_compare_as_numbers():
    assert avaya_cfg.is_higher("000010", "000009")
    assert not avaya_cfg.is_higher("000009", "0000010")
    assert not avaya_cfg.is_higher("000009", "000009")
    assert avaya_cfg.is_higher("000001", None)


def test_firmware_versions_compare_by_their_numeric_fields():
    assert avaya_cfg.is_higher("SIP12x004.01.13.00", "SIP12x004.00.04.00")
    assert not avaya_cfg.is_higher("SIP12x004.00.04.00", "SIP12x004.01.13.00")
    assert avaya_cfg.is_higher("SIP12x004.10.00.00", "SIP12x004.09.99.99")
    assert avaya_cfg.firmware_parts("SIP12x004.00.04.00") == ("SIP12x0", "04.00.04.00")
    assert avaya_cfg.firmware_parts("SIP1165e04.04.23.00") == ("SIP1165e", "04.04.23.00")


@given(st.integers(0, 10**10 - 1), st.integers(0, 10**10 - 1))
def test_is_higher_agrees_with_integer_order(a, b):
    assert avaya_cfg.is_higher(f"{a:06d}", f"{b:06d}") == (a > b)


def test_settings_file_key_value_lines_last_wins_blank_kept():
    data = b"# device.cfg\nSIP_DOMAIN1 example.com\nSERVER_IP1_1 192.0.2.10\nSIP_DOMAIN1 example.org\n" \
           b"PRIMARY_SERVER_PROFILE\nBANNER  hello   world  \n"
    assert avaya_cfg.parse_settings(data) == {
        "SIP_DOMAIN1": "example.org",
        "SERVER_IP1_1": "192.0.2.10",
        "PRIMARY_SERVER_PROFILE": "",
        "BANNER": "hello   world",
    }


def test_settings_file_line_limit_only_when_asked():
    data = ("A 1\nB " + "x" * 90 + "\nC 3\n").encode()
    assert set(avaya_cfg.parse_settings(data)) == {"A", "B", "C"}
    assert avaya_cfg.parse_settings(data, max_line_chars=80) == {"A": "1"}


def test_render_round_trips():
    rendered = avaya_cfg.render_provisioning([("LANGUAGE", {"VERSION": "000003", "FILENAME": ["a.lng", "b.lng"]})])
    section = avaya_cfg.parse_provisioning(rendered).sections[0]
    assert section.version == "000003" and section.filenames == ("a.lng", "b.lng")
    settings = {"SIP_DOMAIN1": "example.com", "EMPTY": ""}
    assert avaya_cfg.parse_settings(avaya_cfg.render_settings(settings)) == settings


def test_firmware_authenticity_is_the_signature_header():
    assert avaya_cfg.is_authentic_firmware(avaya_cfg.sign_firmware(b"image"))
    assert not avaya_cfg.is_authentic_firmware(b"image")
    assert not avaya_cfg.is_authentic_firmware(b"x" + avaya_cfg.sign_firmware(b"image"))

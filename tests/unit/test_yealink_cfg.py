"""Yealink .cfg text format: the version header rule, comments, 'key = value', %NULL%."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.wire.yealink_cfg import NotAYealinkConfig, parse, render


def test_typical_file():
    data = (
        b"#!version:1.0.0.1\n"
        b"## a comment line\n"
        b"# another one = with an equals sign\n"
        b"\n"
        b"static.network.lldp.enable = 1\n"
        b"account.1.label=Desk 7\n"
        b"   lang.gui   =   English   \n"
        b"account.1.password = %NULL%\n"
    )
    assert parse(data) == {
        "static.network.lldp.enable": "1",
        "account.1.label": "Desk 7",
        "lang.gui": "English",
        "account.1.password": "",
    }


def test_settings_keep_file_order_and_the_last_value_wins():
    data = b"#!version:1.0.0.1\nb = 1\na = 2\nb = 3\n"
    settings = parse(data)
    assert list(settings) == ["b", "a"] and settings["b"] == "3"


def test_value_may_contain_equals_signs_and_hashes():
    data = b"#!version:1.0.0.1\nstatic.auto_provision.server.url = http://h/p?a=b#frag\n"
    assert parse(data) == {"static.auto_provision.server.url": "http://h/p?a=b#frag"}


def test_lines_that_are_not_assignments_are_skipped():
    data = b"#!version:1.0.0.1\njust words\n= no key\nreal.key = 1\n"
    assert parse(data) == {"real.key": "1"}


def test_empty_value_is_kept_as_empty():
    assert parse(b"#!version:1.0.0.1\nx.y =\n") == {"x.y": ""}


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
def test_windows_and_old_mac_line_endings(newline):
    data = newline.join([b"#!version:1.0.0.1", b"a = 1", b"b = 2", b""])
    assert parse(data) == {"a": "1", "b": "2"}


def test_utf8_bom_before_the_header_is_accepted():
    assert parse("\ufeff#!version:1.0.0.1\na = 1\n".encode("utf-8")) == {"a": "1"}


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"a = 1\n",
        b"\n#!version:1.0.0.1\na = 1\n",        # the header must be the first line
        b"#!version:2.0.0.0\na = 1\n",
        b"# version:1.0.0.1\na = 1\n",
        b"<?xml version='1.0'?><settings/>\n",
    ],
)
def test_missing_or_wrong_header_is_rejected(data):
    with pytest.raises(NotAYealinkConfig) as caught:
        parse(data)
    assert "#!version:1.0.0.1" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_header_can_be_waived():
    assert parse(b"a = 1\n", require_header=False) == {"a": "1"}
    assert parse(b"", require_header=False) == {}


def test_invalid_utf8_does_not_crash():
    settings = parse(b"#!version:1.0.0.1\nlabel = caf\xe9\n")
    assert settings["label"].startswith("caf") and len(settings["label"]) == 4


def test_render_writes_the_header_and_null_for_empty():
    data = render({"a.b": "1", "c": ""})
    lines = data.decode().splitlines()
    assert lines[0] == "#!version:1.0.0.1"
    assert lines[1:] == ["a.b = 1", "c = %NULL%"]
    assert data.endswith(b"\n")


_KEY = st.text("abcdefghijklmnopqrstuvwxyz0123456789._", min_size=1, max_size=30).filter(lambda k: not k.startswith("#"))
# Values as a phone would see them: no line breaks, no surrounding spaces, not the NULL marker.
_VALUE = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\x85"),
                 max_size=30).map(str.strip).filter(lambda v: v != "%NULL%")


@given(st.dictionaries(_KEY, _VALUE, max_size=15))
@settings(max_examples=60)
def test_render_then_parse_round_trips(settings_):
    assert parse(render(settings_)) == settings_

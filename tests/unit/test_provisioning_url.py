"""Provisioning server values as phones read them (DHCP option 66/43/160, settings)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labsim.wire.provisioning_url import BadProvisioningUrl, ServerUrl, parse_server


@pytest.mark.parametrize(
    "value, scheme, host, port, path",
    [
        ("10.1.0.5", "tftp", "10.1.0.5", 69, "/"),
        ("prov.example.com", "tftp", "prov.example.com", 69, "/"),
        ("10.1.0.5:6969", "tftp", "10.1.0.5", 6969, "/"),
        ("10.1.0.5/phones", "tftp", "10.1.0.5", 69, "/phones/"),
        ("tftp://10.1.0.5", "tftp", "10.1.0.5", 69, "/"),
        ("ftp://10.1.0.5/cfg/", "ftp", "10.1.0.5", 21, "/cfg/"),
        ("http://10.1.0.5", "http", "10.1.0.5", 80, "/"),
        ("http://10.1.0.5:8080/yealink", "http", "10.1.0.5", 8080, "/yealink/"),
        ("https://Prov.Example.COM/a/b/", "https", "prov.example.com", 443, "/a/b/"),
        ("HTTP://10.1.0.5/", "http", "10.1.0.5", 80, "/"),
        ("http://10.1.0.5/dir/y000000000066.cfg", "http", "10.1.0.5", 80, "/dir/"),
        ("  http://10.1.0.5/\x00", "http", "10.1.0.5", 80, "/"),  # DHCP strings often end in NUL
        ("http://[::1]:8080/p/", "http", "::1", 8080, "/p/"),
    ],
)
def test_parse_server(value, scheme, host, port, path):
    server = parse_server(value)
    assert (server.scheme, server.host, server.port, server.path) == (scheme, host, port, path)
    assert server.user is None and server.password is None


@pytest.mark.parametrize(
    "value, user, password",
    [
        ("ftp://alice:s3cret@10.1.0.5/", "alice", "s3cret"),
        ("ftp://alice@10.1.0.5/", "alice", None),
        ("ftp://alice:pa:ss@10.1.0.5/", "alice", "pa:ss"),          # only the first ':' separates
        ("ftp://alice:p@ss@10.1.0.5/", "alice", "p@ss"),             # the last '@' ends the userinfo
        ("http://al%40ce:p%3As%20s@10.1.0.5/", "al@ce", "p:s s"),    # percent-encoding is undone
        ("http://:onlypass@10.1.0.5/", "", "onlypass"),
    ],
)
def test_credentials(value, user, password):
    server = parse_server(value)
    assert (server.user, server.password) == (user, password)
    assert server.host == "10.1.0.5"


def test_avaya_semicolon_credentials_only_when_asked():
    value = "ftp://alice;s3cret@10.1.0.5/"
    avaya = parse_server(value, credential_separators=":;")
    assert (avaya.user, avaya.password) == ("alice", "s3cret")
    plain = parse_server(value)
    assert (plain.user, plain.password) == ("alice;s3cret", None)
    # With both accepted, the first separator listed wins when both appear.
    both = parse_server("ftp://a;b:c@10.1.0.5/", credential_separators=":;")
    assert (both.user, both.password) == ("a;b", "c")


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("", "empty"),
        ("  \x00 ", "empty"),
        ("sftp://10.1.0.5/", "unsupported scheme"),
        ("file:///etc/", "unsupported scheme"),
        ("http://10.1.0.5:0/", "bad port"),
        ("http://10.1.0.5:65536/", "bad port"),
        ("http://10.1.0.5:80a/", "bad port"),
        ("http://10.1.0.5:/", "bad port"),
        ("ftp://alice:pw@/", "no host"),
        ("http:///path/", "no host"),
    ],
)
def test_bad_values(value, fragment):
    with pytest.raises(BadProvisioningUrl) as caught:
        parse_server(value)
    assert fragment in str(caught.value)


def test_port_limits_inclusive():
    assert parse_server("10.1.0.5:1").port == 1
    assert parse_server("10.1.0.5:65535").port == 65535


@pytest.mark.parametrize(
    "value, filename, url",
    [
        ("10.1.0.5", "y000000000066.cfg", "tftp://10.1.0.5/y000000000066.cfg"),
        ("http://10.1.0.5:80/a/", "x.cfg", "http://10.1.0.5/a/x.cfg"),      # default port left out
        ("http://10.1.0.5:8080/a", "x.cfg", "http://10.1.0.5:8080/a/x.cfg"),
        ("ftp://u:p@10.1.0.5/cfg/", "/x.cfg", "ftp://10.1.0.5/cfg/x.cfg"),   # no credentials, no '//'
        ("https://h/", "dir/my file.cfg", "https://h/dir/my%20file.cfg"),
    ],
)
def test_file_url(value, filename, url):
    assert parse_server(value).file_url(filename) == url


def test_str_is_the_folder_url_and_parses_back():
    server = parse_server("HTTP://u:p@Prov:8080/a/b/file.cfg")
    assert str(server) == "http://prov:8080/a/b/"
    again = parse_server(str(server))
    assert (again.scheme, again.host, again.port, again.path) == (server.scheme, server.host, server.port, server.path)


_LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12).map(lambda s: "h" + s)
_hosts = st.lists(_LABEL, min_size=1, max_size=4).map(".".join)
_WORD = st.text("ABCabc0129_-", min_size=1, max_size=10)
_segments = st.lists(_WORD, max_size=4)


@given(st.sampled_from(["tftp", "ftp", "http", "https"]), _hosts, st.integers(1, 65535), _segments,
       _WORD.map(lambda w: w + ".cfg"))
@settings(max_examples=60)
def test_file_url_round_trip(scheme, host, port, segments, filename):
    folder = "/" + "".join(s + "/" for s in segments)
    server = parse_server(f"{scheme}://{host}:{port}{folder}")
    assert (server.scheme, server.host, server.port, server.path) == (scheme, host, port, folder)
    parts = urlsplit(server.file_url(filename))
    assert parts.scheme == scheme and parts.hostname == host
    assert (parts.port or {"tftp": 69, "ftp": 21, "http": 80, "https": 443}[scheme]) == port
    assert parts.path == folder + filename


def test_server_url_is_immutable():
    server = ServerUrl("http", "h", 80, "/")
    with pytest.raises(Exception):
        server.host = "other"  # type: ignore[misc]


def test_ipv6_host_keeps_its_brackets():
    assert parse_server("http://[::1]:8080/p/").file_url("x.cfg") == "http://[::1]:8080/p/x.cfg"


def test_malformed_ipv6_value_is_a_bad_provisioning_url():
    with pytest.raises(BadProvisioningUrl):
        parse_server("http://[::1/")


def test_split_userinfo_takes_the_credentials_out_of_a_file_url():
    from labsim.wire.provisioning_url import split_userinfo

    assert split_userinfo("ftp://prov:s3%40cret@127.0.0.1:2121/a/b.xml?x=1") == (
        "ftp://127.0.0.1:2121/a/b.xml?x=1", "prov", "s3@cret")
    assert split_userinfo("http://admin@h/c.cfg") == ("http://h/c.cfg", "admin", None)
    assert split_userinfo("tftp://h/c.cfg") == ("tftp://h/c.cfg", None, None)

"""Client-side HTTP authentication: Digest (RFC 2617 / RFC 7616) checked against the RFCs'
worked examples, challenge parsing, and the Basic header (RFC 7617)."""

from __future__ import annotations

import hashlib
import re
from types import SimpleNamespace

import pytest

from labsim.transport.http_fetch import _authorization
from labsim.wire.http_auth import DigestChallenge, parse_challenges


def fields(header: str) -> dict[str, str]:
    """The parameters of an Authorization header, unquoted (test-side parser)."""
    assert header.startswith("Digest ")
    return {k: v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', header[len("Digest "):])}


# RFC 2617 section 3.5.
RFC2617_CHALLENGE = ('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                     'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"')


def test_rfc2617_worked_example():
    (challenge,) = parse_challenges([RFC2617_CHALLENGE])
    assert (challenge.realm, challenge.nonce, challenge.opaque) == (
        "testrealm@host.com", "dcd98b7102dd2f0e8b11d0f600bfb0c093", "5ccc069c403ebaf9f0171e9517f40e41")
    assert challenge.qop is not None  # "auth" is among the offered qop values
    header = challenge.authorization("Mufasa", "Circle Of Life", "GET", "/dir/index.html", cnonce="0a4f113b", nc=1)
    got = fields(header)
    assert got["response"] == "6629fae49393a05397450978507c4ef1"
    assert got["username"] == "Mufasa" and got["realm"] == "testrealm@host.com"
    assert got["uri"] == "/dir/index.html" and got["qop"] == "auth" and got["nc"] == "00000001"
    assert got["cnonce"] == "0a4f113b" and got["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"


# RFC 7616 section 3.9.1: the same user against a SHA-256 and an MD5 challenge.
RFC7616 = dict(realm="http-auth@example.org", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
               opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize("algorithm, response", [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_rfc7616_worked_examples(algorithm, response):
    header = (f'Digest realm="{RFC7616["realm"]}", qop="auth, auth-int", algorithm={algorithm}, '
              f'nonce="{RFC7616["nonce"]}", opaque="{RFC7616["opaque"]}"')
    (challenge,) = parse_challenges([header])
    got = fields(challenge.authorization("Mufasa", "Circle of Life", "GET", "/dir/index.html",
                                         cnonce=RFC7616_CNONCE, nc=1))
    assert got["response"] == response
    assert got["algorithm"] == algorithm and got["opaque"] == RFC7616["opaque"]


def _h(text: str, hash_=hashlib.md5) -> str:
    return hash_(text.encode()).hexdigest()


def test_without_qop_the_rfc2069_response_is_used():
    challenge = DigestChallenge(realm="r", nonce="n123")
    got = fields(challenge.authorization("u", "p", "GET", "/f.cfg", cnonce="c"))
    assert got["response"] == _h(f"{_h('u:r:p')}:n123:{_h('GET:/f.cfg')}")
    assert "qop" not in got and "nc" not in got and "cnonce" not in got and "opaque" not in got


@pytest.mark.parametrize("algorithm, hash_", [("MD5-sess", hashlib.md5), ("SHA-256-sess", hashlib.sha256)])
def test_sess_algorithms_hash_the_nonce_and_cnonce_into_ha1(algorithm, hash_):
    challenge = DigestChallenge(realm="r", nonce="n", qop="auth", algorithm=algorithm)
    got = fields(challenge.authorization("u", "p", "GET", "/x", cnonce="cn", nc=2))
    ha1 = _h(f"{_h('u:r:p', hash_)}:n:cn", hash_)
    assert got["response"] == _h(f"{ha1}:n:00000002:cn:auth:{_h('GET:/x', hash_)}", hash_)


def test_nonce_count_is_eight_hex_digits():
    challenge = DigestChallenge(realm="r", nonce="n", qop="auth")
    assert fields(challenge.authorization("u", "p", "GET", "/", cnonce="c", nc=255))["nc"] == "000000ff"


def test_a_fresh_cnonce_each_time_when_none_is_given():
    challenge = DigestChallenge(realm="r", nonce="n", qop="auth")
    first = fields(challenge.authorization("u", "p", "GET", "/"))
    second = fields(challenge.authorization("u", "p", "GET", "/"))
    assert first["cnonce"] != second["cnonce"] and len(first["cnonce"]) >= 8
    # The response must use the cnonce it announces.
    ha1, ha2 = _h("u:r:p"), _h("GET:/")
    assert first["response"] == _h(f"{ha1}:n:00000001:{first['cnonce']}:auth:{ha2}")


# --- parsing challenges ------------------------------------------------------------------


def test_parse_challenges_in_order_skipping_unknown_schemes():
    found = parse_challenges([
        "Negotiate abc",
        'Basic realm="prov"',
        'DIGEST realm="prov", nonce=abc123, qop=auth',
        'Digest realm="no nonce here"',
        "Bearer",
    ])
    assert found[0] == "basic"
    assert isinstance(found[1], DigestChallenge) and (found[1].realm, found[1].nonce) == ("prov", "abc123")
    assert found[1].qop is not None
    assert len(found) == 2


def test_realm_with_commas_and_spaces_inside_quotes():
    (challenge,) = parse_challenges(['Digest realm="Acme, Inc. phones", nonce="n1"'])
    assert challenge.realm == "Acme, Inc. phones" and challenge.nonce == "n1"


def test_only_auth_int_offered_means_no_qop_auth():
    (challenge,) = parse_challenges(['Digest realm="r", nonce="n", qop="auth-int"'])
    assert challenge.qop is None


def test_default_algorithm_is_md5():
    (challenge,) = parse_challenges(['Digest realm="r", nonce="n"'])
    assert challenge.algorithm.upper() == "MD5"


# --- what a phone sends back (transport/http_fetch) --------------------------------------

ALADDIN = SimpleNamespace(user="Aladdin", password="open sesame")


def test_basic_header_rfc7617_example():
    header = _authorization([b'Basic realm="WallyWorld"'], ALADDIN, "http://10.1.0.5/a.cfg")
    assert header == b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="


def test_digest_is_preferred_over_basic_and_the_uri_keeps_the_query():
    header = _authorization([b'Basic realm="x"', b'Digest realm="x", nonce="n", qop="auth"'], ALADDIN,
                            "http://10.1.0.5:8080/dir/a.cfg?mac=001565000001")
    got = fields(header.decode())
    assert got["uri"] == "/dir/a.cfg?mac=001565000001" and got["username"] == "Aladdin"


def test_no_usable_challenge_means_no_header():
    assert _authorization([b"Negotiate x"], ALADDIN, "http://h/") is None


def test_quoted_pair_in_realm():
    (challenge,) = parse_challenges(['Digest realm="say \\"hi\\", friend", nonce="n"'])
    assert challenge.realm == 'say "hi", friend'


def test_unknown_algorithm_is_not_answered_with_md5_under_its_name():
    found = parse_challenges(['Digest realm="r", nonce="n", qop="auth", algorithm=SHA-512-256'])
    if not found:
        return  # skipping the challenge is a correct answer
    got = fields(found[0].authorization("u", "p", "GET", "/x", cnonce="c"))

    def h(text: str) -> str:
        return hashlib.new("sha512_256", text.encode()).hexdigest()

    assert got["response"] == h(f"{h('u:r:p')}:n:00000001:c:auth:{h('GET:/x')}")

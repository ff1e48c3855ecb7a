"""The HTTP server over real loopback sockets (trial), with Python's http.client as an
independent client run in a thread so the reactor stays free to serve it."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import ssl

import pytest
from twisted.internet import defer, reactor, threads
from twisted.internet.task import deferLater
from twisted.trial import unittest as trial

from labsim.services.http import (
    HttpAuthenticator,
    HttpAuthRule,
    HttpServerConfig,
    mac_from_user_agent,
    parse_auth_params,
    safe_relative_path,
)
from labsim.services.http_web import start_http_server

FILE_BODY = b"#!version:1.0.0.1\naccount.1.enable = 1\n" * 100  # ~4 KB


def fetch(port, path, method="GET", headers=None, conn=None, tls_ca=None):
    """(status, headers dict lower-cased, body). Reuses ``conn`` when given (keep-alive)."""
    if conn is None:
        if tls_ca is not None:  # "" means the system's CAs only
            ctx = ssl.create_default_context(cafile=tls_ca or None)
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    # skip_host + explicit path: http.client sends the path exactly as given (no normalising)
    conn.putrequest(method, path, skip_accept_encoding=True)
    for key, value in (headers or {}).items():
        conn.putheader(key, value)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def md5_hex(text):
    return hashlib.md5(text.encode()).hexdigest()


def digest_authorization(challenge, user, password, method, uri, nc="00000001", cnonce="0a4f113b"):
    """A client's answer to a Digest challenge, written from RFC 2617 3.2.2."""
    p = parse_auth_params(challenge.partition(" ")[2])
    ha1 = md5_hex(f"{user}:{p['realm']}:{password}")
    ha2 = md5_hex(f"{method}:{uri}")
    response = md5_hex(f"{ha1}:{p['nonce']}:{nc}:{cnonce}:auth:{ha2}")
    return (
        f'Digest username="{user}", realm="{p["realm"]}", nonce="{p["nonce"]}", uri="{uri}", '
        f'qop=auth, nc={nc}, cnonce="{cnonce}", response="{response}", opaque="{p["opaque"]}", algorithm=MD5'
    )


# --- pure pieces ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "ua, mac",
    [
        ("Yealink SIP-T46S 66.85.0.5 00:15:65:13:ae:0b", "00:15:65:13:ae:0b"),
        ("yealink SIP-T54W 96.86.0.100 805EC0A1B2C3", "80:5e:c0:a1:b2:c3"),
        ("Phone 00-15-65-13-AE-0B", "00:15:65:13:ae:0b"),
        ("curl/8.5.0", None),
        ("x 0011223344556677", None),  # 16 hex digits is not a MAC
        ("x 00:15:65:13:ae:0b:ff", None),  # nor 7 groups
        (None, None),
    ],
)
def test_mac_from_user_agent(ua, mac):
    assert mac_from_user_agent(ua) == mac


@pytest.mark.parametrize(
    "raw, rel",
    [
        (b"/a/b.cfg", b"a/b.cfg"),
        (b"//a/./b.cfg", b"a/b.cfg"),
        (b"/", b""),
        (b"/%252e%252e/x", b"%2e%2e/x"),  # decoded once: a literal name, not a traversal
        (b"/../x", None),
        (b"/%2e%2e/x", None),
        (b"/a/%2E%2E%2F%2e%2e%2fx", None),
        (b"/..%2fx", None),
        (b"/x%00.cfg", None),
    ],
)
def test_safe_relative_path(raw, rel):
    assert safe_relative_path(raw) == rel


def test_digest_rfc2617_example():
    """The worked example of RFC 2617 section 3.5 verifies (nonce freshness aside)."""
    rule = HttpAuthRule("/dir/*", "digest", {"Mufasa": "Circle Of Life"}, realm="testrealm@host.com")
    auth = HttpAuthenticator([rule], clock=lambda: 0.0)
    auth._nonce_state = lambda nonce: "good"  # the RFC's nonce is not one we issued
    header = (
        b'Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
        b'uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", '
        b'response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    assert auth.check(rule, b"GET", b"/dir/index.html", header) is None
    assert auth.check(rule, b"GET", b"/dir/other.html", header) is not None  # uri is covered
    assert auth.check(rule, b"POST", b"/dir/index.html", header) is not None  # and the method


def test_digest_nonce_expiry_is_stale():
    now = [1000.0]
    rule = HttpAuthRule("*", "digest", {"u": "p"})
    auth = HttpAuthenticator([rule], clock=lambda: now[0])
    challenge = auth.digest_challenge(rule)
    header = digest_authorization(challenge, "u", "p", "GET", "/f").encode()
    assert auth.check(rule, b"GET", b"/f", header) is None
    now[0] += 4000
    again = auth.check(rule, b"GET", b"/f", header)
    assert again is not None and "stale=true" in again
    # a forged nonce is not "stale", just wrong
    forged = header.replace(parse_auth_params(challenge)["nonce"].encode(), b"3e8.0000")
    assert "stale" not in auth.check(rule, b"GET", b"/f", forged)


# --- over sockets --------------------------------------------------------------------


class HttpServerTests(trial.TestCase):
    timeout = 20

    def setUp(self):
        base = self.mktemp()
        self.root = os.path.join(base, "root")
        os.makedirs(os.path.join(self.root, "secure"))
        os.makedirs(os.path.join(self.root, "digest"))
        os.makedirs(os.path.join(self.root, "sub"))
        with open(os.path.join(base, "secret.txt"), "wb") as f:
            f.write(b"outside the root")
        self.write("y000000000066.cfg", FILE_BODY)
        self.write("secure/a.cfg", b"basic protected")
        self.write("digest/b.cfg", b"digest protected")
        self.write("sub/c.cfg", b"c")
        os.symlink(os.path.abspath(base), os.path.join(self.root, "escape"))  # dir outside
        os.symlink(os.path.join(os.path.abspath(base), "secret.txt"), os.path.join(self.root, "leak.txt"))
        os.symlink("y000000000066.cfg", os.path.join(self.root, "alias.cfg"))  # stays inside: fine

    def write(self, rel, data):
        with open(os.path.join(self.root, rel), "wb") as f:
            f.write(data)

    def start(self, **kw):
        config = HttpServerConfig(root=self.root, **kw)
        handle = start_http_server(reactor, config, port=0)
        self.addCleanup(handle.stop)
        return handle

    def get(self, handle, path, **kw):
        return threads.deferToThread(fetch, handle.port, path, **kw)

    @defer.inlineCallbacks
    def test_get_head_404_405_and_keepalive(self):
        handle = self.start()
        conn = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=5)
        self.addCleanup(conn.close)
        status, headers, body = yield self.get(handle, "/y000000000066.cfg", conn=conn)
        self.assertEqual((status, body), (200, FILE_BODY))
        self.assertEqual(headers["content-length"], str(len(FILE_BODY)))
        self.assertEqual(headers["content-type"], "text/plain")
        status, headers, body = yield self.get(handle, "/y000000000066.cfg", method="HEAD", conn=conn)
        self.assertEqual((status, body, headers["content-length"]), (200, b"", str(len(FILE_BODY))))
        status, _, body = yield self.get(handle, "/alias.cfg", conn=conn)
        self.assertEqual((status, body), (200, FILE_BODY))
        status, _, _ = yield self.get(handle, "/missing.cfg", conn=conn)
        self.assertEqual(status, 404)
        status, headers, _ = yield self.get(handle, "/y000000000066.cfg", method="POST", conn=conn)
        self.assertEqual((status, headers["allow"]), (405, "GET, HEAD"))
        # all five went over one connection
        self.assertEqual(len(handle.site.open_channels), 1)
        self.assertEqual(handle.stats.requests, 5)
        self.assertEqual(handle.stats.status, {200: 3, 404: 1, 405: 1})
        self.assertGreaterEqual(handle.stats.bytes_sent, 2 * len(FILE_BODY))

    @defer.inlineCallbacks
    def test_cache_follows_file_changes_and_large_files_stream(self):
        handle = self.start()
        _, _, body = yield self.get(handle, "/sub/c.cfg")
        self.assertEqual(body, b"c")
        self.write("sub/c.cfg", b"d")  # same size: the mtime must tell
        os.utime(os.path.join(self.root, "sub/c.cfg"), ns=(1, 10**18))
        _, _, body = yield self.get(handle, "/sub/c.cfg")
        self.assertEqual(body, b"d")
        big = os.urandom(3 << 20)
        self.write("fw.rom", big)
        status, headers, body = yield self.get(handle, "/fw.rom")
        self.assertEqual((status, int(headers["content-length"])), (200, len(big)))
        self.assertEqual(hashlib.md5(body).digest(), hashlib.md5(big).digest())
        status, headers, body = yield self.get(handle, "/fw.rom", method="HEAD")
        self.assertEqual((status, body, int(headers["content-length"])), (200, b"", len(big)))

    @defer.inlineCallbacks
    def test_traversal_corpus_never_leaves_root(self):
        handle = self.start()
        corpus = [
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E/secret.txt",
            "/%2e%2e%2fsecret.txt",
            "/..%2fsecret.txt",
            "/.%2e/secret.txt",
            "/sub/../../secret.txt",
            "/sub/%2e%2e/%2e%2e/secret.txt",
            "/%252e%252e/secret.txt",
            "/escape/secret.txt",
            "/leak.txt",
            "/secret.txt%00.cfg",
            "/..\\secret.txt",
        ]
        for path in corpus:
            status, _, body = yield self.get(handle, path)
            self.assertIn(status, (403, 404), path)
            self.assertNotIn(b"outside the root", body, path)

    @defer.inlineCallbacks
    def test_directories_listing_off_and_on(self):
        handle = self.start()
        for path in ("/", "/sub", "/sub/"):
            status, _, body = yield self.get(handle, path)
            self.assertEqual(status, 403, path)
            self.assertNotIn(b"c.cfg", body)
        listing = self.start(directory_listing=True)
        status, headers, body = yield self.get(listing, "/sub/")
        self.assertEqual(status, 200)
        self.assertIn(b'href="/sub/c.cfg"', body)
        self.assertTrue(headers["content-type"].startswith("text/html"))

    @defer.inlineCallbacks
    def test_a_listing_shows_a_name_that_is_not_utf8(self):
        # Found by the fuzzer (seed 3201): an upload named with a byte that is no UTF-8
        # (a0\x80.log) made the folder's listing fail to encode, and the request crash.
        with open(os.path.join(os.fsencode(self.root), b"sub", b"a\x80.log"), "wb") as f:
            f.write(b"x")
        listing = self.start(directory_listing=True)
        status, _, body = yield self.get(listing, "/sub/")
        self.assertEqual(status, 200)
        self.assertIn('href="/sub/a%80.log">a\ufffd.log</a>'.encode(), body)
        self.assertIn(b'href="/sub/c.cfg"', body)
        status, _, body = yield self.get(listing, "/sub/a%80.log")  # the link leads to the file
        self.assertEqual((status, body), (200, b"x"))

    @defer.inlineCallbacks
    def test_basic_and_digest(self):
        handle = self.start(
            auth=[
                HttpAuthRule("/secure/*", "basic", {"admin": "s3cret"}),
                HttpAuthRule("/digest/*", "digest", {"phone": "pw"}, realm="prov"),
            ]
        )
        status, headers, _ = yield self.get(handle, "/secure/a.cfg")
        self.assertEqual(status, 401)
        self.assertTrue(headers["www-authenticate"].startswith('Basic realm="labsim"'))
        good = "Basic " + base64.b64encode(b"admin:s3cret").decode()
        bad = "Basic " + base64.b64encode(b"admin:wrong").decode()
        status, _, body = yield self.get(handle, "/secure/a.cfg", headers={"Authorization": good})
        self.assertEqual((status, body), (200, b"basic protected"))
        status, _, _ = yield self.get(handle, "/secure/a.cfg", headers={"Authorization": bad})
        self.assertEqual(status, 401)
        # a missing file under a protected path still asks for credentials first
        status, _, _ = yield self.get(handle, "/secure/nothing.cfg")
        self.assertEqual(status, 401)
        # encoding the path does not dodge the rule
        status, _, _ = yield self.get(handle, "/%73ecure/a.cfg")
        self.assertEqual(status, 401)
        # unprotected paths need nothing
        status, _, _ = yield self.get(handle, "/sub/c.cfg")
        self.assertEqual(status, 200)

        status, headers, _ = yield self.get(handle, "/digest/b.cfg")
        challenge = headers["www-authenticate"]
        self.assertEqual(status, 401)
        self.assertTrue(challenge.startswith("Digest "))
        params = parse_auth_params(challenge.partition(" ")[2])
        self.assertEqual((params["realm"], params["qop"], params["algorithm"]), ("prov", "auth", "MD5"))
        answer = digest_authorization(challenge, "phone", "pw", "GET", "/digest/b.cfg")
        status, _, body = yield self.get(handle, "/digest/b.cfg", headers={"Authorization": answer})
        self.assertEqual((status, body), (200, b"digest protected"))
        wrong = digest_authorization(challenge, "phone", "nope", "GET", "/digest/b.cfg")
        status, _, _ = yield self.get(handle, "/digest/b.cfg", headers={"Authorization": wrong})
        self.assertEqual(status, 401)
        # a Basic answer to a Digest rule is refused
        status, _, _ = yield self.get(handle, "/digest/b.cfg", headers={"Authorization": "Basic cGhvbmU6cHc="})
        self.assertEqual(status, 401)

    @defer.inlineCallbacks
    def test_access_log_names_the_phone(self):
        handle = self.start()
        ua = "Yealink SIP-T46S 66.85.0.5 00:15:65:13:ae:0b"
        yield self.get(handle, "/y000000000066.cfg", headers={"User-Agent": ua})
        yield self.get(handle, "/nothere.cfg?x=1", headers={"User-Agent": "curl/8"})
        first, second = list(handle.access_log)
        self.assertEqual(
            {k: first[k] for k in ("client", "method", "path", "status", "mac", "user_agent")},
            {
                "client": "127.0.0.1",
                "method": "GET",
                "path": "/y000000000066.cfg",
                "status": 200,
                "mac": "00:15:65:13:ae:0b",
                "user_agent": ua,
            },
        )
        self.assertEqual((second["status"], second["mac"], second["path"]), (404, None, "/nothere.cfg?x=1"))
        self.assertIsInstance(first["time"], float)

    @defer.inlineCallbacks
    def test_access_log_is_bounded(self):
        config = HttpServerConfig(root=self.root)
        handle = start_http_server(reactor, config, port=0, access_log_size=2)
        self.addCleanup(handle.stop)
        for path in ("/a", "/b", "/c"):
            yield self.get(handle, path)
        self.assertEqual([e["path"] for e in handle.access_log], ["/b", "/c"])
        self.assertEqual(handle.stats.requests, 3)

    @defer.inlineCallbacks
    def test_tls_self_signed_cert_verifies_for_loopback(self):
        cert_dir = self.mktemp()
        handle = self.start(tls=True, cert_dir=cert_dir)
        ca = os.path.join(cert_dir, "cert.pem")
        self.assertTrue(os.path.exists(os.path.join(cert_dir, "key.pem")))
        self.assertEqual(os.stat(os.path.join(cert_dir, "key.pem")).st_mode & 0o077, 0)
        status, _, body = yield self.get(handle, "/y000000000066.cfg", tls_ca=ca)
        self.assertEqual((status, body), (200, FILE_BODY))
        # and a client that trusts nothing refuses it: it is a real certificate check
        with self.assertRaises(ssl.SSLCertVerificationError):
            yield self.get(handle, "/y000000000066.cfg", tls_ca="")

    @defer.inlineCallbacks
    def test_stop_closes_keepalive_connections(self):
        handle = start_http_server(reactor, HttpServerConfig(root=self.root), port=0)
        conn = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=5)
        self.addCleanup(conn.close)
        yield self.get(handle, "/sub/c.cfg", conn=conn)
        self.assertEqual(len(handle.site.open_channels), 1)
        yield handle.stop()
        self.assertEqual(len(handle.site.open_channels), 0)


def test_idle_keepalive_connections_are_closed(tmp_path):
    """On a fake clock: a connection is closed once idle for the timeout, not before."""
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from labsim.services.http_static import StaticRoot
    from labsim.services.http_web import ProvisioningSite

    (tmp_path / "a.cfg").write_bytes(b"a")
    clock = Clock()
    config = HttpServerConfig(root=str(tmp_path))
    site = ProvisioningSite(StaticRoot(config, HttpAuthenticator([], clock.seconds)), clock, 10, idle_timeout=60)
    site.startFactory()
    try:
        channel = site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        clock.pump([15] * 2)  # t=30
        channel.dataReceived(b"GET /a.cfg HTTP/1.1\r\nHost: x\r\n\r\n")
        assert transport.value().startswith(b"HTTP/1.1 200") and transport.value().endswith(b"\r\n\r\na")
        clock.pump([15] * 4)  # t=90: idle exactly 60 s
        assert not transport.disconnecting
        clock.pump([15])  # t=105: idle 75 s
        assert transport.disconnecting
    finally:
        site.stopFactory()
    assert not clock.getDelayedCalls()


def test_root_must_exist(tmp_path):
    with pytest.raises(ValueError):
        start_http_server(reactor, HttpServerConfig(root=str(tmp_path / "nope")), port=0)


def test_auth_rule_scheme_checked():
    with pytest.raises(ValueError):
        HttpAuthRule("*", "ntlm", {})
    assert re.match(r"^Basic", HttpAuthenticator([], clock=lambda: 0).check(HttpAuthRule("*", "basic", {}), b"GET", b"/", None))


class StreamingHangupTests(trial.TestCase):
    timeout = 20

    @defer.inlineCallbacks
    def test_client_hanging_up_mid_stream_is_harmless(self):
        root = self.mktemp()
        os.makedirs(root)
        with open(os.path.join(root, "fw.rom"), "wb") as f:
            f.write(os.urandom(8 << 20))
        handle = start_http_server(reactor, HttpServerConfig(root=root), port=0)
        self.addCleanup(handle.stop)

        def hang_up():
            import socket

            with socket.create_connection(("127.0.0.1", handle.port), timeout=5) as s:
                s.sendall(b"GET /fw.rom HTTP/1.1\r\nHost: x\r\n\r\n")
                s.recv(65536)

        yield threads.deferToThread(hang_up)
        # the server is still fine; trial fails the test if an error was logged
        status, _, body = yield threads.deferToThread(fetch, handle.port, "/nothing")
        self.assertEqual(status, 404)
        while handle.site.open_channels:  # let the aborted stream wind down
            yield deferLater(reactor, 0.01)
        self.assertEqual(handle.stats.status.get(200, 0), 1)


# --- the request/response path, byte for byte (no sockets) -------------------------------------


class _Wire:
    """A site and one connection on a StringTransport: bytes in, responses out (framed by
    the phones' own response parser)."""

    def __init__(self, root):
        from twisted.internet.address import IPv4Address
        from twisted.internet.task import Clock
        from twisted.internet.testing import StringTransport

        from labsim.services.http_static import StaticRoot
        from labsim.services.http_web import ProvisioningSite
        from labsim.wire.http1 import ResponseParser

        self.clock = Clock()
        config = HttpServerConfig(root=str(root))
        self.site = ProvisioningSite(StaticRoot(config, HttpAuthenticator([], self.clock.seconds)), self.clock, 100)
        self.channel = self.site.buildProtocol(None)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.9", 5555))
        self.channel.makeConnection(self.transport)
        self.parser = ResponseParser()

    def send(self, data: bytes, *methods: bytes):
        for method in methods:
            self.parser.expect(method)
        self.channel.dataReceived(data)
        out = self.transport.value()
        self.transport.clear()
        return self.parser.feed(out)


@pytest.fixture
def wire(tmp_path):
    (tmp_path / "a.cfg").write_bytes(FILE_BODY)
    return _Wire(tmp_path)


def test_responses_in_one_write_carry_what_twisted_web_would_send(wire):
    (response,) = wire.send(b"GET /a.cfg HTTP/1.1\r\nHost: x\r\nUser-Agent: Yealink 00:15:65:13:ae:0b\r\n\r\n", b"GET")
    assert (response.status, response.body, response.keep_alive) == (200, FILE_BODY, True)
    assert response.header(b"content-length") == b"%d" % len(FILE_BODY)
    assert response.header(b"content-type") == b"text/plain"
    assert response.header(b"server").startswith(b"TwistedWeb/") and response.header(b"date").endswith(b" GMT")
    assert response.header(b"last-modified") is not None
    (head,) = wire.send(b"HEAD /a.cfg HTTP/1.1\r\nHost: x\r\n\r\n", b"HEAD")
    assert (head.status, head.body, head.header(b"content-length")) == (200, b"", b"%d" % len(FILE_BODY))
    (missing,) = wire.send(b"GET /nope.cfg?mac=1 HTTP/1.1\r\nHost: x\r\n\r\n", b"GET")
    assert (missing.status, missing.body) == (404, b"404 Not Found\n")
    (refused,) = wire.send(b"DELETE /a.cfg HTTP/1.1\r\nHost: x\r\n\r\n", b"DELETE")
    assert (refused.status, refused.header(b"allow")) == (405, b"GET, HEAD")
    entries = list(wire.site.access_log)
    assert [(e["method"], e["path"], e["status"], e["client"]) for e in entries] == [
        ("GET", "/a.cfg", 200, "127.0.0.9"), ("HEAD", "/a.cfg", 200, "127.0.0.9"),
        ("GET", "/nope.cfg?mac=1", 404, "127.0.0.9"), ("DELETE", "/a.cfg", 405, "127.0.0.9")]
    assert entries[0]["mac"] == "00:15:65:13:ae:0b" and wire.site.access_log[-1]["status"] == 405
    assert wire.site.stats.status == {200: 2, 404: 1, 405: 1}
    assert wire.site.stats.bytes_sent == len(FILE_BODY) + len(b"404 Not Found\n") + len(b"405 Method Not Allowed\n")


def test_pipelined_and_split_requests(wire):
    get = b"GET /a.cfg HTTP/1.1\r\nHost: x\r\n\r\n"
    responses = wire.send(get + b"HEAD /a.cfg HTTP/1.1\r\nHost: x\r\n\r\n" + get + b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
                          b"GET", b"HEAD", b"GET", b"GET")
    assert [(r.status, len(r.body)) for r in responses] == [(200, len(FILE_BODY)), (200, 0), (200, len(FILE_BODY)), (404, 14)]
    assert wire.send(get[:10], b"GET") == []
    (response,) = wire.send(get[10:])
    assert response.body == FILE_BODY


def test_connection_close_http10_and_expect(wire):
    (response,) = wire.send(b"GET /a.cfg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"GET")
    assert response.header(b"connection") == b"close" and not response.keep_alive
    assert wire.transport.disconnecting
    other = _Wire(wire.site.resource.root.decode())
    (response,) = other.send(b"GET /a.cfg HTTP/1.0\r\n\r\n", b"GET")
    assert response.body == FILE_BODY and other.transport.disconnecting
    third = _Wire(wire.site.resource.root.decode())
    third.channel.dataReceived(b"GET /a.cfg HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n")
    assert third.transport.value().startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize("bad", [
    b"GET /a.cfg HTTP/1.1\r\nBad Name: x\r\n\r\n",
    b"GET /a.cfg HTTP/1.1\r\nX: a\x00b\r\n\r\n",
    b"GET /a.cfg HTTP/9.9\r\n\r\n",
    b"GET /a.cfg HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy",
])
def test_malformed_requests_still_get_twisted_webs_400(wire, bad):
    wire.channel.dataReceived(bad)
    assert wire.transport.value().startswith(b"HTTP/1.1 400 Bad Request")


def test_send_now_writes_to_the_socket_only_with_nothing_queued():
    from labsim.net.tcp import can_send_now, send_now

    class Transport:
        TLS = False
        connected = True
        disconnecting = False
        _writeDisconnected = False

        def __init__(self, accepts):
            self._tempDataBuffer, self.dataBuffer, self.accepts, self.sent = [], b"", accepts, []

        def writeSomeData(self, data):
            taken = data[: self.accepts]
            self.sent.append(bytes(taken))
            return len(taken)

        def write(self, data):
            self._tempDataBuffer.append(data)

    t = Transport(accepts=1000)
    send_now(t, b"x" * 10)
    assert (t.sent, t._tempDataBuffer) == ([b"x" * 10], [])
    t = Transport(accepts=4)
    send_now(t, b"0123456789")
    send_now(t, b"abc")  # queued behind the rest: never sent ahead of it
    assert (t.sent, t._tempDataBuffer) == ([b"0123"], [b"456789", b"abc"])
    assert not can_send_now(t)  # not a twisted.internet.tcp connection

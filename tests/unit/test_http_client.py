"""The phones' HTTP client: the sans-I/O codec (``labsim.wire.http1``) on its own, fuzzed
with hypothesis; then ``HttpFetcher`` over loopback sockets (trial) against labsim's
server and against small Twisted servers that misbehave on purpose (chunked bodies,
closing idle connections, never answering)."""

from __future__ import annotations

import os
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, protocol, reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest as trial

from labsim.phones.events import Credentials
from labsim.services.http import HttpAuthRule, HttpServerConfig
from labsim.services.http_web import start_http_server
from labsim.transport.http_fetch import PHONE_HTTP_KEEP_ALIVE, HttpFetcher
from labsim.wire.http1 import (
    HttpParseError,
    ResponseParser,
    encode_request,
)

# --- the response parser -----------------------------------------------------------------------


def feed_all(parser, data: bytes, step: int | None = None):
    """Feed ``data`` whole or ``step`` bytes at a time; every response that came out."""
    if step is None:
        return parser.feed(data)
    out = []
    for i in range(0, len(data), step):
        out += parser.feed(data[i : i + step])
    return out


def test_a_request_for_a_url_beyond_ascii_carries_the_idna_host_and_a_percent_encoded_target():
    from urllib.parse import unquote_to_bytes, urlsplit

    from labsim.wire.http1 import host_field, request_target

    path, target = request_target(urlsplit("http://prüf.lab:8080/Töne/Klingel ü.wav?v=ä&x=%41"))
    assert path == b"/T%C3%B6ne/Klingel%20%C3%BC.wav"
    assert target == path + b"?v=%C3%A4&x=%41"  # an escape already there is kept as it is
    assert unquote_to_bytes(path).decode("utf-8") == "/Töne/Klingel ü.wav"  # what the server reads
    assert request_target(urlsplit("http://h/a%20b/c.cfg")) == (b"/a%20b/c.cfg", b"/a%20b/c.cfg")
    assert request_target(urlsplit("http://h")) == (b"/", b"/")
    assert host_field("prüf.lab:8080") == b"xn--prf-ioa.lab:8080" and host_field("prüf.lab") == b"xn--prf-ioa.lab"
    assert host_field("[::1]:8080") == b"[::1]:8080" and host_field("Prov.Lab") == b"Prov.Lab"
    with pytest.raises(UnicodeError):
        host_field("pr\ufffdf.lab")
    # The whole request is one a server parses: no raw space or byte beyond ASCII on its line.
    request = encode_request(b"GET", target, [(b"Host", host_field("prüf.lab:8080"))])
    assert request.startswith(b"GET /T%C3%B6ne/Klingel%20%C3%BC.wav?v=%C3%A4&x=%41 HTTP/1.1\r\nHost: xn--prf-ioa.lab:8080\r\n")


@pytest.mark.parametrize("step", [None, 1, 2, 7])
def test_content_length_and_keep_alive_whatever_the_split(step):
    parser = ResponseParser()
    parser.expect(b"GET")
    parser.expect(b"GET")
    data = (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  padded \t\r\n\r\nhello"
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nnop")
    first, second = feed_all(parser, data, step)
    assert (first.status, first.reason, first.body, first.keep_alive) == (200, b"OK", b"hello", True)
    assert first.header(b"x-a") == b"padded"
    assert (second.status, second.body) == (404, b"nop")
    assert not parser.receiving and parser.eof() is None


@pytest.mark.parametrize("step", [None, 1, 3])
def test_chunked_with_extensions_and_trailers(step):
    parser = ResponseParser()
    parser.expect(b"GET")
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;name=value\r\nhello\r\n"
            b"1A\r\n" + b"x" * 26 + b"\r\n"
            b"0\r\nExpires: never\r\n\r\n")
    (response,) = feed_all(parser, data, step)
    assert response.body == b"hello" + b"x" * 26 and response.keep_alive


def test_no_body_for_head_204_304_and_interim_responses_are_skipped():
    parser = ResponseParser()
    for method in (b"HEAD", b"GET", b"GET", b"GET"):
        parser.expect(method)
    data = (b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n"  # HEAD: the length is the GET's
            b"HTTP/1.1 204 No Content\r\n\r\n"
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    responses = parser.feed(data)
    assert [(r.status, r.body) for r in responses] == [(200, b""), (204, b""), (304, b""), (200, b"ok")]


def test_body_until_close_http10_and_connection_close():
    parser = ResponseParser()
    parser.expect(b"GET")
    assert parser.feed(b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\npart one, ") == []
    assert parser.feed(b"part two") == []
    response = parser.eof()
    assert (response.body, response.keep_alive, response.version) == (b"part one, part two", False, b"HTTP/1.0")

    parser = ResponseParser()
    parser.expect(b"GET")
    (response,) = parser.feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx")
    assert not response.keep_alive and parser.closed

    parser = ResponseParser()
    parser.expect(b"GET")
    (response,) = parser.feed(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx")
    assert response.keep_alive


def test_transfer_encoding_wins_over_content_length_and_the_connection_is_not_reused():
    parser = ResponseParser()
    parser.expect(b"GET")
    (response,) = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"2\r\nab\r\n0\r\n\r\n")
    assert (response.body, response.keep_alive) == (b"ab", False)


def test_obsolete_folding_and_bare_lf_line_ends_are_read():
    parser = ResponseParser()
    parser.expect(b"GET")
    (response,) = parser.feed(b"HTTP/1.1 200 OK\nX-Long: one\n  two\nContent-Length: 0\n\n")
    assert response.header(b"x-long") == b"one two"


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded-first: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ],
)
def test_malformed_responses_raise_the_parsers_error(data):
    parser = ResponseParser()
    parser.expect(b"GET")
    with pytest.raises(HttpParseError):
        parser.feed(data)
    with pytest.raises(HttpParseError):  # and it stays failed
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


def test_limits_and_stray_bytes():
    parser = ResponseParser(max_head_size=100)
    parser.expect(b"GET")
    with pytest.raises(HttpParseError):
        parser.feed(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 200)
    parser = ResponseParser(max_body_size=10)
    parser.expect(b"GET")
    with pytest.raises(HttpParseError):
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n")
    with pytest.raises(HttpParseError):  # nothing was asked
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\n\r\n")
    parser = ResponseParser()
    parser.expect(b"GET")
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(HttpParseError):  # closed mid-body
        parser.eof()


# A response the parser must frame, built from parts hypothesis picks.
_token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=12)
_value = st.binary(max_size=30).map(lambda b: bytes(c for c in b if c not in b"\r\n\x00").strip(b" \t"))


@st.composite
def responses(draw):
    status = draw(st.sampled_from([200, 201, 301, 401, 403, 404, 500]))
    body = draw(st.binary(max_size=300))
    fields = [(n.encode(), v) for n, v in draw(st.lists(st.tuples(_token, _value), max_size=5))
              if n.lower() not in ("content-length", "transfer-encoding", "connection")]
    head = b"HTTP/1.1 %d Whatever\r\n" % status + b"".join(n + b": " + v + b"\r\n" for n, v in fields)
    if draw(st.booleans()):
        sizes = draw(st.lists(st.integers(1, 50), max_size=10))
        chunks, rest = [], body
        for size in sizes:
            if rest:
                chunks.append(rest[:size])
                rest = rest[size:]
        if rest:
            chunks.append(rest)
        encoded = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + encoded, status, body
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body, status, body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(responses(), min_size=1, max_size=3), st.lists(st.integers(1, 64), min_size=1, max_size=20))
def test_fuzz_valid_responses_frame_exactly_whatever_the_split(items, cuts):
    data = b"".join(raw for raw, _, _ in items)
    parser = ResponseParser()
    for _ in items:
        parser.expect(b"GET")
    out, position, i = [], 0, 0
    while position < len(data):
        step = cuts[i % len(cuts)]
        out += parser.feed(data[position : position + step])
        position += step
        i += 1
    assert [(r.status, r.body) for r in out] == [(status, body) for _, status, body in items]
    assert parser.eof() is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([b"GET", b"HEAD"]), st.booleans())
def test_fuzz_junk_raises_only_the_parsers_error(junk, method, prefixed):
    parser = ResponseParser(max_head_size=256, max_body_size=1000)
    parser.expect(method)
    parser.expect(method)
    data = (b"HTTP/1.1 200 OK\r\n" + junk) if prefixed else junk
    try:
        for i in range(0, len(data), 37):
            parser.feed(data[i : i + 37])
        parser.eof()
    except HttpParseError:
        pass


# --- requests: what the client writes ---------------------------------------------------------


def test_encode_request_and_header_injection_is_refused():
    assert encode_request(b"GET", b"/a.cfg", [(b"Host", b"h"), (b"User-Agent", b"ua")]) == (
        b"GET /a.cfg HTTP/1.1\r\nHost: h\r\nUser-Agent: ua\r\n\r\n")
    assert encode_request(b"PUT", b"/u", [(b"Host", b"h")], b"xyz").endswith(b"Content-Length: 3\r\n\r\nxyz")
    for bad in ([(b"User-Agent", b"x\r\nEvil: 1")], [(b"Bad Name", b"x")], [(b"X", b"\x00")]):
        with pytest.raises(ValueError):
            encode_request(b"GET", b"/", bad)
    with pytest.raises(ValueError):
        encode_request(b"GET", b"/a b", [])


# --- the fetcher over sockets ------------------------------------------------------------------

UA = "Yealink SIP-T46S 66.85.0.5 00:15:65:00:00:01"


class ScriptedServer(protocol.Protocol):
    """Answers each request (one per read) with the next entry of ``factory.script``:
    bytes to write (a list: written in separate turns), "close" or "silent"."""

    def connectionMade(self):
        self.factory.connections.append(self)

    def dataReceived(self, data):
        self.factory.requests.append(data)
        step = self.factory.script.pop(0) if self.factory.script else "silent"
        if step == "close":
            self.transport.loseConnection()
        elif step != "silent":
            for i, piece in enumerate(step):
                reactor.callLater(0.01 * i, self.transport.write, piece)

    def connectionLost(self, reason):
        self.factory.lost += 1


class FetcherTests(trial.TestCase):
    timeout = 20

    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.root, "secure"))
        os.makedirs(os.path.join(self.root, "sub"))
        self.body = os.urandom(4096)
        with open(os.path.join(self.root, "a.cfg"), "wb") as f:
            f.write(self.body)
        with open(os.path.join(self.root, "secure", "b.cfg"), "wb") as f:
            f.write(b"digest protected")

    def fetcher(self, **kw) -> HttpFetcher:
        fetcher = HttpFetcher(reactor, timeout_s=kw.pop("timeout_s", 5), **kw)
        self.addCleanup(fetcher.close)
        return fetcher

    def labsim(self, **kw):
        handle = start_http_server(reactor, HttpServerConfig(root=self.root, **kw), port=0)
        self.addCleanup(handle.stop)
        return handle

    def scripted(self, script):
        factory = protocol.Factory.forProtocol(ScriptedServer)
        factory.script, factory.requests, factory.connections, factory.lost = list(script), [], [], 0
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return factory, port.getHost().port

    @defer.inlineCallbacks
    def test_results_by_status_and_keep_alive_reuse(self):
        handle = self.labsim()
        fetcher = self.fetcher()
        base = f"http://127.0.0.1:{handle.port}"
        for _ in range(3):
            result = yield fetcher.get(f"{base}/a.cfg", UA)
            self.assertEqual((result.status, result.body), ("ok", self.body))
        result = yield fetcher.get(f"{base}/missing.cfg", UA)
        self.assertEqual((result.status, result.detail), ("not_found", "HTTP 404"))
        result = yield fetcher.get(f"{base}/sub/", UA)  # a folder, no listing
        self.assertEqual((result.status, result.detail), ("denied", "HTTP 403"))
        result = yield fetcher.put(f"{base}/a.cfg", b"x", UA)  # uploads off
        self.assertEqual((result.status, result.detail), ("error", "HTTP 405"))
        self.assertEqual(fetcher.stats["connections"], 1)  # six requests, one connection
        self.assertEqual(handle.stats.requests, 6)
        self.assertEqual(len(handle.site.open_channels), 1)
        entry = handle.access_log[0]
        self.assertEqual((entry["mac"], entry["user_agent"]), ("00:15:65:00:00:01", UA))

    @defer.inlineCallbacks
    def test_host_header_and_query(self):
        factory, port = self.scripted([[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]] * 2)
        fetcher = self.fetcher()
        result = yield fetcher.get(f"http://127.0.0.1:{port}/p.cfg?mac=00156500&x=1", UA, host="prov.lab:8080")
        self.assertEqual(result.body, b"ok")
        result = yield fetcher.get(f"http://127.0.0.1:{port}", UA)
        first, second = factory.requests
        self.assertTrue(first.startswith(b"GET /p.cfg?mac=00156500&x=1 HTTP/1.1\r\nHost: prov.lab:8080\r\n"), first)
        self.assertIn(b"User-Agent: " + UA.encode() + b"\r\n", first)
        self.assertTrue(second.startswith(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port), second)

    @defer.inlineCallbacks
    def test_digest_and_basic_answers_to_401(self):
        handle = self.labsim(auth=[HttpAuthRule("/secure/*", "digest", {"phone": "pw"}, realm="prov"),
                                   HttpAuthRule("/a.cfg", "basic", {"admin": "s3cret"})])
        fetcher = self.fetcher()
        base = f"http://127.0.0.1:{handle.port}"
        result = yield fetcher.get(f"{base}/secure/b.cfg", UA)
        self.assertEqual((result.status, result.detail), ("denied", "HTTP 401"))
        result = yield fetcher.get(f"{base}/secure/b.cfg?mac=1", UA, Credentials("phone", "pw"))
        self.assertEqual((result.status, result.body), ("ok", b"digest protected"))
        result = yield fetcher.get(f"{base}/secure/b.cfg", UA, Credentials("phone", "wrong"))
        self.assertEqual(result.status, "denied")
        result = yield fetcher.get(f"{base}/a.cfg", UA, Credentials("admin", "s3cret"))
        self.assertEqual((result.status, result.body), ("ok", self.body))
        self.assertEqual(handle.stats.status, {401: 5, 200: 2})
        self.assertEqual(fetcher.stats["connections"], 1)

    @defer.inlineCallbacks
    def test_https_with_the_labs_self_signed_certificate(self):
        handle = self.labsim(tls=True)
        fetcher = self.fetcher()
        for _ in range(2):
            result = yield fetcher.get(f"https://127.0.0.1:{handle.port}/a.cfg", UA)
            self.assertEqual((result.status, result.body), ("ok", self.body))
        self.assertEqual(fetcher.stats["connections"], 1)
        # plain HTTP to the TLS port is not mistaken for an answer
        result = yield self.fetcher(timeout_s=2).get(f"http://127.0.0.1:{handle.port}/a.cfg", UA)
        self.assertNotEqual(result.status, "ok")

    @defer.inlineCallbacks
    def test_chunked_and_close_delimited_bodies_from_a_python_server(self):
        factory, port = self.scripted([
            [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nchun", b"k\r\n3\r\ned!\r\n0\r\n\r\n"],
            [b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil ", b"close"],
        ])
        fetcher = self.fetcher()
        result = yield fetcher.get(f"http://127.0.0.1:{port}/c", UA)
        self.assertEqual(result.body, b"chunked!")
        # the server closes after the HTTP/1.0 body: only the close ends it
        reactor.callLater(0.2, lambda: factory.connections[-1].transport.loseConnection())
        result = yield fetcher.get(f"http://127.0.0.1:{port}/d", UA)
        self.assertEqual(result.body, b"until close")
        self.assertEqual(fetcher.stats["connections"], 1)

    @defer.inlineCallbacks
    def test_server_closing_idle_connections(self):
        handle = self.labsim()
        fetcher = self.fetcher()
        url = f"http://127.0.0.1:{handle.port}/a.cfg"
        yield fetcher.get(url, UA)
        handle.site.idle_timeout = 0
        handle.site.close_idle()  # the server's sweep closes the idle connection
        while fetcher.pools[("http", "127.0.0.1", handle.port)].connections:
            yield deferLater(reactor, 0.01)
        result = yield fetcher.get(url, UA)
        self.assertTrue(result.ok)
        self.assertEqual((fetcher.stats["connections"], fetcher.stats["retries"]), (2, 0))

    @defer.inlineCallbacks
    def test_the_client_closes_connections_idle_too_long(self):
        handle = self.labsim()
        fetcher = self.fetcher(idle_timeout_s=0.6)
        url = f"http://127.0.0.1:{handle.port}/a.cfg"
        yield fetcher.get(url, UA)
        yield deferLater(reactor, 0.1)
        self.assertEqual(len(handle.site.open_channels), 1)  # not yet
        while handle.site.open_channels:  # the sweep runs every idle_timeout_s / 2
            yield deferLater(reactor, 0.02)
        self.assertTrue((yield fetcher.get(url, UA)).ok)
        self.assertEqual(fetcher.stats["connections"], 2)

    @defer.inlineCallbacks
    def test_a_request_meeting_a_close_on_a_reused_connection_is_sent_again(self):
        ok = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]
        factory, port = self.scripted([ok, "close", ok])
        fetcher = self.fetcher()
        url = f"http://127.0.0.1:{port}/a"
        self.assertTrue((yield fetcher.get(url, UA)).ok)
        result = yield fetcher.get(url, UA)  # the server drops it unanswered: sent again
        self.assertEqual((result.status, result.body), ("ok", b"ok"))
        self.assertEqual((fetcher.stats["retries"], fetcher.stats["connections"], len(factory.requests)), (1, 2, 3))
        # but a fresh connection closed unanswered is an error, not a loop
        factory.script[:] = ["close"]
        result = yield self.fetcher().get(url, UA)
        self.assertEqual(result.status, "error")
        self.assertIn("closed", result.detail)

    @defer.inlineCallbacks
    def test_timeout_when_the_server_never_answers_and_queued_requests_time_out_too(self):
        factory, port = self.scripted([])  # silent forever
        fetcher = self.fetcher(timeout_s=0.5, max_per_host=1)
        url = f"http://127.0.0.1:{port}/x"
        pending = defer.gatherResults([fetcher.get(url, UA), fetcher.get(url, UA)])
        yield deferLater(reactor, 0.2)
        self.assertEqual((len(factory.connections), len(factory.requests)), (1, 1))  # the cap holds
        first, second = yield pending
        self.assertEqual((first.status, second.status), ("timeout", "timeout"))
        self.assertIn("0.5", first.detail)
        while factory.lost < len(factory.connections):  # stuck connections are dropped, not left open
            yield deferLater(reactor, 0.01)
        self.assertEqual(fetcher.stats["timeouts"], 2)

    @defer.inlineCallbacks
    def test_connection_refused_and_bad_input_are_results_not_exceptions(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # bound, not listening: refused
            result = yield self.fetcher().get(f"http://127.0.0.1:{port}/x", UA)
        self.assertEqual(result.status, "error")
        self.assertIn("refused", result.detail.lower())
        fetcher = self.fetcher()
        for url, ua in ((f"http://127.0.0.1:{port}/x", "evil\r\nX: 1"), ("ftp://127.0.0.1/x", UA),
                        ("http:///nohost", UA), ("http://pr\ufffdf.lab/x", UA)):
            result = yield fetcher.get(url, ua)
            self.assertEqual(result.status, "error", url)
        self.assertEqual(fetcher.stats["connections"], 0)

    @defer.inlineCallbacks
    def test_garbage_from_the_server_is_an_error(self):
        factory, port = self.scripted([[b"SSH-2.0-OpenSSH_9.6\r\n\r\n"]])
        result = yield self.fetcher().get(f"http://127.0.0.1:{port}/x", UA)
        self.assertEqual(result.status, "error")
        self.assertIn("bad response", result.detail)

    @defer.inlineCallbacks
    def test_cap_per_host_queues_requests(self):
        handle = self.labsim()
        fetcher = self.fetcher(max_per_host=2)
        url = f"http://127.0.0.1:{handle.port}/a.cfg"
        results = yield defer.gatherResults([fetcher.get(url, UA) for _ in range(20)])
        self.assertTrue(all(r.ok and r.body == self.body for r in results))
        self.assertEqual(fetcher.stats["connections"], 2)
        self.assertEqual(handle.stats.requests, 20)

    @defer.inlineCallbacks
    def test_as_the_phones_use_it_every_request_has_a_connection_of_its_own(self):
        # keep_alive False (PHONE_HTTP_KEEP_ALIVE): "Connection: close" on each request, a
        # new connection for each, the cap still holding how many are open at once.
        self.assertFalse(PHONE_HTTP_KEEP_ALIVE)
        handle = self.labsim()
        fetcher = self.fetcher(keep_alive=False, max_per_host=2)
        url = f"http://127.0.0.1:{handle.port}/a.cfg"
        most_open = []
        original = handle.site.open_channels

        class Watched(set):
            def add(self, item):
                super().add(item)
                most_open.append(len(self))

        handle.site.open_channels = Watched(original)
        results = yield defer.gatherResults([fetcher.get(url, UA) for _ in range(12)])
        result = yield fetcher.put(f"http://127.0.0.1:{handle.port}/u.log", b"x", UA)  # uploads off: 405
        self.assertTrue(all(r.ok and r.body == self.body for r in results))
        self.assertEqual(result.detail, "HTTP 405")
        self.assertEqual((fetcher.stats["connections"], fetcher.stats["reused"]), (13, 0))
        self.assertEqual((handle.stats.connections, handle.stats.requests), (13, 13))
        self.assertLessEqual(max(most_open), 2)
        while any(pool.opened for pool in fetcher.pools.values()) or handle.site.open_channels:
            yield deferLater(reactor, 0.01)  # every connection closed after its answer

    @defer.inlineCallbacks
    def test_as_the_phones_use_it_the_request_says_connection_close(self):
        factory, port = self.scripted([[b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]] * 2)
        fetcher = self.fetcher(keep_alive=False)
        for _ in range(2):  # the server would keep the connection: the client closes it anyway
            result = yield fetcher.get(f"http://127.0.0.1:{port}/p.cfg", UA)
            self.assertEqual(result.body, b"ok")
        self.assertEqual([r.split(b"\r\n")[3] for r in factory.requests], [b"Connection: close"] * 2)
        self.assertEqual(len(factory.connections), 2)

    @defer.inlineCallbacks
    def test_close_fails_waiting_requests_and_drops_connections(self):
        factory, port = self.scripted([])
        fetcher = HttpFetcher(reactor, timeout_s=5, max_per_host=1)
        url = f"http://127.0.0.1:{port}/x"
        pending = [fetcher.get(url, UA), fetcher.get(url, UA)]
        while not factory.requests:
            yield deferLater(reactor, 0.01)
        yield fetcher.close()
        results = yield defer.gatherResults(pending)
        self.assertEqual([r.status for r in results], ["error", "error"])
        while factory.lost < 1:  # the busy connection was dropped
            yield deferLater(reactor, 0.01)
        self.assertEqual(len(factory.connections), 1)
        # (trial fails the test if a timer of the fetcher's were left behind)

"""HTTP PUT uploads (Polycom's logs and overrides file): labsim's server with ``uploads``
on, over real loopback sockets (trial), with http.client in a thread as an independent
client; and the phones' side, ``HttpFetcher.put``, answering Digest with method PUT."""

from __future__ import annotations

import http.client
import os

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest as trial

from labsim.services import http_files as http_service
from labsim.services.http import HttpAuthRule, HttpServerConfig
from labsim.services.http_web import start_http_server
from labsim.phones.events import Credentials
from labsim.transport.http_fetch import HttpFetcher


def request(port, method, path, body=None, headers=None):
    """(status, headers lower-cased, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


class HttpUploadTests(trial.TestCase):
    timeout = 20

    def setUp(self):
        base = os.path.abspath(self.mktemp())
        self.root = os.path.join(base, "root")
        self.outside = os.path.join(base, "outside")
        os.makedirs(self.root)
        os.makedirs(self.outside)
        with open(os.path.join(self.root, "a.cfg"), "wb") as f:
            f.write(b"config")

    def start(self, **kw):
        handle = start_http_server(reactor, HttpServerConfig(root=self.root, **kw), port=0)
        self.addCleanup(handle.stop)
        return handle

    def call(self, handle, method, path, body=None, headers=None):
        return threads.deferToThread(request, handle.port, method, path, body, headers)

    @defer.inlineCallbacks
    def test_put_is_refused_with_405_when_uploads_are_off(self):
        handle = self.start()
        status, headers, _ = yield self.call(handle, "PUT", "/uploads/x.log", b"x")
        self.assertEqual((status, headers["allow"]), (405, "GET, HEAD"))
        self.assertFalse(os.path.exists(os.path.join(self.root, "uploads")))

    @defer.inlineCallbacks
    def test_put_creates_201_replaces_204_and_get_serves_it(self):
        handle = self.start(uploads=True)
        status, _, _ = yield self.call(handle, "PUT", "/uploads/logs/0004f2abcdef-app.log", b"first")
        self.assertEqual(status, 201)
        status, _, _ = yield self.call(handle, "PUT", "/uploads/logs/0004f2abcdef-app.log", b"second")
        self.assertEqual(status, 204)
        status, _, body = yield self.call(handle, "GET", "/uploads/logs/0004f2abcdef-app.log")
        self.assertEqual((status, body), (200, b"second"))
        self.assertEqual((handle.stats.uploads, handle.stats.bytes_received), (2, 11))
        self.assertEqual([e["method"] for e in handle.access_log][:2], ["PUT", "PUT"])
        self.assertEqual(os.listdir(os.path.join(self.root, "uploads", "logs")), ["0004f2abcdef-app.log"])  # no temp left

    @defer.inlineCallbacks
    def test_put_outside_the_upload_folder_is_forbidden(self):
        handle = self.start(uploads=True, upload_dir="up")
        for path in ("/a.cfg", "/new.cfg", "/up", "/upx/y.log"):
            status, _, _ = yield self.call(handle, "PUT", path, b"overwrite")
            self.assertEqual(status, 403, path)
        status, _, _ = yield self.call(handle, "PUT", "/up/../a.cfg", b"overwrite")
        self.assertIn(status, (403, 404))
        status, _, _ = yield self.call(handle, "PUT", "/up/%2e%2e/a.cfg", b"overwrite")
        self.assertEqual(status, 404)
        with open(os.path.join(self.root, "a.cfg"), "rb") as f:
            self.assertEqual(f.read(), b"config")

    @defer.inlineCallbacks
    def test_a_symlink_in_the_upload_folder_does_not_lead_a_write_outside(self):
        handle = self.start(uploads=True)
        os.symlink(self.outside, os.path.join(self.root, "uploads", "escape"))
        status, _, _ = yield self.call(handle, "PUT", "/uploads/escape/x.log", b"x")
        self.assertEqual(status, 403)
        self.assertEqual(os.listdir(self.outside), [])

    @defer.inlineCallbacks
    def test_too_large_is_413_and_a_folder_is_409(self):
        self.patch(http_service, "UPLOAD_MAX", 10)
        handle = self.start(uploads=True)
        status, _, _ = yield self.call(handle, "PUT", "/uploads/big.log", b"x" * 11)
        self.assertEqual(status, 413)
        os.makedirs(os.path.join(self.root, "uploads", "dir"))
        status, _, _ = yield self.call(handle, "PUT", "/uploads/dir", b"x")
        self.assertEqual(status, 409)

    @defer.inlineCallbacks
    def test_auth_rules_apply_to_put_and_the_phone_client_answers_digest_with_put(self):
        handle = self.start(uploads=True, auth=[HttpAuthRule("/uploads/*", "digest", {"phone": "pw"}, realm="prov")])
        status, headers, _ = yield self.call(handle, "PUT", "/uploads/x.log", b"x")
        self.assertEqual(status, 401)
        fetcher = HttpFetcher(reactor, timeout_s=5)
        self.addCleanup(fetcher.close)
        url = f"http://127.0.0.1:{handle.port}/uploads/0004f2abcdef-phone.cfg"
        result = yield fetcher.put(url, b"<PHONE_CONFIG/>", "FileTransport PolycomVVX-VVX_400-UA/4.1.4.7430",
                                   Credentials("phone", "pw"))
        self.assertEqual(result.status, "ok")
        with open(os.path.join(self.root, "uploads", "0004f2abcdef-phone.cfg"), "rb") as f:
            self.assertEqual(f.read(), b"<PHONE_CONFIG/>")
        result = yield fetcher.put(url, b"x", "ua", Credentials("phone", "wrong"))
        self.assertEqual(result.status, "denied")
        result = yield fetcher.put(f"http://127.0.0.1:{handle.port}/a.cfg", b"x", "ua")
        self.assertEqual((result.status, result.detail), ("denied", "HTTP 403"))

    @defer.inlineCallbacks
    def test_conditional_put_and_the_validators_it_returns(self):
        """If-Match / If-None-Match: * / If-Unmodified-Since guard a PUT (RFC 9110 13.1, 412
        leaves the file alone); a Content-Range PUT is refused (14.5); 201 and 204 carry the
        stored file's ETag, the one a GET then reports."""
        handle = self.start(uploads=True)
        path = "/uploads/0004f2abcdef-phone.cfg"
        stored = os.path.join(self.root, "uploads", "0004f2abcdef-phone.cfg")
        status, _, _ = yield self.call(handle, "PUT", path, b"v0", {"If-Match": "*"})  # nothing there to match
        self.assertEqual((status, os.path.exists(stored)), (412, False))
        status, created, _ = yield self.call(handle, "PUT", path, b"v1", {"If-None-Match": "*"})
        self.assertEqual(status, 201)
        status, got, body = yield self.call(handle, "GET", path)
        self.assertEqual((body, got["etag"], got["last-modified"]), (b"v1", created["etag"], created["last-modified"]))
        status, _, _ = yield self.call(handle, "PUT", path, b"v2", {"If-None-Match": "*"})  # create-only: it exists
        self.assertEqual(status, 412)
        status, _, _ = yield self.call(handle, "PUT", path, b"v2", {"If-Match": '"someone-elses"'})
        self.assertEqual(status, 412)
        status, _, _ = yield self.call(handle, "PUT", path, b"v2", {"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"})
        self.assertEqual(status, 412)
        status, _, _ = yield self.call(handle, "PUT", path, b"v2", {"Content-Range": "bytes 0-1/2"})
        self.assertEqual(status, 400)
        with open(stored, "rb") as f:
            self.assertEqual(f.read(), b"v1")  # none of the refused PUTs touched it
        status, replaced, _ = yield self.call(handle, "PUT", path, b"v2", {"If-Match": created["etag"]})
        self.assertEqual(status, 204)
        self.assertNotEqual(replaced["etag"], created["etag"])
        status, _, _ = yield self.call(handle, "PUT", path, b"v3", {"If-Match": created["etag"]})  # a lost update
        self.assertEqual(status, 412)
        _, got, body = yield self.call(handle, "GET", path)
        self.assertEqual((body, got["etag"]), (b"v2", replaced["etag"]))
        self.assertEqual(handle.stats.uploads, 2)

"""Phones' FTP uploads (``ftp_put``: FTPClient, passive, STOR) against labsim's FTP server
with uploads on, and ``LoopbackNetwork.upload`` for ftp:// and tftp:// URLs."""

from __future__ import annotations

import os

from twisted.internet import defer, protocol, reactor, task
from twisted.trial import unittest as trial

from labsim.phones.events import Credentials, Put
from labsim.services.ftp import FtpServerConfig, start_ftp_server
from labsim.services.tftp import TftpServerConfig
from labsim.services.tftp_udp import start_tftp_server
from labsim.transport.ftp_fetch import ftp_put
from labsim.transport import loopback
from labsim.transport.loopback import LoopbackNetwork
from labsim.transport.memory import REFUSED_UPLOAD, InMemoryNetwork
from tests.peers import free_tcp_port, free_udp_port
from tests.udp_socket import settle

BIG = os.urandom(1 << 20)  # 1 MiB of binary: many data-channel writes, every byte value
PHONE = Credentials("phone", "secret")


class _Silent(protocol.Protocol):
    """Accepts the connection and never says a word (no FTP greeting)."""


class FtpPutTests(trial.TestCase):
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        with open(os.path.join(self.root, "site.cfg"), "wb") as f:
            f.write(b"served, read-only\n")

    def serve(self, **config):
        config.setdefault("users", {"phone": "secret"})
        config.setdefault("auth_failed_delay_s", 0.05)
        config.setdefault("uploads", True)
        server = start_ftp_server(reactor, FtpServerConfig(root=self.root, **config), "127.0.0.1", 0)
        self.addCleanup(server.stop)
        return server

    def stored(self, name: str) -> bytes:
        with open(os.path.join(self.root, "uploads", name), "rb") as f:
            return f.read()

    @defer.inlineCallbacks
    def test_upload_with_credentials_byte_for_byte(self):
        server = self.serve()
        small = yield ftp_put(reactor, "127.0.0.1", server.port, "uploads/0004f2aa0001-app.log", b"log line\n", PHONE)
        big = yield ftp_put(reactor, "127.0.0.1", server.port, "uploads/big.bin", BIG, PHONE)
        empty = yield ftp_put(reactor, "127.0.0.1", server.port, "uploads/empty.log", b"", PHONE)
        self.assertEqual([r.status for r in (small, big, empty)], ["ok"] * 3, [small, big, empty])
        self.assertEqual(self.stored("0004f2aa0001-app.log"), b"log line\n")
        self.assertTrue(self.stored("big.bin") == BIG, "the 1 MiB upload was stored altered")
        self.assertEqual(self.stored("empty.log"), b"")
        replaced = yield ftp_put(reactor, "127.0.0.1", server.port, "uploads/empty.log", b"now full", PHONE)
        self.assertEqual((replaced.status, self.stored("empty.log")), ("ok", b"now full"))

    @defer.inlineCallbacks
    def test_stor_outside_the_upload_folder_is_refused_like_a_download(self):
        server = self.serve()
        result = yield ftp_put(reactor, "127.0.0.1", server.port, "site.cfg", b"overwritten", PHONE)
        self.assertEqual(result.status, "not_found")  # a 550, classified as for downloads
        self.assertIn("550", result.detail)
        with open(os.path.join(self.root, "site.cfg"), "rb") as f:
            self.assertEqual(f.read(), b"served, read-only\n")

    @defer.inlineCallbacks
    def test_a_refused_login_is_denied(self):
        server = self.serve()
        wrong = yield ftp_put(reactor, "127.0.0.1", server.port, "uploads/x.log", b"x", Credentials("phone", "no"))
        anonymous = yield ftp_put(reactor, "127.0.0.1", server.port, "uploads/x.log", b"x", None)
        self.assertEqual((wrong.status, anonymous.status), ("denied", "denied"))
        self.assertFalse(os.path.exists(os.path.join(self.root, "uploads", "x.log")))

    @defer.inlineCallbacks
    def test_no_credentials_means_anonymous(self):
        server = self.serve(anonymous=True, users={})
        result = yield ftp_put(reactor, "127.0.0.1", server.port, "uploads/anon.log", b"anon", None)
        self.assertEqual((result.status, self.stored("anon.log")), ("ok", b"anon"))

    @defer.inlineCallbacks
    def test_a_server_that_never_greets_times_out(self):
        listening = reactor.listenTCP(0, protocol.Factory.forProtocol(_Silent), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        result = yield ftp_put(reactor, "127.0.0.1", listening.getHost().port, "x", b"x", None, timeout_s=0.3)
        self.assertEqual(result.status, "timeout")

    @defer.inlineCallbacks
    def test_nothing_listening_is_an_error(self):
        result = yield ftp_put(reactor, "127.0.0.1", free_tcp_port(), "x", b"x", None, timeout_s=2)
        self.assertEqual(result.status, "error")
        self.assertIn("refused", result.detail)

    @defer.inlineCallbacks
    def test_twenty_phones_at_once(self):
        server = self.serve()
        bodies = {f"p{index}.log": os.urandom(index * 311) for index in range(20)}
        results = yield defer.gatherResults(
            [ftp_put(reactor, "127.0.0.1", server.port, f"uploads/{name}", body, PHONE) for name, body in bodies.items()])
        self.assertEqual({r.status for r in results}, {"ok"})
        for name, body in bodies.items():
            self.assertEqual(self.stored(name), body)


class LoopbackNetworkUploads(trial.TestCase):
    """``LoopbackNetwork.upload`` by scheme: the same guard and results as downloads."""

    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        self.network = LoopbackNetwork(reactor, dhcp_server=("127.0.0.1", free_udp_port()), relay_address="127.0.0.2")
        self.addCleanup(self.network.close)

    def stored(self, name: str) -> bytes:
        with open(os.path.join(self.root, "uploads", name), "rb") as f:
            return f.read()

    @defer.inlineCallbacks
    def test_ftp_urls_take_credentials_from_the_url_or_the_put(self):
        server = start_ftp_server(reactor, FtpServerConfig(root=self.root, users={"phone": "secret", "url": "p@ss"},
                                                           uploads=True, auth_failed_delay_s=0.05), "127.0.0.1", 0)
        self.addCleanup(server.stop)
        base = f"127.0.0.1:{server.port}/uploads"
        by_put = yield self.network.upload(Put(1, f"ftp://{base}/a.log", b"from put", credentials=PHONE))
        by_url = yield self.network.upload(Put(2, f"ftp://url:p%40ss@{base}/b.log", b"from url", credentials=PHONE))
        none = yield self.network.upload(Put(3, f"ftp://{base}/c.log", b"anonymous"))
        self.assertEqual((by_put.status, by_url.status, none.status), ("ok", "ok", "denied"))
        self.assertEqual((self.stored("a.log"), self.stored("b.log")), (b"from put", b"from url"))

    @defer.inlineCallbacks
    def test_tftp_urls_upload_with_a_wrq(self):
        # A run keeps each finished transfer's port bound 10 s (TFTP_LINGER_S); a test need not.
        self.patch(loopback, "TFTP_LINGER_S", 0.0)
        server = start_tftp_server(reactor, TftpServerConfig(self.root, uploads=True), "127.0.0.1", 0)
        self.addCleanup(server.stop)
        body = os.urandom(1428 * 3)  # a multiple of the blksize the network asks for
        ok = yield self.network.upload(Put(1, f"tftp://127.0.0.1:{server.port}/uploads/0004f2aa0001-app.log", body))
        outside = yield self.network.upload(Put(2, f"tftp://127.0.0.1:{server.port}/site.cfg", b"x"))
        self.assertEqual((ok.status, ok.body), ("ok", None))
        self.assertEqual(self.stored("0004f2aa0001-app.log"), body)
        self.assertEqual(outside.status, "denied")  # ERROR 2, as for downloads
        self.assertIn("TFTP", outside.detail)
        yield settle()

    @defer.inlineCallbacks
    def test_the_loopback_guard_applies_to_every_scheme(self):
        for url in ("tftp://192.0.2.1/uploads/x.log", "ftp://192.0.2.1/uploads/x.log", "tftp://lab.example/x"):
            result = yield self.network.upload(Put(1, url, b"x"))
            self.assertEqual(result.status, "refused", url)
        other = yield self.network.upload(Put(1, "sftp://127.0.0.1/x", b"x"))
        self.assertEqual((other.status, other.detail), ("error", "sftp:// uploads are not supported"))

    @defer.inlineCallbacks
    def test_servers_with_uploads_off_answer_as_the_in_memory_network_says(self):
        """InMemoryNetwork's refusals (REFUSED_UPLOAD) are what labsim's real servers answer."""
        self.patch(loopback, "TFTP_LINGER_S", 0.0)
        tftp = start_tftp_server(reactor, TftpServerConfig(self.root), "127.0.0.1", 0)
        self.addCleanup(tftp.stop)
        ftp = start_ftp_server(reactor, FtpServerConfig(root=self.root, users={"phone": "secret"}), "127.0.0.1", 0)
        self.addCleanup(ftp.stop)
        for scheme, port in (("tftp", tftp.port), ("ftp", ftp.port)):
            real = yield self.network.upload(Put(1, f"{scheme}://127.0.0.1:{port}/uploads/x.log", b"x",
                                                 credentials=PHONE))
            self.assertEqual(real, REFUSED_UPLOAD[scheme], scheme)
        yield settle()


def test_in_memory_network_keeps_uploads_of_every_scheme_alike():
    clock = task.Clock()
    network = InMemoryNetwork(clock)
    results = []
    for index, url in enumerate(("http://h/uploads/a.log", "tftp://127.0.0.1:69/uploads/b.log",
                                 "ftp://u:p@127.0.0.1/uploads/c%20d.log")):
        network.upload(Put(index, url, url.encode())).addCallback(results.append)
    clock.advance(1)
    assert [r.status for r in results] == ["ok"] * 3
    assert network.uploads == {"uploads/a.log": b"http://h/uploads/a.log",
                               "uploads/b.log": b"tftp://127.0.0.1:69/uploads/b.log",
                               "uploads/c d.log": b"ftp://u:p@127.0.0.1/uploads/c%20d.log"}
    network.accept_uploads = False
    for url in ("http://h/x", "tftp://h/x", "ftp://h/x"):
        network.upload(Put(9, url, b"")).addCallback(results.append)
    clock.advance(1)
    assert [r.detail for r in results[3:]] == ["HTTP 405", "TFTP: TFTP error 4: Uploads are disabled",
                                               "FTP: 550 Not enough privileges."]

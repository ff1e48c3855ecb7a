"""Phones' FTP downloads (twisted's FTPClient) against labsim's FTP server on loopback,
and through ``LoopbackNetwork.fetch``."""

from __future__ import annotations

import os

from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest as trial

from labsim.phones.events import Credentials, Fetch
from labsim.services.ftp import FtpServerConfig, start_ftp_server
from labsim.transport.ftp_fetch import ftp_get
from labsim.transport.loopback import LoopbackNetwork
from tests.peers import free_tcp_port, free_udp_port

BIG = os.urandom(1 << 20)  # 1 MiB of binary: many data-channel reads, every byte value
PHONE = Credentials("phone", "secret")


class _Silent(protocol.Protocol):
    """Accepts the connection and never says a word (no FTP greeting)."""


class FtpFetchTests(trial.TestCase):
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.root, "yealink"))
        with open(os.path.join(self.root, "yealink", "y000000000066.cfg"), "wb") as f:
            f.write(b"#!version:1.0.0.1\n")
        with open(os.path.join(self.root, "big.rom"), "wb") as f:
            f.write(BIG)
        with open(os.path.join(self.root, "empty.cfg"), "wb"):
            pass

    def serve(self, **config):
        config.setdefault("users", {"phone": "secret"})
        config.setdefault("auth_failed_delay_s", 0.05)
        server = start_ftp_server(reactor, FtpServerConfig(root=self.root, **config), "127.0.0.1", 0)
        self.addCleanup(server.stop)
        return server

    @defer.inlineCallbacks
    def test_download_with_credentials_byte_for_byte(self):
        server = self.serve()
        small = yield ftp_get(reactor, "127.0.0.1", server.port, "yealink/y000000000066.cfg", PHONE)
        big = yield ftp_get(reactor, "127.0.0.1", server.port, "big.rom", PHONE)
        empty = yield ftp_get(reactor, "127.0.0.1", server.port, "empty.cfg", PHONE)
        self.assertEqual((small.status, small.body), ("ok", b"#!version:1.0.0.1\n"))
        self.assertEqual(big.status, "ok")
        self.assertTrue(big.body == BIG, "the 1 MiB binary file came back altered")
        self.assertEqual((empty.status, empty.body), ("ok", b""))
        self.assertEqual(server.stats["files_sent"], 3)

    @defer.inlineCallbacks
    def test_550_is_not_found(self):
        server = self.serve()
        result = yield ftp_get(reactor, "127.0.0.1", server.port, "yealink/nope.cfg", PHONE)
        self.assertEqual(result.status, "not_found")
        self.assertIn("550", result.detail)

    @defer.inlineCallbacks
    def test_a_refused_login_is_denied(self):
        server = self.serve()
        wrong = yield ftp_get(reactor, "127.0.0.1", server.port, "big.rom", Credentials("phone", "nope"))
        anonymous = yield ftp_get(reactor, "127.0.0.1", server.port, "big.rom", None)  # anonymous is off
        self.assertEqual((wrong.status, anonymous.status), ("denied", "denied"))
        self.assertIn("530", wrong.detail)
        self.assertEqual(server.stats["files_sent"], 0)

    @defer.inlineCallbacks
    def test_no_credentials_means_anonymous(self):
        server = self.serve(anonymous=True, users={})
        result = yield ftp_get(reactor, "127.0.0.1", server.port, "yealink/y000000000066.cfg", None)
        self.assertEqual(result.status, "ok")

    @defer.inlineCallbacks
    def test_a_server_that_never_greets_times_out_and_leaves_nothing_behind(self):
        listening = reactor.listenTCP(0, protocol.Factory.forProtocol(_Silent), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        result = yield ftp_get(reactor, "127.0.0.1", listening.getHost().port, "x.cfg", None, timeout_s=0.3)
        self.assertEqual(result.status, "timeout")

    @defer.inlineCallbacks
    def test_nothing_listening_is_an_error(self):
        result = yield ftp_get(reactor, "127.0.0.1", free_tcp_port(), "x.cfg", None, timeout_s=2)
        self.assertEqual(result.status, "error")
        self.assertIn("refused", result.detail)

    @defer.inlineCallbacks
    def test_fifty_phones_at_once(self):
        server = self.serve()
        results = yield defer.gatherResults([
            ftp_get(reactor, "127.0.0.1", server.port, "yealink/y000000000066.cfg", PHONE) for _ in range(50)])
        self.assertEqual({r.status for r in results}, {"ok"})
        self.assertEqual(server.stats["files_sent"], 50)

    @defer.inlineCallbacks
    def test_loopback_network_fetches_ftp_urls_and_refuses_other_hosts(self):
        server = self.serve()
        network = LoopbackNetwork(reactor, dhcp_server=("127.0.0.1", free_udp_port()), relay_address="127.0.0.2")
        self.addCleanup(network.close)
        ok = yield network.fetch(Fetch(1, f"ftp://127.0.0.1:{server.port}/yealink/y000000000066.cfg",
                                       credentials=PHONE))
        missing = yield network.fetch(Fetch(2, f"ftp://127.0.0.1:{server.port}/yealink/%24MAC.cfg", credentials=PHONE))
        refused = yield network.fetch(Fetch(3, "ftp://192.0.2.1/y000000000066.cfg", credentials=PHONE))
        self.assertEqual((ok.status, ok.body), ("ok", b"#!version:1.0.0.1\n"))
        self.assertEqual(missing.status, "not_found")
        self.assertEqual(refused.status, "refused")


def test_a_connection_the_server_closes_is_said_plainly():
    from twisted.internet.error import ConnectionDone
    from twisted.protocols.ftp import ConnectionLost
    from twisted.python.failure import Failure

    from labsim.transport.ftp_fetch import classify

    result = classify(Failure(ConnectionLost("FTP connection lost", Failure(ConnectionDone()))))
    assert result.status == "error"
    assert result.detail == "FTP: the server closed the connection (Connection was closed cleanly.)"

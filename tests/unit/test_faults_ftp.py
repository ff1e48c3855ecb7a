"""Faults on labsim's FTP server over real loopback sockets: down, slow commands and a
paced data connection, seen by the phones' own FTP client (labsim.transport.ftp_fetch)
and, for uploads, by Python's ftplib in a thread."""

from __future__ import annotations

import ftplib
import io
import os
import random
import time

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest as trial

from labsim.faults import ActiveFault, FaultSet, FaultyLink
from labsim.phones.events import Credentials
from labsim.services.ftp import FtpServerConfig, start_ftp_server
from labsim.transport.ftp_fetch import ftp_get

SMALL = b"#!version:1.0.0.1\nstatic.network.lldp.enable = 1\n"
BIG = bytes(range(256)) * 64  # 16 KiB: 0.512 s at 256 kbit/s
LOGIN = Credentials("phone", "secret")


class FtpFaultTests(trial.TestCase):
    timeout = 20

    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        for name, body in (("small.cfg", SMALL), ("big.bin", BIG)):
            with open(os.path.join(self.root, name), "wb") as f:
                f.write(body)
        config = FtpServerConfig(root=self.root, users={"phone": "secret"}, uploads=True)
        self.server = start_ftp_server(reactor, config, "127.0.0.1", 0)
        self.addCleanup(self.server.stop)
        self.faults = FaultSet(random.Random(1))
        self.server.link = FaultyLink(self.faults, "ftp", reactor)

    @defer.inlineCallbacks
    def timed_get(self, name):
        started = reactor.seconds()
        result = yield ftp_get(reactor, "127.0.0.1", self.server.port, name, LOGIN, timeout_s=10)
        return result, reactor.seconds() - started

    @defer.inlineCallbacks
    def test_no_fault_is_fast_and_the_link_starts_empty(self):
        self.server.link = None
        result, elapsed = yield self.timed_get("big.bin")
        self.assertEqual((result.status, result.body), ("ok", BIG))
        self.assertLess(elapsed, 0.4)

    @defer.inlineCallbacks
    def test_down_closes_new_connections_at_once_until_removed(self):
        self.faults.add(ActiveFault("outage", "ftp", down=True))
        result, elapsed = yield self.timed_get("small.cfg")
        self.assertEqual(result.status, "error")  # the phones' FTP error path, not a timeout
        self.assertTrue(result.detail.startswith("FTP: "), result.detail)
        self.assertLess(elapsed, 1.0)
        self.assertEqual(self.faults.stats["refused"], 1)
        self.assertEqual(self.server.stats["sessions"], 0)  # no greeting, no session
        self.faults.remove("outage")
        result, _ = yield self.timed_get("small.cfg")
        self.assertEqual((result.status, result.body), ("ok", SMALL))

    @defer.inlineCallbacks
    def test_slow_s_delays_every_command_in_order(self):
        _, fast = yield self.timed_get("small.cfg")
        self.faults.add(ActiveFault("slow", "ftp", slow_s=0.2))
        result, slow = yield self.timed_get("small.cfg")
        self.assertEqual((result.status, result.body), ("ok", SMALL))
        # USER, PASS, TYPE, PASV and RETR each answered 0.2 s late before the file is in.
        self.assertGreaterEqual(slow, 5 * 0.2)
        self.assertLess(fast, 0.5)
        self.assertGreaterEqual(self.faults.stats["delayed"], 5)

    @defer.inlineCallbacks
    def test_bandwidth_out_paces_downloads_not_uploads(self):
        self.faults.add(ActiveFault("thin", "ftp", direction="out", bandwidth_kbps=256))
        result, elapsed = yield self.timed_get("big.bin")
        self.assertEqual((result.status, result.body), ("ok", BIG))  # paced, byte for byte (no sendfile)
        self.assertGreaterEqual(elapsed, len(BIG) * 8 / 256_000)
        self.assertLess(elapsed, 2.0)
        self.assertEqual(self.faults.stats["throttled"], 1)
        upload_s = yield threads.deferToThread(self.upload, BIG)
        self.assertLess(upload_s, 0.4)

    @defer.inlineCallbacks
    def test_bandwidth_in_paces_uploads(self):
        self.faults.add(ActiveFault("thin", "ftp", direction="in", bandwidth_kbps=256))
        upload_s = yield threads.deferToThread(self.upload, BIG)
        self.assertGreaterEqual(upload_s, 0.9 * len(BIG) * 8 / 256_000)  # the kernel buffers the last bit
        with open(os.path.join(self.root, "uploads", "up.bin"), "rb") as f:
            self.assertEqual(f.read(), BIG)
        _, download_s = yield self.timed_get("big.bin")
        self.assertLess(download_s, 0.4)

    def upload(self, body: bytes) -> float:
        """STOR over ftplib (in a thread); seconds from STOR to the 226."""
        with ftplib.FTP() as ftp:
            ftp.connect("127.0.0.1", self.server.port, timeout=10)
            ftp.login("phone", "secret")
            started = time.monotonic()
            ftp.storbinary("STOR uploads/up.bin", io.BytesIO(body))
            return time.monotonic() - started

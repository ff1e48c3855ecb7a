"""Phones' uploads against real servers: ``tftp_put`` (WRQ) into tftp-hpa's ``in.tftpd``
with ``--create``, and ``ftp_put`` (STOR) into vsftpd with anonymous uploads on.

Each peer is started here on 127.0.0.1 on a free port and killed in a cleanup.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import time
from pathlib import Path

import pytest
from twisted.internet import defer, reactor
from twisted.trial import unittest as trial

from labsim.transport.ftp_fetch import ftp_put
from labsim.transport.tftp_client import TftpError, tftp_put
from tests.interop.realservers import VSFTPD_CONF, running
from tests.peers import free_tcp_port, free_udp_port, require_binary, require_root, wait_for_tcp

pytestmark = pytest.mark.interop

SIZES = (0, 1, 511, 512, 513, 1024, 1428, 2856, 100_000)  # 512, 1024, 2856: multiples of a blksize


def _wait_udp_bound(port: int, timeout_s: float = 5.0) -> None:
    """Until something holds 127.0.0.1:port (UDP); a server that died meanwhile is
    reported by ``running``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return  # the server holds the port
        time.sleep(0.02)
    raise RuntimeError(f"nothing bound 127.0.0.1:{port}")


class TftpPutToTftpdHpa(trial.TestCase):
    timeout = 60

    def setUp(self):
        tftpd = require_binary("in.tftpd")
        require_root("in.tftpd chroots into its root (-s) and switches user (-u)")
        self.root = Path(self.mktemp()).resolve()
        (self.root / "uploads").mkdir(parents=True)
        (self.root / "site.cfg").write_bytes(b"read-only\n")
        os.chmod(self.root / "site.cfg", 0o444)
        self.port = free_udp_port()
        stack = contextlib.ExitStack()
        self.addCleanup(stack.close)
        # -c: WRQ may create new files (without it tftpd-hpa only overwrites existing,
        # world-writable ones).
        args = [tftpd, "-L", "-c", "-u", "root", "-a", f"127.0.0.1:{self.port}", "-s", str(self.root)]
        stack.enter_context(running(args, name="in.tftpd", ready=lambda: _wait_udp_bound(self.port)))

    @defer.inlineCallbacks
    def test_sizes_and_block_sizes_stored_byte_exact(self):
        for blksize in (None, 512, 1428, 8192):
            for size in SIZES:
                body = os.urandom(size)
                name = f"uploads/f{size}-{blksize}.bin"
                sent = yield tftp_put(reactor, "127.0.0.1", self.port, name, body, blksize=blksize,
                                      tsize=blksize is not None)
                self.assertEqual(sent, size)
                self.assertEqual((self.root / name).read_bytes(), body, name)

    @defer.inlineCallbacks
    def test_concurrent_uploads(self):
        bodies = {f"uploads/p{index}.log": os.urandom(index * 173) for index in range(20)}
        results = yield defer.gatherResults(
            [tftp_put(reactor, "127.0.0.1", self.port, name, body, blksize=1428, tsize=True)
             for name, body in bodies.items()])
        self.assertEqual(results, [len(body) for body in bodies.values()])
        for name, body in bodies.items():
            self.assertEqual((self.root / name).read_bytes(), body)

    @defer.inlineCallbacks
    def test_a_refused_write_fails_with_the_servers_error(self):
        # A folder that does not exist: tftpd-hpa answers an ERROR (its code, its text).
        error = yield self.assertFailure(
            tftp_put(reactor, "127.0.0.1", self.port, "no/such/folder/x.log", b"x"), TftpError)
        self.assertIsNotNone(error.code)
        self.assertTrue(error.message)
        self.assertFalse((self.root / "no").exists())


VSFTPD_UPLOADS = """\
anon_upload_enable=YES
anon_mkdir_write_enable=NO
anon_other_write_enable=NO
anon_umask=022
"""


class FtpPutToVsftpd(trial.TestCase):
    """vsftpd with anonymous uploads: only into a folder the ``ftp`` user owns (the
    anonymous root itself must not be writable by it: vsftpd refuses that)."""

    timeout = 60

    def setUp(self):
        binary = require_binary("vsftpd")
        require_root("vsftpd starts as root to chroot anonymous sessions and drop to the ftp user")
        tmp = Path(self.mktemp()).resolve()
        self.root = tmp / "root"
        (self.root / "uploads").mkdir(parents=True)
        (tmp / "empty").mkdir()
        os.chmod(tmp, 0o755)
        os.chmod(self.root, 0o755)
        (self.root / "site.cfg").write_bytes(b"read-only\n")
        os.chmod(self.root / "site.cfg", 0o644)
        ftp = pwd.getpwnam("ftp")
        os.chown(self.root / "uploads", ftp.pw_uid, ftp.pw_gid)
        os.chmod(self.root / "uploads", 0o755)
        self.port = free_tcp_port()
        conf = VSFTPD_CONF.format(port=self.port, root=self.root, empty=tmp / "empty", anonymous="YES", local="NO")
        conf = conf.replace("write_enable=NO", "write_enable=YES") + VSFTPD_UPLOADS
        (tmp / "vsftpd.conf").write_text(conf)
        stack = contextlib.ExitStack()
        self.addCleanup(stack.close)
        stack.enter_context(running([binary, str(tmp / "vsftpd.conf")], name="vsftpd",
                                    ready=lambda: wait_for_tcp("127.0.0.1", self.port, timeout=5)))

    @defer.inlineCallbacks
    def test_anonymous_stor_is_stored_byte_exact(self):
        for size in (0, 1, 1460, 100_000, 1 << 20):
            body = os.urandom(size)
            result = yield ftp_put(reactor, "127.0.0.1", self.port, f"uploads/f{size}.bin", body, None)
            self.assertEqual(result.status, "ok", result.detail)
            self.assertTrue((self.root / "uploads" / f"f{size}.bin").read_bytes() == body, size)

    @defer.inlineCallbacks
    def test_stor_outside_the_upload_folder_is_refused(self):
        result = yield ftp_put(reactor, "127.0.0.1", self.port, "new.cfg", b"x", None)
        # vsftpd says 553 (RFC 959: file name not allowed), not 550 as labsim's server:
        # classified as for downloads, that is a plain error with the server's reply.
        self.assertEqual((result.status, result.detail), ("error", "FTP: 553 Could not create file."))
        self.assertFalse((self.root / "new.cfg").exists())

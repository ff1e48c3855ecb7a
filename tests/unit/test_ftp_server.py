"""labsim's FTP server (pyftpdlib driven by the reactor) over real loopback sockets, with
Python's ftplib as an independent client run in a thread so the reactor stays free."""

from __future__ import annotations

import ftplib
import io
import os
import socket

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest as trial

from labsim.services.ftp import FtpServerConfig, start_ftp_server
from tests.peers import free_tcp_port

COMMON = b"#!version:1.0.0.1\nstatic.network.lldp.enable = 1\n"
SECRET = b"the outside world\n"


def make_root(base: str) -> tuple[str, str]:
    """A provisioning root with a file, a sub-folder, and escape hatches to a secret
    outside it: a symlink to the file, and one to its folder."""
    root = os.path.join(base, "root")
    outside = os.path.join(base, "outside")
    os.makedirs(os.path.join(root, "cfg"))
    os.makedirs(outside)
    with open(os.path.join(root, "y000000000066.cfg"), "wb") as f:
        f.write(COMMON)
    with open(os.path.join(root, "cfg", "001565aa0001.cfg"), "wb") as f:
        f.write(bytes(range(256)) * 64)  # binary: every byte value survives
    with open(os.path.join(outside, "secret.txt"), "wb") as f:
        f.write(SECRET)
    os.symlink(os.path.join(outside, "secret.txt"), os.path.join(root, "escape.txt"))
    os.symlink(outside, os.path.join(root, "escape_dir"))
    os.symlink("y000000000066.cfg", os.path.join(root, "inside_link.cfg"))  # inside: allowed
    return root, outside


def session(port, user="phone", password="secret"):
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=5)
    ftp.login(user, password)
    return ftp


def retr(ftp, name) -> bytes:
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", out.write)
    return out.getvalue()


def reply_code(call) -> str:
    """The 3-digit code an ftplib call failed with ('' if it succeeded)."""
    try:
        call()
    except ftplib.all_errors as exc:
        return str(exc)[:3]
    return ""


class FtpServerTests(trial.TestCase):
    def start(self, **config):
        base = os.path.abspath(self.mktemp())
        self.root, self.outside = make_root(base)
        config.setdefault("users", {"phone": "secret"})
        config.setdefault("auth_failed_delay_s", 0.05)
        self.server = start_ftp_server(reactor, FtpServerConfig(root=self.root, **config), "127.0.0.1", 0)
        self.addCleanup(self.server.stop)
        return self.server.port

    @defer.inlineCallbacks
    def test_a_user_logs_in_and_downloads_files_byte_for_byte(self):
        port = self.start()

        def work():
            with session(port) as ftp:
                return retr(ftp, "y000000000066.cfg"), retr(ftp, "/cfg/001565aa0001.cfg"), ftp.pwd()

        common, binary, pwd = yield threads.deferToThread(work)
        self.assertEqual(common, COMMON)
        self.assertEqual(binary, bytes(range(256)) * 64)
        self.assertEqual(pwd, "/")
        stats = self.server.stats
        self.assertEqual((stats["logins_ok"], stats["files_sent"]), (1, 2))
        self.assertEqual(stats["bytes_sent"], len(COMMON) + 256 * 64)

    @defer.inlineCallbacks
    def test_wrong_password_and_unknown_user_get_530(self):
        port = self.start()
        codes = yield threads.deferToThread(lambda: [
            reply_code(lambda: session(port, "phone", "wrong")),
            reply_code(lambda: session(port, "nobody", "secret")),
            reply_code(lambda: session(port, "anonymous", "x@y")),  # anonymous is off by default
        ])
        self.assertEqual(codes, ["530", "530", "530"])
        self.assertEqual(self.server.stats["logins_failed"], 3)

    @defer.inlineCallbacks
    def test_anonymous_login_when_enabled(self):
        port = self.start(anonymous=True, users={})

        def work():
            with session(port, "anonymous", "phone@lab") as ftp:
                return retr(ftp, "y000000000066.cfg")

        self.assertEqual((yield threads.deferToThread(work)), COMMON)

    @defer.inlineCallbacks
    def test_missing_files_and_folders_are_550(self):
        port = self.start()

        def work():
            with session(port) as ftp:
                return [reply_code(lambda: retr(ftp, "nope.cfg")), reply_code(lambda: retr(ftp, "cfg")),
                        reply_code(lambda: ftp.cwd("/nowhere"))]

        self.assertEqual((yield threads.deferToThread(work)), ["550", "550", "550"])

    @defer.inlineCallbacks
    def test_read_only_by_default_refuses_every_write(self):
        port = self.start()

        def work():
            with session(port) as ftp:
                return [reply_code(lambda: ftp.storbinary("STOR new.cfg", io.BytesIO(b"x"))),
                        reply_code(lambda: ftp.storbinary("APPE y000000000066.cfg", io.BytesIO(b"x"))),
                        reply_code(lambda: ftp.delete("y000000000066.cfg")),
                        reply_code(lambda: ftp.mkd("newdir")),
                        reply_code(lambda: ftp.rename("y000000000066.cfg", "z.cfg"))]

        codes = yield threads.deferToThread(work)
        self.assertEqual(codes, ["550"] * 5)
        self.assertEqual(sorted(os.listdir(self.root)),
                         ["cfg", "escape.txt", "escape_dir", "inside_link.cfg", "y000000000066.cfg"])
        with open(os.path.join(self.root, "y000000000066.cfg"), "rb") as f:
            self.assertEqual(f.read(), COMMON)

    @defer.inlineCallbacks
    def test_uploads_when_enabled_go_into_the_upload_folder_only(self):
        port = self.start(uploads=True, anonymous=True)

        def work():
            with session(port) as ftp:
                ok = reply_code(lambda: ftp.storbinary("STOR /uploads/001565aa0001.log", io.BytesIO(b"boot log")))
                root = reply_code(lambda: ftp.storbinary("STOR /new.cfg", io.BytesIO(b"x")))
                delete = reply_code(lambda: ftp.delete("/uploads/001565aa0001.log"))
            with session(port, "anonymous", "a@b") as ftp:
                anon = reply_code(lambda: ftp.storbinary("STOR uploads/anon.log", io.BytesIO(b"y")))
            return ok, root, delete, anon

        self.assertEqual((yield threads.deferToThread(work)), ("", "550", "550", ""))
        with open(os.path.join(self.root, "uploads", "001565aa0001.log"), "rb") as f:
            self.assertEqual(f.read(), b"boot log")
        self.assertFalse(os.path.exists(os.path.join(self.root, "new.cfg")))
        self.assertEqual(self.server.stats["files_received"], 2)

    @defer.inlineCallbacks
    def test_nothing_outside_the_root_is_ever_served(self):
        port = self.start()
        corpus = ["../outside/secret.txt", "../../../../etc/passwd", "/../outside/secret.txt",
                  "/etc/passwd", "cfg/../../outside/secret.txt", "..\\outside\\secret.txt",
                  "%2e%2e/outside/secret.txt", "escape.txt", "escape_dir/secret.txt", "/escape_dir/secret.txt",
                  self.outside + "/secret.txt"]

        def work():
            results = {}
            with session(port) as ftp:
                for name in corpus:
                    try:
                        results[name] = retr(ftp, name)
                    except ftplib.all_errors as exc:
                        results[name] = str(exc)[:3]
                ftp.cwd("..")
                ftp.cwd("../../..")
                pwd_after_climb = ftp.pwd()
                listing = ftp.nlst()
                cwd_escape = reply_code(lambda: ftp.cwd("escape_dir"))
                inside = retr(ftp, "inside_link.cfg")
            return results, pwd_after_climb, listing, cwd_escape, inside

        results, pwd, listing, cwd_escape, inside = yield threads.deferToThread(work)
        self.assertEqual(results, {name: "550" for name in corpus})
        self.assertEqual(pwd, "/")  # '..' at the root stays at the root
        self.assertIn("y000000000066.cfg", listing)
        self.assertEqual(cwd_escape, "550")
        self.assertEqual(inside, COMMON)  # a symlink that stays inside is fine
        self.assertEqual(self.server.stats["files_sent"], 1)

    @defer.inlineCallbacks
    def test_passive_data_connections_use_the_configured_range_on_loopback(self):
        low = free_tcp_port()
        port = self.start(passive_ports=(low, low))

        def work():
            with session(port) as ftp:
                host, data_port = ftplib.parse227(ftp.sendcmd("PASV"))
                ftp.sendcmd("TYPE I")
            with session(port) as ftp:
                body = retr(ftp, "y000000000066.cfg")
            return host, data_port, body

        host, data_port, body = yield threads.deferToThread(work)
        self.assertEqual((host, data_port, body), ("127.0.0.1", low, COMMON))

    @defer.inlineCallbacks
    def test_many_sessions_at_once(self):
        port = self.start()

        def one(_):
            with session(port) as ftp:
                return retr(ftp, "y000000000066.cfg")

        bodies = yield defer.gatherResults([threads.deferToThread(one, i) for i in range(20)])
        self.assertEqual(bodies, [COMMON] * 20)
        self.assertEqual(self.server.stats["sessions"], 20)

    def test_stop_closes_the_listener(self):
        port = self.start()
        self.server.stop()
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        self.server.stop()  # twice is harmless

    def test_a_missing_root_or_an_upload_folder_outside_it_is_refused(self):
        with self.assertRaises(ValueError):
            start_ftp_server(reactor, FtpServerConfig(root="/no/such/dir"), "127.0.0.1", 0)
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        with self.assertRaises(ValueError):
            start_ftp_server(reactor, FtpServerConfig(root=root, uploads=True, upload_dir="../up"), "127.0.0.1", 0)

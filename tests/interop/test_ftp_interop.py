"""labsim's FTP server and client against real peers.

- lftp and curl download from (and, with uploads on, upload to) labsim's FTP server,
  which runs in a child process so the blocking clients cannot stall it; files must come
  back byte-identical, and logins, 550s and read-only refusals must look right to them.
- labsim's FTP client (what phones use) downloads from vsftpd, anonymous, started here on
  a loopback port with a config written to a temporary folder.

Every peer is started here on 127.0.0.1 and killed in a finally / cleanup.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.internet import defer, reactor
from twisted.trial import unittest as trial

from labsim.phones.events import Credentials
from labsim.transport.ftp_fetch import ftp_get
from tests.interop.realservers import VSFTPD_CONF
from tests.peers import free_tcp_port, require_binary, require_root, wait_for_tcp

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
SIZES = (0, 1, 1023, 65536, 300_000)

# labsim's FTP server in a child process; prints its port, serves until killed.
SERVE = """
import json, sys
from twisted.internet import reactor
from labsim.services.ftp import FtpServerConfig, start_ftp_server
config = FtpServerConfig(**json.loads(sys.argv[1]))
server = start_ftp_server(reactor, config, "127.0.0.1", 0)
print(server.port, flush=True)
reactor.run()
"""


def make_files(root: Path) -> dict[str, bytes]:
    files = {f"f{size}.bin": os.urandom(size) for size in SIZES}
    files["y000000000066.cfg"] = b"#!version:1.0.0.1\r\nstatic.network.lldp.enable = 1\n"  # CR LF kept as-is
    (root / "sub").mkdir()
    files["sub/001565aa0001.cfg"] = b"#!version:1.0.0.1\naccount.1.user_name = 1\n"
    for name, content in files.items():
        (root / name).write_bytes(content)
    return files


@pytest.fixture
def labsim_ftp(tmp_path, request):
    config = {"users": {"phone": "s3cret"}, "auth_failed_delay_s": 0.05, **getattr(request, "param", {})}
    root = tmp_path / "root"
    root.mkdir()
    files = make_files(root)
    config["root"] = str(root)
    proc = subprocess.Popen([sys.executable, "-c", SERVE, json.dumps(config)], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip().isdigit(), "labsim FTP server did not start"
        yield int(line), files, tmp_path
    finally:
        proc.kill()
        proc.wait()


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, timeout=30, **kw)


def lftp(port: int, user: str, password: str, commands: str) -> subprocess.CompletedProcess:
    binary = require_binary("lftp")
    settings = ("set ftp:ssl-allow no; set ftp:passive-mode on; set net:max-retries 1; "
                "set net:timeout 5; set cmd:fail-exit yes; set xfer:clobber on; ")
    return run([binary, "-u", f"{user},{password}", "-p", str(port), "-e", settings + commands + "; bye",
                "127.0.0.1"], env={**os.environ, "HOME": "/nonexistent"})


def test_lftp_downloads_every_file_byte_for_byte(labsim_ftp):
    port, files, tmp = labsim_ftp
    out = tmp / "lftp"
    out.mkdir()
    gets = "; ".join(f"get {name} -o {out / name.replace('/', '_')}" for name in files)
    result = lftp(port, "phone", "s3cret", gets)
    assert result.returncode == 0, result
    for name, content in files.items():
        assert (out / name.replace("/", "_")).read_bytes() == content, name


def test_lftp_lists_the_root_and_cannot_climb_out(labsim_ftp):
    port, files, _ = labsim_ftp
    # lftp's own pwd is client-side: ask the server (PWD) where the climb ended.
    result = lftp(port, "phone", "s3cret", "cd ../../..; quote PWD; cls -1")
    assert result.returncode == 0, result
    output = result.stdout.decode()
    assert '257 "/"' in output, output
    names = output.split()
    assert "y000000000066.cfg" in names and "sub/" in names


def test_lftp_with_a_wrong_password_is_refused(labsim_ftp):
    port, _, tmp = labsim_ftp
    result = lftp(port, "phone", "wrong", f"get y000000000066.cfg -o {tmp / 'x'}")
    assert result.returncode != 0
    assert b"530" in result.stderr or b"Login incorrect" in result.stderr or b"Authentication" in result.stderr
    assert not (tmp / "x").exists()


def test_curl_downloads_and_sees_550_and_530(labsim_ftp):
    curl = require_binary("curl")
    port, files, tmp = labsim_ftp
    for name, content in files.items():
        out = tmp / "curl.out"
        result = run([curl, "-sS", "--ftp-pasv", "-o", str(out), f"ftp://phone:s3cret@127.0.0.1:{port}/{name}"])
        assert result.returncode == 0, result
        assert out.read_bytes() == content, name
    missing = run([curl, "-sS", "-o", str(tmp / "x"), f"ftp://phone:s3cret@127.0.0.1:{port}/missing.cfg"])
    assert missing.returncode == 78, missing  # curl: "RETR response: 550"
    denied = run([curl, "-sS", "-o", str(tmp / "x"), f"ftp://phone:nope@127.0.0.1:{port}/f1.bin"])
    assert denied.returncode == 67, denied  # curl: "Access denied: 530"
    anonymous = run([curl, "-sS", "-o", str(tmp / "x"), f"ftp://127.0.0.1:{port}/f1.bin"])
    assert anonymous.returncode == 67, anonymous  # anonymous is off unless enabled


def test_curl_cannot_upload_to_a_read_only_server(labsim_ftp):
    curl = require_binary("curl")
    port, _, tmp = labsim_ftp
    (tmp / "log.txt").write_bytes(b"boot log\n")
    result = run([curl, "-sS", "-T", str(tmp / "log.txt"), f"ftp://phone:s3cret@127.0.0.1:{port}/uploads/"])
    assert result.returncode != 0
    assert not (tmp / "root" / "uploads").exists()


@pytest.mark.parametrize("labsim_ftp", [{"uploads": True, "anonymous": True}], indirect=True)
def test_curl_uploads_into_the_upload_folder_when_enabled(labsim_ftp):
    curl = require_binary("curl")
    port, _, tmp = labsim_ftp
    (tmp / "log.txt").write_bytes(b"boot log\n" * 1000)
    ok = run([curl, "-sS", "-T", str(tmp / "log.txt"), f"ftp://127.0.0.1:{port}/uploads/001565aa0001.log"])
    assert ok.returncode == 0, ok
    assert (tmp / "root" / "uploads" / "001565aa0001.log").read_bytes() == b"boot log\n" * 1000
    outside = run([curl, "-sS", "-T", str(tmp / "log.txt"), f"ftp://127.0.0.1:{port}/evil.cfg"])
    assert outside.returncode != 0 and not (tmp / "root" / "evil.cfg").exists()


class _Vsftpd(trial.TestCase):
    """vsftpd on a free loopback port, anonymous-only (or no login at all)."""

    timeout = 60
    anonymous = "YES"
    local = "NO"

    def setUp(self):
        vsftpd = require_binary("vsftpd")
        require_root("vsftpd starts as root to chroot anonymous sessions and drop to the ftp user")
        base = Path(self.mktemp()).resolve()
        self.root, empty = base / "root", base / "empty"
        self.root.mkdir(parents=True)
        empty.mkdir()
        self.files = make_files(self.root)
        # The anonymous session runs as the 'ftp' user: the files must be world-readable.
        for path in [self.root, *self.root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        self.port = free_tcp_port()
        conf = base / "vsftpd.conf"
        conf.write_text(VSFTPD_CONF.format(port=self.port, root=self.root, empty=empty, anonymous=self.anonymous,
                                           local=self.local))
        self.proc = subprocess.Popen([vsftpd, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.addCleanup(self._kill)
        try:
            wait_for_tcp("127.0.0.1", self.port, timeout=5)
        except TimeoutError:
            self.fail(f"vsftpd did not start: {self.proc.poll()} {self.proc.stderr.read() if self.proc.poll() else ''}")

    def _kill(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stderr.close()


class LabsimClientAgainstVsftpd(_Vsftpd):

    @defer.inlineCallbacks
    def test_byte_identical_downloads(self):
        for name, content in self.files.items():
            result = yield ftp_get(reactor, "127.0.0.1", self.port, name, None, timeout_s=10)
            self.assertEqual(result.status, "ok", f"{name}: {result.detail}")
            self.assertTrue(result.body == content, f"{name} came back altered")

    @defer.inlineCallbacks
    def test_missing_file_is_not_found(self):
        result = yield ftp_get(reactor, "127.0.0.1", self.port, "missing.cfg", None, timeout_s=10)
        self.assertEqual(result.status, "not_found", result.detail)

    @defer.inlineCallbacks
    def test_a_local_user_on_an_anonymous_only_server_is_denied(self):
        result = yield ftp_get(reactor, "127.0.0.1", self.port, "f1.bin", Credentials("phone", "s3cret"), timeout_s=10)
        self.assertEqual(result.status, "denied", result.detail)

    @defer.inlineCallbacks
    def test_concurrent_downloads(self):
        results = yield defer.gatherResults([
            ftp_get(reactor, "127.0.0.1", self.port, "y000000000066.cfg", None, timeout_s=10) for _ in range(20)])
        self.assertEqual([r.body for r in results], [self.files["y000000000066.cfg"]] * 20)


class LabsimClientAgainstVsftpdWithoutAnonymous(_Vsftpd):
    # vsftpd refuses to run with neither kind of login: local logins on (checked by PAM,
    # which knows no 'anonymous' with that password), anonymous off.
    anonymous = "NO"
    local = "YES"

    @defer.inlineCallbacks
    def test_anonymous_is_denied(self):
        result = yield ftp_get(reactor, "127.0.0.1", self.port, "f1.bin", None, timeout_s=10)
        self.assertEqual(result.status, "denied", result.detail)

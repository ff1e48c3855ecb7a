"""labsim's TFTP server and client against real peers: tftp-hpa's client and server, curl.

- tftp-hpa's ``tftp`` client (RFC 1350, no options in version 5.2) and curl (options:
  blksize, tsize) download from labsim's server, which runs in a child process so the
  blocking client calls cannot stall it; files must come back byte-identical.
- The same clients upload (WRQ, ``put`` / ``curl -T``) into the upload folder when
  uploads are on; outside it they get ERROR 2, with uploads off ERROR 4.
  (Neither client speaks RFC 7440 windowsize, so windowed transfers are tested in
  tests/unit/test_tftp_server.py, over loopback sockets too.)
- labsim's client downloads from tftp-hpa's ``in.tftpd`` (run as root on a loopback port).

Every peer is started here on 127.0.0.1 and killed in a finally / cleanup.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from twisted.internet import defer, reactor
from twisted.trial import unittest as trial

from labsim.transport.tftp_client import TftpNotFound, tftp_get
from tests.peers import free_udp_port, require_binary, require_root

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
SIZES = (0, 1, 511, 512, 513, 1024, 1468, 4096, 100_000)

# labsim's server in a child process; prints its port, serves until killed.
SERVE = """
import sys
from twisted.internet import reactor
from labsim.services.tftp import TftpServerConfig
from labsim.services.tftp_udp import start_tftp_server
uploads = len(sys.argv) > 2 and sys.argv[2] == "uploads"
server = start_tftp_server(reactor, TftpServerConfig(sys.argv[1], blksize_max=65464, uploads=uploads), "127.0.0.1", 0)
print(server.port, flush=True)
reactor.run()
"""


def make_files(root: Path) -> dict[str, bytes]:
    files = {}
    for size in SIZES:
        files[f"f{size}.bin"] = os.urandom(size)
    files["text.cfg"] = b"# a phone config\nserver = 127.0.0.1\n\nline=3\n" * 40
    (root / "sub").mkdir()
    files["sub/nested.cfg"] = b"nested\n"
    for name, content in files.items():
        (root / name).write_bytes(content)
    return files


@contextlib.contextmanager
def serve(tmp_path, *extra):
    """labsim's server in a child process on ``tmp_path/root``: (port, files, tmp_path)."""
    root = tmp_path / "root"
    root.mkdir()
    files = make_files(root)
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(root), *extra], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip().isdigit(), "labsim TFTP server did not start"
        yield int(line), files, tmp_path
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def labsim_server(tmp_path):
    with serve(tmp_path) as running:
        yield running


@pytest.fixture
def labsim_uploads(tmp_path):
    with serve(tmp_path, "uploads") as running:
        yield running


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, timeout=30, **kw)


def test_tftp_hpa_client_binary(labsim_server):
    tftp = require_binary("tftp")
    port, files, tmp = labsim_server
    for name, content in files.items():
        out = tmp / ("got-" + name.replace("/", "_"))
        result = run([tftp, "-v", "-m", "binary", "127.0.0.1", str(port), "-c", "get", name, str(out)])
        assert result.returncode == 0, result
        assert out.read_bytes() == content, name


def test_tftp_hpa_client_netascii(labsim_server):
    # tftp-hpa's ascii mode asks for netascii and turns CR LF back into LF: the text
    # must survive labsim's LF -> CR LF conversion unchanged.
    tftp = require_binary("tftp")
    port, files, tmp = labsim_server
    out = tmp / "got-text.cfg"
    result = run([tftp, "-m", "ascii", "127.0.0.1", str(port), "-c", "get", "text.cfg", str(out)])
    assert result.returncode == 0, result
    assert out.read_bytes() == files["text.cfg"]


def test_tftp_hpa_client_sees_file_not_found(labsim_server):
    tftp = require_binary("tftp")
    port, _, tmp = labsim_server
    result = run([tftp, "-m", "binary", "127.0.0.1", str(port), "-c", "get", "missing.cfg", str(tmp / "x")])
    assert b"File not found" in result.stdout + result.stderr


@pytest.mark.parametrize("blksize", ["1024", "8192", None])
def test_curl_with_blksize(labsim_server, blksize):
    curl = require_binary("curl")
    port, files, tmp = labsim_server
    for name, content in files.items():
        if blksize and not content:
            # curl (7.88 here, and later) rejects "tsize 0" in an OACK as illegal, so it
            # cannot fetch an empty file with options from any server (tftpd-hpa too).
            continue
        out = tmp / "curl.out"
        options = ["--tftp-blksize", blksize] if blksize else ["--tftp-no-options"]
        result = run([curl, "-sS", *options, "-o", str(out), f"tftp://127.0.0.1:{port}/{name}"])
        assert result.returncode == 0, result
        assert out.read_bytes() == content, (name, blksize)


def test_curl_sees_file_not_found(labsim_server):
    curl = require_binary("curl")
    port, _, tmp = labsim_server
    result = run([curl, "-sS", "-o", str(tmp / "x"), f"tftp://127.0.0.1:{port}/missing.cfg"])
    assert result.returncode == 68, result  # curl: "TFTP: File Not Found"


# --- uploads ------------------------------------------------------------------------------


def test_tftp_hpa_client_uploads_binary_and_ascii(labsim_uploads):
    tftp = require_binary("tftp")
    port, files, tmp = labsim_uploads
    for mode in ("binary", "ascii"):
        for name in ("f100000.bin", "f512.bin", "f0.bin", "text.cfg"):
            if mode == "ascii" and name != "text.cfg":
                continue
            source = tmp / "root" / name
            remote = f"uploads/{mode}-{name}"
            result = run([tftp, "-m", mode, "127.0.0.1", str(port), "-c", "put", str(source), remote])
            assert result.returncode == 0 and b"Error" not in result.stdout + result.stderr, result
            assert (tmp / "root" / remote).read_bytes() == files[name], (mode, name)


@pytest.mark.parametrize("blksize", ["1024", "8192", None])
def test_curl_uploads_with_options(labsim_uploads, blksize):
    curl = require_binary("curl")
    port, files, tmp = labsim_uploads
    for name in ("f1.bin", "f1468.bin", "f100000.bin", "sub/nested.cfg"):
        options = ["--tftp-blksize", blksize] if blksize else []
        remote = f"uploads/{blksize}/{name.replace('/', '_')}"
        result = run([curl, "-sS", *options, "-T", str(tmp / "root" / name), f"tftp://127.0.0.1:{port}/{remote}"])
        assert result.returncode == 0, result
        assert (tmp / "root" / remote).read_bytes() == files[name], (name, blksize)


def test_uploads_outside_the_folder_or_when_off_are_refused(labsim_uploads, tmp_path_factory):
    tftp = require_binary("tftp")
    port, _, tmp = labsim_uploads
    source = tmp / "root" / "f1.bin"
    result = run([tftp, "-m", "binary", "127.0.0.1", str(port), "-c", "put", str(source), "f1-copy.bin"])
    assert b"Error code 2" in result.stdout + result.stderr
    assert not (tmp / "root" / "f1-copy.bin").exists()
    with serve(tmp_path_factory.mktemp("off")) as (port_off, _, tmp_off):
        result = run([tftp, "-m", "binary", "127.0.0.1", str(port_off), "-c", "put", str(source), "uploads/x.bin"])
        assert b"Error code 4" in result.stdout + result.stderr
        assert not (tmp_off / "root" / "uploads").exists()


class LabsimClientAgainstTftpdHpa(trial.TestCase):
    timeout = 60

    def setUp(self):
        tftpd = require_binary("in.tftpd")
        require_root("in.tftpd chroots into its root (-s) and switches user (-u)")
        self.root = Path(self.mktemp()).resolve()
        self.root.mkdir(parents=True)
        self.files = make_files(self.root)
        self.port = free_udp_port()
        self.proc = subprocess.Popen(
            [tftpd, "-L", "-u", "root", "-a", f"127.0.0.1:{self.port}", "-s", str(self.root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.addCleanup(self._kill)
        self._wait_bound()

    def _kill(self):
        self.proc.kill()
        self.proc.wait()

    def _wait_bound(self):
        import socket

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.fail(f"in.tftpd exited with {self.proc.returncode}")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                try:
                    probe.bind(("127.0.0.1", self.port))
                except OSError:
                    return  # in.tftpd holds the port
            time.sleep(0.02)
        self.fail("in.tftpd did not bind its port")

    @defer.inlineCallbacks
    def test_byte_identical_at_several_block_sizes(self):
        for blksize in (None, 512, 1468, 8192):
            for name, content in self.files.items():
                got = yield tftp_get(reactor, "127.0.0.1", self.port, name, blksize=blksize, tsize=blksize is not None)
                self.assertEqual(got, content, f"{name} blksize={blksize}")

    @defer.inlineCallbacks
    def test_concurrent_downloads(self):
        names = [n for n in self.files if n.endswith(".bin")] * 5
        results = yield defer.gatherResults([tftp_get(reactor, "127.0.0.1", self.port, n, blksize=1468) for n in names])
        self.assertEqual(results, [self.files[n] for n in names])

    @defer.inlineCallbacks
    def test_not_found(self):
        with self.assertRaises(TftpNotFound):
            yield tftp_get(reactor, "127.0.0.1", self.port, "missing.cfg")

"""labsim's TFTP server and client against real peers: tftp-hpa's client and server, curl.

- tftp-hpa's ``tftp`` client (RFC 1350, no options in version 5.2) and curl (options:
  blksize, tsize) download from labsim's server, which runs in a child process so the
  blocking client calls cannot stall it; files must come back byte-identical.
- The same clients upload (WRQ, ``put`` / ``curl -T``) into the upload folder when
  uploads are on; outside it they get ERROR 2, with uploads off ERROR 4.
- atftp (Debian's ``atftp`` 0.8, the one packaged client that speaks RFC 7440 windowsize)
  downloads with windowsize 1/4/8/16 and blksize 512/1468; its ``--trace`` (the
  client's own view: the OACK, every DATA, every ACK) and the server's counters show the
  window was used: exactly one ACK per window. It uploads with windowsize asked and gets
  lockstep (labsim declines windowsize for WRQ). Blocks and ACKs dropped on purpose
  through the server's fault hook (``TftpServerHandle.link``) show go-back-N recovery
  with a real client, and labsim.faults' random loss a whole lossy download.
- labsim's client downloads from tftp-hpa's ``in.tftpd`` (run as root on a loopback port).

Every peer is started here on 127.0.0.1 and killed in a finally / cleanup.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
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

# labsim's server in a child process; prints its port, serves until killed. Flags after
# the root: "uploads"; "drop=out:5,in:4" (drop the first copy of DATA 5 sent and of ACK 4
# received); "dup=out:1" (deliver the first copy of DATA 1 twice); "loss=P" with "seed=N"
# (labsim.faults' own link drops outgoing datagrams at random). With any of the last three
# every datagram passes the server's fault hook, through a link that also counts ACKs in
# and DATA out; without them the server runs its production path.
# A line "stats" on its stdin answers one JSON line: the server's counters and the link's.
SERVE = """
import json, random, sys
from twisted.internet import reactor, stdio
from twisted.protocols.basic import LineReceiver
from labsim.services.tftp import TftpServerConfig
from labsim.services.tftp_udp import start_tftp_server

root = sys.argv[1]
opts = dict(flag.partition("=")[::2] for flag in sys.argv[2:])
server = start_tftp_server(reactor, TftpServerConfig(root, blksize_max=65464, uploads="uploads" in opts), "127.0.0.1", 0)
seen = {"acks_in": 0, "data_out": 0, "dropped": 0, "duplicated": 0, "fault_dropped": 0}
drops = set(filter(None, opts.get("drop", "").split(",")))
dups = set(filter(None, opts.get("dup", "").split(",")))
faults = None
if "loss" in opts:
    from labsim.faults import ActiveFault, FaultSet, FaultyLink
    faults = FaultSet(random.Random(int(opts.get("seed", "1"))))
    faults.add(ActiveFault(name="loss", service="tftp", direction="out", loss=float(opts["loss"])))
    fault_link = FaultyLink(faults, "tftp", reactor)


class CountingLink:
    def carry(self, direction, data, forward):
        if len(data) >= 4 and data[0] == 0 and data[1] in (3, 4):
            key = f"{direction}:{(data[2] << 8) | data[3]}"
            if data[1] == 3 and direction == "out":
                seen["data_out"] += 1
            if key in drops:
                drops.discard(key)
                seen["dropped"] += 1
                return
            if data[1] == 4 and direction == "in":
                seen["acks_in"] += 1
            if key in dups:
                dups.discard(key)
                seen["duplicated"] += 1
                forward(data)
        if faults is not None:
            fault_link.carry(direction, data, forward)
        else:
            forward(data)


if "drop" in opts or "dup" in opts or faults is not None:
    server.link = CountingLink()


class Control(LineReceiver):
    delimiter = b"\\n"

    def lineReceived(self, line):
        if line.strip() == b"stats":
            if faults is not None:
                seen["fault_dropped"] = faults.stats["dropped"]
            self.sendLine(json.dumps({**server.stats, **seen}).encode())


print(server.port, flush=True)
stdio.StandardIO(Control())
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


class LabsimTftp:
    """labsim's server in a child process: its port, and its counters on request."""

    def __init__(self, root: Path, *flags: str):
        self.root = root
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(root), *flags],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.stop()
            raise AssertionError("labsim TFTP server did not start")
        self.port = int(line)

    def stats(self) -> dict[str, int]:
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            pipe.close()


@contextlib.contextmanager
def running(root: Path, *flags: str):
    server = LabsimTftp(root, *flags)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def serve(tmp_path, *extra):
    """labsim's server in a child process on ``tmp_path/root``: (port, files, tmp_path)."""
    root = tmp_path / "root"
    root.mkdir()
    files = make_files(root)
    with running(root, *extra) as server:
        yield server.port, files, tmp_path


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


# --- atftp: RFC 7440 windowsize with a third-party client -----------------------------------

ATFTP_WINDOWS = (1, 4, 8, 16)
ATFTP_BLKSIZES = (512, 1468)


def window_files(windowsize: int, blksize: int) -> dict[str, int]:
    """File sizes that end at the edges a window sender can get wrong."""
    w, b = windowsize, blksize
    return {
        "empty": 0,  # one empty DATA 1, alone in its window
        "boundary": 3 * w * b,  # 3 full windows, then the empty block alone in a 4th
        "closes": (3 * w - 1) * b + 7,  # the short last block is the window's last
        "mid": 2 * w * b + (w // 2) * b + 100,  # the file ends mid-window
    }


class AtftpTrace:
    """What ``atftp --trace`` printed (stderr): the client's own view of the transfer."""

    def __init__(self, text: str):
        self.text = text
        oack = re.search(r"received OACK <(.*)>", text)
        self.oack = dict(re.findall(r"(\w+): (\w+)", oack.group(1))) if oack else None
        # download: DATA received, ACKs sent; upload: DATA sent, ACKs received
        self.data_received = [int(n) for n in re.findall(r"received \d+\. DATA <block: (\d+)", text)]
        self.acks_sent = [int(n) for n in re.findall(r"sent ACK <block: (\d+)>", text)]
        self.data_sent = [int(n) for n in re.findall(r"sent \d+\. DATA <block: (\d+)", text)]
        self.acks_received = [int(n) for n in re.findall(r"received ACK <block: (\d+)>", text)]
        self.out_of_order = text.count("got wrong block")


def atftp(direction: str, port: int, remote: str, local: Path, *options: str) -> AtftpTrace:
    """One atftp transfer (``-g`` or ``-p``) against 127.0.0.1:port; fails the test unless it succeeds."""
    binary = require_binary("atftp")
    cmd = [binary, "--trace"]
    for option in options:
        cmd += ["--option", option]
    cmd += [direction, "-r", remote, "-l", str(local), "127.0.0.1", str(port)]
    result = run(cmd, text=True)
    assert result.returncode == 0, (cmd, result.stdout, result.stderr[-2000:])
    return AtftpTrace(result.stderr)


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before.get(key, 0) for key in after}


@pytest.fixture(scope="module")
def atftp_server(tmp_path_factory):
    """One plain labsim server (no fault hook: the production path) with every window test file."""
    require_binary("atftp")
    root = tmp_path_factory.mktemp("atftp") / "root"
    root.mkdir()
    files = {}
    for windowsize in ATFTP_WINDOWS:
        for blksize in ATFTP_BLKSIZES:
            for kind, size in window_files(windowsize, blksize).items():
                name = f"w{windowsize}-b{blksize}-{kind}.bin"
                files[name] = os.urandom(size)
                (root / name).write_bytes(files[name])
    files["large.bin"] = os.urandom(300_000)
    (root / "large.bin").write_bytes(files["large.bin"])
    with running(root) as server:
        yield server, files


def check_windowed_download(server, files, name, out, windowsize, blksize, asked=None):
    """Download ``name`` with atftp; assert byte-exact, one ACK per window, no retransmission."""
    before = server.stats()
    trace = atftp("-g", server.port, name, out, f"windowsize {asked or windowsize}", f"blksize {blksize}")
    after = server.stats()
    content = files[name]
    assert out.read_bytes() == content, name
    blocks = len(content) // blksize + 1
    # The server accepted (or lowered) the window and atftp went along with it.
    assert trace.oack == {"windowsize": str(windowsize), "blksize": str(blksize)}, trace.text
    # Every block arrived once, in order: nothing was lost or resent.
    assert trace.data_received == list(range(1, blocks + 1)), name
    # ACK 0 for the OACK, then one ACK per window (its last block, or the file's).
    windows = math.ceil(blocks / windowsize)
    assert trace.acks_sent == [0] + [min(k * windowsize, blocks) for k in range(1, windows + 1)], name
    if windowsize > 1 and blocks > 2:
        assert len(trace.acks_sent) - 1 < blocks
    d = delta(before, after)
    assert d["transfers_ok"] == 1 and d["transfers_failed"] == 0, d
    assert d["packets_sent"] == 1 + blocks and d["bytes_sent"] == len(content), d  # the OACK + each block once
    assert d["retransmits"] == d["duplicate_acks"] == d["unknown_tid"] == 0, d
    return trace


@pytest.mark.parametrize("blksize", ATFTP_BLKSIZES)
@pytest.mark.parametrize("windowsize", ATFTP_WINDOWS)
def test_atftp_windowed_downloads(atftp_server, tmp_path, windowsize, blksize):
    server, files = atftp_server
    for kind in window_files(windowsize, blksize):
        name = f"w{windowsize}-b{blksize}-{kind}.bin"
        check_windowed_download(server, files, name, tmp_path / name, windowsize, blksize)


def test_atftp_large_download_and_a_lowered_window(atftp_server, tmp_path):
    server, files = atftp_server
    # 587 blocks at windowsize 16: 37 ACKs instead of 587.
    trace = check_windowed_download(server, files, "large.bin", tmp_path / "a.bin", 16, 512)
    assert len(trace.acks_sent) == 1 + 37
    # RFC 7440: a larger window asked for is lowered to windowsize_max (64) in the OACK,
    # and the client must use the lowered one: 205 blocks of 1468 -> 4 ACKs.
    check_windowed_download(server, files, "large.bin", tmp_path / "b.bin", 64, 1468, asked=100)


def test_atftp_upload_asking_for_a_window_gets_lockstep(tmp_path):
    require_binary("atftp")
    root = tmp_path / "root"
    root.mkdir()
    with running(root, "uploads") as server:
        for size in (0, 1024, 100_000):
            source = tmp_path / f"up{size}.bin"
            source.write_bytes(os.urandom(size))
            before = server.stats()
            trace = atftp("-p", server.port, f"uploads/up{size}.bin", source, "windowsize 8", "blksize 512")
            after = server.stats()
            assert (root / "uploads" / f"up{size}.bin").read_bytes() == source.read_bytes(), size
            blocks = size // 512 + 1
            # labsim declines windowsize for WRQ: the OACK leaves it out and atftp falls
            # back to one DATA per ACK.
            assert trace.oack == {"blksize": "512"}, trace.text
            assert trace.data_sent == list(range(1, blocks + 1))
            assert trace.acks_received == list(range(1, blocks + 1))
            d = delta(before, after)
            assert (d["uploads"], d["bytes_received"], d["retransmits"], d["duplicate_data"]) == (1, size, 0, 0), d


# Losses on purpose, through the server's fault hook; a 10,000-byte file at blksize 512 is
# blocks 1-20 (the 20th short), windowsize 4: windows 1-4, 5-8, ..., 17-20.
LOSS_FILE = 10_000


@pytest.mark.parametrize(
    "drop, timeouts, window_resends",
    [
        # A block mid-window: atftp sees 7 out of order and ACKs 5 at once; the server
        # goes back to 6 (go-back-N) with no timeout.
        ("out:6", 0, 0),
        # The FIRST block of a window: atftp sees 6 out of order and repeats ACK 4, the
        # ACK the server already had. RFC 7440 section 4: the sender should restart the
        # window from there; labsim does it once per window, again without a timeout.
        ("out:5", 0, 1),
        # An ACK: the server times out and resends the window; atftp, seeing block 1
        # again, repeats ACK 4, which moves the server on.
        ("in:4", 1, 0),
        # The short last block: nothing arrives out of order, so nothing tells the server
        # but its timeout; it resends 17-20 and atftp's ACK 19 for the repeat moves it on.
        ("out:20", 1, 0),
        # Two in a row in one window, and the first of the next.
        ("out:9,out:10,out:13", None, None),
    ],
)
def test_atftp_recovers_from_lost_packets(tmp_path, drop, timeouts, window_resends):
    require_binary("atftp")
    root = tmp_path / "root"
    root.mkdir()
    content = os.urandom(LOSS_FILE)
    (root / "f.bin").write_bytes(content)
    with running(root, f"drop={drop}") as server:
        out = tmp_path / "got.bin"
        trace = atftp("-g", server.port, "f.bin", out, "windowsize 4", "blksize 512")
        stats = server.stats()
    assert out.read_bytes() == content
    assert trace.oack == {"windowsize": "4", "blksize": "512"}
    assert stats["dropped"] == drop.count(":"), stats
    assert stats["transfers_ok"] == 1 and stats["timeouts"] == 0, stats
    # The client did see the gap (or, for a lost ACK / last block, old blocks again).
    assert trace.out_of_order > 0, trace.text
    if timeouts is not None:
        assert (stats["retransmits"], stats["window_resends"]) == (timeouts, window_resends), stats
    else:
        assert stats["retransmits"] + stats["window_resends"] >= 1, stats
    # Go-back-N: every DATA the server sent beyond the 20 blocks is a resent window's.
    assert stats["data_out"] > 20 and stats["acks_in"] < stats["data_out"], stats


@pytest.mark.parametrize("dup", ["out:1", "out:6", "in:4"])
def test_atftp_duplicates_cost_at_most_one_window(tmp_path, dup):
    # atftp ACKs again whenever a block arrives twice. Before labsim told such an echo
    # from news of a loss, one duplicated DATA made every later window go out twice (39
    # DATA for these 20 blocks); one duplicated ACK restarts at most one window.
    require_binary("atftp")
    root = tmp_path / "root"
    root.mkdir()
    content = os.urandom(LOSS_FILE)
    (root / "f.bin").write_bytes(content)
    with running(root, f"dup={dup}") as server:
        out = tmp_path / "got.bin"
        atftp("-g", server.port, "f.bin", out, "windowsize 4", "blksize 512")
        stats = server.stats()
    assert out.read_bytes() == content
    assert stats["duplicated"] == 1 and stats["transfers_ok"] == 1, stats
    assert stats["retransmits"] == 0, stats  # no timeout either
    assert 20 <= stats["data_out"] <= 20 + 4, stats


def test_atftp_downloads_through_random_loss(tmp_path):
    # labsim.faults' own link (the one scenarios use), dropping 4% of what the server
    # sends, seeded: a whole windowed download through it, byte-exact.
    require_binary("atftp")
    root = tmp_path / "root"
    root.mkdir()
    content = os.urandom(60_000)
    (root / "f.bin").write_bytes(content)
    with running(root, "loss=0.04", "seed=7") as server:
        out = tmp_path / "got.bin"
        atftp("-g", server.port, "f.bin", out, "windowsize 8", "blksize 512")
        stats = server.stats()
    assert out.read_bytes() == content
    assert stats["fault_dropped"] > 0 and stats["transfers_ok"] == 1, stats
    assert stats["data_out"] > 60_000 // 512 + 1, stats  # lost blocks went again

"""scenarios/external-load-test/start-peers.sh, as a user runs it: from a root-only copy
of the checkout, it serves (nginx's workers run as nobody), writes nothing into the
checkout, and leaves nothing behind when stopped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

import pytest

from tests.peers import require_binary, require_root, wait_for_tcp

pytestmark = pytest.mark.interop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ASSETS = os.path.join(ROOT, "scenarios", "external-load-test")


def _tree(folder: str) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), folder) for d, _, files in os.walk(folder) for f in files}


def test_start_peers_serves_from_a_root_only_folder_and_leaves_nothing(tmp_path):
    require_root("Kea and tftpd-hpa on ports 67 and 69")
    for name in ("kea-dhcp4", "in.tftpd", "nginx"):
        require_binary(name)
    private = tmp_path / "root-only"
    private.mkdir(mode=0o700)
    copy = private / "external-load-test"
    shutil.copytree(ASSETS, copy)
    before = _tree(str(copy))
    # The script's temporary folder goes under TMPDIR; nginx's workers (nobody) must reach
    # it, as under /tmp, so not under pytest's own root-only temporary folder.
    temp = tempfile.mkdtemp(prefix="labsim-test-tmpdir-")
    os.chmod(temp, 0o755)
    env = dict(os.environ, TMPDIR=str(temp), PATH=os.environ["PATH"] + ":/usr/sbin:/sbin")
    proc = subprocess.Popen(["bash", str(copy / "start-peers.sh")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        try:
            wait_for_tcp("127.0.0.1", 8081, timeout=15)
            with urllib.request.urlopen("http://127.0.0.1:8081/y000000000066.cfg", timeout=5) as response:
                assert response.status == 200
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            output, _ = proc.communicate(timeout=20)
        assert _tree(str(copy)) == before, output  # nothing written into the checkout
        deadline = time.monotonic() + 5
        while os.listdir(temp) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert os.listdir(temp) == [], output  # the temporary folder is gone
    finally:
        shutil.rmtree(temp, ignore_errors=True)

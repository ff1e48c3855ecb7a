"""A phone's TFTP download never takes a DATA packet of another transfer, even when the
kernel hands it the port of a transfer the server is still retransmitting to.

Seen at 10,000 phones (issue 12): a lobby phone "downloaded" ``y000000000000.boot``, a
file the server does not have, and got 164 bytes of another phone's configuration. Here
the same thing on a small scale: tests/tftp_port_reuse.py runs in a private network
namespace whose ephemeral port range is two ports, one of them held, so the second
download must get the first one's port (unless the client still holds it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.peers import require_binary, require_root

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOW_PORT = 40000


def run_in_private_namespace() -> dict:
    require_root("a private network namespace with its own ephemeral port range")
    unshare = require_binary("unshare")
    ip = require_binary("ip")
    script = (f"{ip} link set lo up && "
              f"echo '{LOW_PORT} {LOW_PORT + 1}' > /proc/sys/net/ipv4/ip_local_port_range && "
              f"exec {sys.executable} -m tests.tftp_port_reuse {LOW_PORT}")
    env = dict(os.environ, PYTHONPATH=ROOT)
    # The namespace (and every socket in it) is gone when the process exits.
    done = subprocess.run([unshare, "--net", "sh", "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_late_data_packet_of_the_ports_previous_transfer_is_not_taken_for_an_answer():
    outcome = run_in_private_namespace()
    assert outcome["first"].startswith("#!version")
    # The server does not have the file: the only right outcome is "not found".
    assert outcome["second"]["result"] == "TftpNotFound", outcome
    assert [name for name, _port in outcome["requests"]] == ["first.cfg", "y000000000000.boot"]

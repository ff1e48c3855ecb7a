"""ISC perfdhcp (Kea's load generator) against labsim's DHCP server over loopback.

perfdhcp plays a relay agent: it sends from its local address with giaddr set to that
address, and expects the replies there, on the server port. perfdhcp insists that the
local address is configured on an interface, and only 127.0.0.1 is, so perfdhcp takes
127.0.0.1:P and labsim's server 127.0.0.3:P (all of 127/8 is local on Linux). No root
needed: P is unprivileged.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers import free_udp_port, require_binary

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
SERVER_HOST = "127.0.0.3"
EXCHANGES = 600
RATE = 200


def parse_perfdhcp(output: str) -> dict[str, dict[str, float]]:
    """perfdhcp's final report: {"DISCOVER-OFFER": {"sent packets": 600, ...}, ...}."""
    sections: dict[str, dict[str, float]] = {}
    for match in re.finditer(r"\*\*\*Statistics for: (\S+)\*\*\*\n(.*?)(?=\n\n|\Z)", output, re.S):
        fields = {}
        for line in match.group(2).splitlines():
            key, sep, value = line.partition(":")
            number = re.match(r"\s*([-\d.]+)", value)
            if sep and number:
                fields[key.strip()] = float(number.group(1))
        sections[match.group(1)] = fields
    malformed = re.search(r"Malformed packets: (\d+)", output)
    if malformed:
        sections["malformed"] = {"count": float(malformed.group(1))}
    return sections


def test_parse_perfdhcp_report():
    sample = (
        "***Malformed Packets***\nMalformed packets: 2\n"
        "***Statistics for: DISCOVER-OFFER***\nsent packets: 10\nreceived packets: 9\ndrops: 1\n"
        "drops ratio: 10 %\nnon unique addresses: 0\n\nmin delay: 0.158 ms\n"
    )
    parsed = parse_perfdhcp(sample)
    assert parsed["DISCOVER-OFFER"] == {
        "sent packets": 10, "received packets": 9, "drops": 1, "drops ratio": 10, "non unique addresses": 0,
    }  # fmt: skip
    assert parsed["malformed"]["count"] == 2


@pytest.fixture
def labsim_dhcp_server():
    """labsim's DHCP server in a subprocess; yields (host, port, stop) where stop() ends it
    and returns its counters. Killed in any case when the test ends."""
    port = free_udp_port("127.0.0.1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "labsim.services.dhcp_udp", "--host", SERVER_HOST, "--port", str(port),
         "--option", "router=10.1.0.1", "--option", "tftp_server_name=http://10.1.0.5/prov/"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip

    def stop() -> dict:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])

    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout=15):
                raise TimeoutError("labsim DHCP server did not start")
        ready = proc.stdout.readline()
        assert ready.split() == ["READY", SERVER_HOST, str(port)], ready + proc.stderr.read()
        yield SERVER_HOST, port, stop
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            stream.close()


@pytest.mark.timeout(60)
def test_perfdhcp_completes_every_exchange(labsim_dhcp_server):
    perfdhcp = require_binary("perfdhcp")
    host, port, stop = labsim_dhcp_server
    # -n bounds the run; -R draws client MACs from 2^32 so that a repeat (which -u would
    # flag as a non-unique address) is a ~1e-4 event; -W waits 0.5 s for late replies.
    cmd = [perfdhcp, "-4", "-l", "127.0.0.1", "-L", str(port), "-N", str(port),
           "-r", str(RATE), "-n", str(EXCHANGES), "-R", "4294967295", "-u", "-W", "500000", host]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=45)
    report = parse_perfdhcp(run.stdout)
    server = stop()

    assert "DISCOVER-OFFER" in report and "REQUEST-ACK" in report, run.stdout + run.stderr
    for exchange in ("DISCOVER-OFFER", "REQUEST-ACK"):
        stats = report[exchange]
        assert stats["sent packets"] == EXCHANGES, (exchange, stats)
        assert stats["received packets"] == EXCHANGES, (exchange, stats)
        assert stats["drops"] == 0, (exchange, stats)
        assert stats["rejected leases"] == 0, (exchange, stats)
        assert stats["non unique addresses"] == 0, (exchange, stats)
    assert report["malformed"]["count"] == 0
    # the server's side of the same story
    assert server["discover"] == server["offer"] == EXCHANGES
    assert server["request"] == server["ack"] == EXCHANGES
    assert server["nak"] == server["malformed"] == server["internal_errors"] == server["send_errors"] == 0
    assert server["leases_held"] == EXCHANGES

"""Phones renew their DHCP lease on real loopback sockets: a 10 s lease from labsim's own
server, a run of 14 s (``duration``), every phone renewing at T1 through the relay."""

import json
import subprocess
import sys

import pytest

from tests.peers import free_tcp_port, free_udp_port

pytestmark = pytest.mark.e2e


def test_phones_renew_a_10s_lease_against_labsims_dhcp(tmp_path):
    dhcp_port, http_port = free_udp_port(), free_tcp_port()
    (tmp_path / "lab.yaml").write_text(f"""\
name: short-lease
time_limit_s: 60
duration: 14s
services:
  dhcp: {{port: {dhcp_port}, subnet: 10.31.0.0/16, pool: {{start: 10.31.0.10, end: 10.31.0.250}},
         lease_time_s: 10, options: {{66: "http://127.0.0.1:{http_port}/"}}}}
  http: {{port: {http_port}}}
provisioning:
  files: {{y000000000066.cfg: "#!version:1.0.0.1\\nlang.gui = English\\n"}}
fleets:
  - {{vendor: yealink, model: T46S, count: 5, first_mac: "00:15:65:cc:00:01", boot_time_s: 0.2}}
expect:
  - phones.ready == 100%
""")
    report_dir = tmp_path / "r"
    proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(tmp_path / "lab.yaml"),
                           "--report-dir", str(report_dir)], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((report_dir / "report.json").read_text())
    assert report["end_reason"].startswith("duration of 14s")
    events = [json.loads(line) for line in (report_dir / "events.jsonl").read_text().splitlines()]
    renewals = 0
    for phone in report["phones"]:
        mac = phone["mac"]
        acquired = next(e["t"] for e in events if e["mac"] == mac and e["kind"] == "dhcp" and e["type"] == "ACK")
        requests = [e for e in events if e["mac"] == mac and e["kind"] == "dhcp" and e["dir"] == "out"
                    and e["type"] == "REQUEST" and e["t"] > acquired + 1]
        renewed = [e for e in events if e["mac"] == mac and e["kind"] == "step" and "renewed" in e["detail"]]
        # T1 = 5 s: one renewal at ~5 s and one at ~10 s after the lease, each ACKed.
        assert len(requests) >= 2 and len(renewed) >= 2, (mac, requests, renewed)
        assert abs(requests[0]["t"] - acquired - 5.0) < 0.5
        assert phone["state"] == "ready"
        renewals += len(renewed)
    assert report["summary"]["by_state"]["ready"] == 5
    # Each renewal is timed like the first lease (stage dhcp_renew) and counted on the
    # server's line of the report, as a load test of a DHCP server wants it.
    stages = report["summary"]["stages_s"]
    assert stages["dhcp_renew"]["count"] == renewals and stages["dhcp_renew"]["max"] < 1.0
    assert "dhcp_rebind" not in stages
    server = report["summary"]["servers"]["dhcp://127.0.0.1"]
    assert server["requests"] == stages["dhcp"]["count"] + renewals and server["errors"] == 0
    dhcp = report["services"]["dhcp"]
    assert dhcp["ack"] >= 5 * 3 and dhcp["nak"] == 0 and dhcp["discover"] == 5  # renewals, never a new DISCOVER

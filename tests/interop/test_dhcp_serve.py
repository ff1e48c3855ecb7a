"""``labsim serve`` as a user runs it: a subprocess with a small scenario, real curl and
tftp-hpa fetches and a relayed DHCP exchange against it, its live log read as it comes,
SIGINT/SIGTERM ending it with exit 0 and the counters."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest

from labsim.wire import dhcp
from tests.peers import free_tcp_port, free_udp_port, require_binary
from tests.serve_process import labsim_serve

pytestmark = pytest.mark.interop


# -- the test -----------------------------------------------------------------------------------

SCENARIO = """\
name: serve-test
services:
  dhcp:
    port: {dhcp_port}
    subnet: 10.40.0.0/24
    pool: {{start: 10.40.0.10, end: 10.40.0.20}}
    options: {{66: "http://127.0.0.1:{http_port}/"}}
    classes:
      - {{name: yealink, match: {{vendor_class: {{prefix: yealink}}}}, options: {{66: "tftp://127.0.0.1:{tftp_port}/"}}}}
    lease_file: leases.txt
  tftp: {{port: {tftp_port}}}
  http: {{port: {http_port}}}
provisioning:
  files:
    y000000000066.cfg: "#!version:1.0.0.1\\nstatic.auto_provision.enable = 1\\n"
  per_phone:
    - {{name: "{{mac}}.cfg", text: "account.1.user_name = {{index}}\\n"}}
fleets:
  - {{vendor: yealink, model: T46S, count: 2, first_mac: "00:15:65:00:00:01"}}
"""


def relayed_dora(dhcp_port: int) -> dhcp.DhcpMessage:
    """A DISCOVER/REQUEST from a relay agent on 127.0.0.2, as the fleet sends them."""
    relay = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        relay.bind(("127.0.0.2", dhcp_port))
        relay.settimeout(5)
        mac = bytes.fromhex("001565000001")
        base = {60: b"yealink"}
        discover = dhcp.DhcpMessage(dhcp.BOOTREQUEST, 1, mac, {53: bytes([dhcp.DISCOVER]), **base},
                                    giaddr="127.0.0.2", hops=1)
        relay.sendto(dhcp.encode(discover), ("127.0.0.1", dhcp_port))
        offer = dhcp.decode(relay.recv(2048))
        request = dhcp.DhcpMessage(dhcp.BOOTREQUEST, 2, mac, {
            53: bytes([dhcp.REQUEST]), 50: socket.inet_aton(offer.yiaddr), 54: socket.inet_aton("127.0.0.1"), **base,
        }, giaddr="127.0.0.2", hops=1)  # fmt: skip
        relay.sendto(dhcp.encode(request), ("127.0.0.1", dhcp_port))
        return dhcp.decode(relay.recv(2048))
    finally:
        relay.close()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_labsim_serve_logs_each_exchange_and_prints_counters(tmp_path, stop_signal):
    curl = require_binary("curl")
    tftp = require_binary("tftp")
    ports = {"dhcp_port": free_udp_port(), "tftp_port": free_udp_port(), "http_port": free_tcp_port()}
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.format(**ports))
    report_dir = tmp_path / "report"
    with labsim_serve(str(path), str(report_dir)) as serve:
        banner = serve.wait_for("labsim serve:")
        assert f"DHCP 127.0.0.1:{ports['dhcp_port']}" in banner and f"HTTP 127.0.0.1:{ports['http_port']}" in banner

        fetched = subprocess.run([curl, "-sS", "-A", "Yealink SIP-T46S 66.85.0.5 00:15:65:00:00:01",
                                  f"http://127.0.0.1:{ports['http_port']}/001565000001.cfg"],
                                 capture_output=True, text=True, timeout=10)
        assert fetched.stdout == "account.1.user_name = 1\n"  # the per-phone file was made
        line = serve.wait_for("http GET /001565000001.cfg")
        assert line.endswith("200 from 127.0.0.1 (mac 00:15:65:00:00:01)")

        target = tmp_path / "got.cfg"
        got = subprocess.run([tftp, "-m", "octet", "127.0.0.1", str(ports["tftp_port"]), "-c", "get",
                              "y000000000066.cfg", str(target)], capture_output=True, text=True, timeout=10)
        assert target.read_text().startswith("#!version:1.0.0.1"), got.stderr
        assert f"sending {target.stat().st_size} bytes" in serve.wait_for("tftp RRQ y000000000066.cfg from 127.0.0.1:")
        subprocess.run([tftp, "127.0.0.1", str(ports["tftp_port"]), "-c", "get", "missing.cfg",
                        str(tmp_path / "missing")], capture_output=True, timeout=10)
        assert "refused (1 " in serve.wait_for("tftp RRQ missing.cfg")

        ack = relayed_dora(ports["dhcp_port"])
        assert ack.message_type == dhcp.ACK and ack.options[66] == f"tftp://127.0.0.1:{ports['tftp_port']}/".encode()
        line = serve.wait_for("dhcp ACK")
        assert line.split(" ", 1)[1] == (
            f"dhcp ACK {ack.yiaddr} to 00:15:65:00:00:01 via 127.0.0.2 (vendor yealink, class yealink)"
        )

        code = serve.stop(stop_signal)
        assert code == 0, serve.stderr
        after = serve.lines[serve.lines.index("counters:"):]
        dhcp_counters = next(line for line in after if line.startswith("  dhcp: "))
        assert "ack=1" in dhcp_counters and "class_yealink=1" in dhcp_counters
        assert "transfers_ok=1" in next(line for line in after if line.startswith("  tftp: "))
        assert "status.200=1" in next(line for line in after if line.startswith("  http: "))
    # the lease file is written at stop, relative to the report folder
    assert f"bound 00:15:65:00:00:01 {ack.yiaddr} " in (report_dir / "leases.txt").read_text()


def test_labsim_serve_refuses_a_scenario_without_services_or_with_a_bad_lease_file(tmp_path):
    path = tmp_path / "scenario.yaml"
    path.write_text("name: none\nnetwork: {dhcp_server: 127.0.0.1}\n"
                    "fleets: [{vendor: yealink, model: T46S, count: 1, first_mac: '00:15:65:00:00:01'}]\n")
    done = subprocess.run([sys.executable, "-m", "labsim", "serve", str(path)], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2 and "no services to serve" in done.stderr

    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "leases.txt").write_text("bound 00:15:65:00:00:01 10.40.0.10 tomorrow\n")
    ports = {"dhcp_port": free_udp_port(), "tftp_port": free_udp_port(), "http_port": free_tcp_port()}
    path.write_text(SCENARIO.format(**ports))
    done = subprocess.run([sys.executable, "-m", "labsim", "serve", str(path), "--report-dir",
                           str(tmp_path / "report")], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "cannot start: lease file " in done.stderr and "leases.txt:1: expires 'tomorrow'" in done.stderr

"""``labsim run`` end to end with FTP provisioning and with PnP discovery: real loopback
sockets, the real CLI, the report on disk."""

import json
import subprocess
import sys

import pytest

from tests.peers import free_tcp_port, free_udp_port

pytestmark = pytest.mark.e2e

COMMON = """\
      #!version:1.0.0.1
      static.network.lldp.enable = 1
"""


def scenario(*, services: str, dhcp_options: str, count: int = 20, extra: str = "") -> str:
    return f"""\
name: e2e-ftp-pnp
time_limit_s: 60
services:
  dhcp:
    port: {free_udp_port()}
    subnet: 10.31.0.0/16
    pool: {{start: 10.31.0.10, end: 10.31.0.250}}
    options: {{{dhcp_options}}}
{services}
provisioning:
  files:
    y000000000066.cfg: |
{COMMON}    y000000000065.cfg: |
{COMMON}  per_phone:
    - name: "{{mac}}.cfg"
      text: |
        #!version:1.0.0.1
        account.1.user_name = {{index}}
{extra}fleets:
  - name: desk
    vendor: yealink
    models: {{T46S: {count // 2}, T48S: {count - count // 2}}}
    first_mac: "00:15:65:ab:00:01"
    boot: {{pattern: storm, random_delay_s: 0.5}}
    boot_time_s: 0.2
expect:
  - phones.ready == 100%
  - phone.reboots == 1
"""


def run_labsim(tmp_path, text, timeout=120):
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    report_dir = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(path), "--report-dir", str(report_dir)],
                          capture_output=True, text=True, timeout=timeout)
    report_file = report_dir / "report.json"
    report = json.loads(report_file.read_text()) if report_file.exists() else None
    return proc, report


def steps(phone) -> list[str]:
    return [event.get("detail", "") for event in phone["events"]]


def test_fleet_provisions_over_ftp_with_credentials_from_option_66(tmp_path):
    ftp_port = free_tcp_port()
    services = f"""\
  ftp:
    port: {ftp_port}
    users: {{phone: "s3cret"}}
"""
    text = scenario(services=services, dhcp_options=f'66: "ftp://phone:s3cret@127.0.0.1:{ftp_port}/"')
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["passed"] and report["complete"]
    assert report["summary"]["by_state"]["ready"] == 20
    ftp = report["services"]["ftp"]
    assert ftp["files_sent"] == 20 * 2 * 2  # Common CFG and MAC CFG, in both cycles
    assert ftp["logins_failed"] == 0
    assert ftp["logins_ok"] == 20 * 4 * 2  # a session per file: two boot files (550) and two CFGs
    phone = report["phones"][0]
    assert phone["files"]["y000000000066.cfg"] or phone["files"]["y000000000065.cfg"]
    assert f"FTP {'127.0.0.1'}:{ftp_port}" in proc.stdout


def test_a_wrong_ftp_password_fails_every_phone_with_denied(tmp_path):
    ftp_port = free_tcp_port()
    services = f"""\
  ftp:
    port: {ftp_port}
    users: {{phone: "s3cret"}}
"""
    text = scenario(services=services, dhcp_options=f'66: "ftp://phone:wrong@127.0.0.1:{ftp_port}/"', count=4)
    text = text.replace("  - phone.reboots == 1\n", "")
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert report["summary"]["by_state"]["failed"] == 4
    assert report["services"]["ftp"]["files_sent"] == 0 and report["services"]["ftp"]["logins_failed"] > 0
    assert any("denied" in step for step in steps(report["phones"][0]))


def test_phones_find_their_server_by_pnp_when_dhcp_offers_no_option_66(tmp_path):
    http_port, ftp_port, pnp_port = free_tcp_port(), free_tcp_port(), free_udp_port()
    services = f"""\
  http: {{port: {http_port}}}
  ftp:
    port: {ftp_port}
    anonymous: true
  pnp:
    port: {pnp_port}
    url: "http://127.0.0.1:{http_port}/"
    per_model: {{T48S: "ftp://127.0.0.1:{ftp_port}/"}}
"""
    text = scenario(services=services, dhcp_options="router: 10.31.0.1")
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["summary"]["by_state"]["ready"] == 20
    pnp = report["services"]["pnp"]
    assert pnp["notifies_sent"] == 20 * 2  # asked at both boots
    assert pnp["notify_acked"] == 20 * 2 and pnp["malformed"] == 0
    assert report["services"]["http"]["status"]["200"] == 10 * 2 * 2  # the T46S phones
    assert report["services"]["ftp"]["files_sent"] == 10 * 2 * 2  # the T48S phones, anonymously
    by_model = {phone["model"]: phone for phone in report["phones"]}
    assert any(step.startswith(f"PnP: http://127.0.0.1:{http_port}/") for step in steps(by_model["T46S"]))
    assert any(step.startswith(f"PnP: ftp://127.0.0.1:{ftp_port}/") for step in steps(by_model["T48S"]))
    assert "pnp" in report["summary"]["stages_s"]


def test_without_a_pnp_server_and_option_66_phones_fail_fast(tmp_path):
    # PnP is on by default, but on loopback nothing answers the multicast group: the
    # phones do not wait for it, and with no other source they fail.
    text = scenario(services="", dhcp_options="router: 10.31.0.1", count=2).replace("  - phone.reboots == 1\n", "")
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 1
    assert report["summary"]["by_state"]["failed"] == 2
    assert "pnp" not in report["summary"]["stages_s"]
    assert any("no PnP answer" in step for step in steps(report["phones"][0]))

"""``labsim run`` end to end: real loopback sockets, the real CLI, the report on disk."""

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.peers import free_port_udp_and_tcp, free_tcp_port, free_udp_port

pytestmark = pytest.mark.e2e

COMMON = """\
#!version:1.0.0.1
static.network.lldp.enable = 1
account.1.sip_server.1.address = 127.0.0.1
"""


def scenario_text(*, option66: str, dhcp_port: int, tftp_port: int, http_port: int, count: int = 20,
                  files: dict | None = None, expect=("phones.ready == 100%", "phone.reboots == 1"),
                  time_limit: float = 60, extra_dhcp_options: str = "") -> str:
    files = files if files is not None else {"y000000000066.cfg": COMMON, "y000000000065.cfg": COMMON}
    file_lines = "".join(
        f"    {name}: |\n" + "".join(f"      {line}\n" for line in text.splitlines()) for name, text in files.items()
    )
    expect_lines = "".join(f"  - {e}\n" for e in expect)
    return f"""\
name: e2e
time_limit_s: {time_limit}
services:
  dhcp:
    port: {dhcp_port}
    subnet: 10.30.0.0/16
    pool: {{start: 10.30.0.10, end: 10.30.0.250}}
    options:
      66: "{option66}"
{extra_dhcp_options}
  tftp: {{port: {tftp_port}}}
  http: {{port: {http_port}}}
provisioning:
  files:
{file_lines}
  per_phone:
    - name: "{{mac}}.cfg"
      text: |
        #!version:1.0.0.1
        account.1.user_name = {{index}}
fleets:
  - name: desk
    vendor: yealink
    models: {{T46S: {count // 2}, T48S: {count - count // 2}}}
    first_mac: "00:15:65:aa:00:01"
    boot: {{pattern: storm, random_delay_s: 0.5}}
    boot_time_s: 0.2
expect:
{expect_lines}"""


def ports():
    return {"dhcp_port": free_udp_port(), "tftp_port": free_udp_port(), "http_port": free_tcp_port()}


def run_labsim(tmp_path, text, *args, timeout=120):
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    report_dir = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "labsim", "run", str(path), "--report-dir", str(report_dir), *args],
        capture_output=True, text=True, timeout=timeout,
    )
    report = None
    if (report_dir / "report.json").exists():
        report = json.loads((report_dir / "report.json").read_text())
    return proc, report


def test_fleet_provisions_over_http_and_passes(tmp_path):
    p = ports()
    proc, report = run_labsim(tmp_path, scenario_text(option66=f"http://127.0.0.1:{p['http_port']}/", **p))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["passed"] and report["complete"]
    assert report["summary"]["by_state"]["ready"] == 20
    assert report["summary"]["reboots_total"] == 20
    for key in ("scenario", "started", "duration_s", "expectations", "summary", "phones"):
        assert key in report
    phone = report["phones"][0]
    assert set(phone) >= {"mac", "vendor", "model", "state", "reboots", "ready_at_s", "files", "events"}
    assert phone["files"]["y000000000066.cfg"]
    assert [e["state"] for e in phone["events"]][-1] == "ready"
    assert report["services"]["http"]["status"]["200"] == 20 * 2 * 2  # two files, two cycles
    assert "PASS" in proc.stdout and "result: PASSED" in proc.stdout


def test_fleet_provisions_over_tftp(tmp_path):
    p = ports()
    proc, report = run_labsim(tmp_path, scenario_text(option66=f"tftp://127.0.0.1:{p['tftp_port']}/", **p))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["summary"]["by_state"]["ready"] == 20
    tftp = report["services"]["tftp"]
    # Two files, two cycles, per phone. (The report may be written a moment before the
    # server has read the very last final ACK, so "ok" can trail "started" by a few.)
    assert tftp["transfers_started"] == 20 * 2 * 2
    assert tftp["transfers_failed"] == 0


def test_a_failed_expectation_exits_1_and_says_which(tmp_path):
    p = ports()
    # The T48S Common CFG is missing: those phones get only their MAC file, no reboot key.
    files = {"y000000000066.cfg": COMMON}
    proc, report = run_labsim(tmp_path, scenario_text(option66=f"http://127.0.0.1:{p['http_port']}/", files=files, **p))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    verdicts = {e["name"]: e for e in report["expectations"]}
    assert verdicts["phones.ready == 100%"]["passed"] is True
    assert verdicts["phone.reboots == 1"]["passed"] is False
    assert "10 of 20 phones fail" in verdicts["phone.reboots == 1"]["detail"]
    assert "FAIL" in proc.stdout


def test_an_invalid_scenario_exits_2_and_starts_nothing(tmp_path):
    p = ports()
    text = scenario_text(option66="http://127.0.0.1:1/", **p).replace("vendor: yealink", "vendor: yealnik")
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 2
    assert report is None
    assert "scenario.yaml:" in proc.stderr and "fleets[0].vendor" in proc.stderr and "allowed:" in proc.stderr and "yealink" in proc.stderr.split("allowed:")[1]


def test_a_phone_that_never_finishes_is_reported_stuck_when_time_runs_out(tmp_path):
    p = ports()
    text = scenario_text(option66="http://127.0.0.1:1/", time_limit=3, **p).replace(
        f"port: {p['dhcp_port']}", f"port: {p['dhcp_port']}\n    address: 127.0.0.1", 1)
    # Point the fleet at a DHCP port where nothing listens: phones stay in dhcp.
    text = text.replace("fleets:", f"network:\n  dhcp_port: {free_udp_port()}\nfleets:")
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 1
    assert report["complete"] is False and "time limit" in report["end_reason"]
    assert {ph["state"] for ph in report["phones"]} == {"dhcp"}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_still_writes_the_report_marked_incomplete(tmp_path, sig):
    p = ports()
    text = scenario_text(option66="http://127.0.0.1:1/", time_limit=120, **p)
    text = text.replace("fleets:", f"network:\n  dhcp_port: {free_udp_port()}\nfleets:")
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    report_dir = tmp_path / "report"
    proc = subprocess.Popen([sys.executable, "-m", "labsim", "run", str(path), "--report-dir", str(report_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("labsim:"):
                break
        time.sleep(1.0)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    report = json.loads((report_dir / "report.json").read_text())
    assert report["complete"] is False and "interrupted" in report["end_reason"]
    assert len(report["phones"]) == 20


def test_a_url_outside_loopback_is_refused_and_nothing_is_sent(tmp_path):
    p = ports()
    proc, report = run_labsim(tmp_path, scenario_text(option66="http://10.20.30.40/", count=2,
                                                      expect=("phones.failed == 100%",), **p))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["network"]["fetch_refused"] > 0
    steps = [e["detail"] for e in report["phones"][0]["events"]]
    assert any("outside the loopback lab" in step for step in steps)


def test_host_names_in_urls_resolve_through_the_lab_dns(tmp_path):
    p = ports()
    dns_port = free_port_udp_and_tcp()
    text = scenario_text(option66=f"http://prov.lab.example:{p['http_port']}/", count=4, **p)
    text = text.replace("provisioning:", f"""\
  dns:
    port: {dns_port}
    records:
      - {{name: prov.lab.example, type: CNAME, value: web.lab.example}}
      - {{name: web.lab.example, type: A, value: 127.0.0.1}}
      - {{name: elsewhere.example, type: A, value: 192.0.2.7}}
provisioning:""", 1)
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Each phone asks for itself, once a boot (its answer kept in RAM for the TTL, 300 s,
    # across the four downloads of a pass): 4 phones, booted twice each (one reboot). A
    # query resent after a second of silence on a loaded machine would add one.
    assert {phone["reboots"] for phone in report["phones"]} == {1}
    assert 4 * 2 <= report["services"]["dns"]["queries"] <= 4 * 2 + 2

    # A name that resolves outside loopback is refused before anything is sent.
    bad = text.replace(f"http://prov.lab.example:{p['http_port']}/", "http://elsewhere.example/")
    proc, report = run_labsim(tmp_path, bad.replace("phone.reboots == 1", "phones.failed == 100%")
                              .replace("phones.ready == 100%", "phones.total == 4"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["network"]["fetch_refused"] > 0


@pytest.mark.parametrize("scheme", ["basic", "digest"])
def test_phones_authenticate_over_https_with_credentials_from_option_66(tmp_path, scheme):
    p = ports()
    text = scenario_text(option66=f"https://alice:s3cret@127.0.0.1:{p['http_port']}/", count=4, **p)
    text = text.replace(f"http: {{port: {p['http_port']}}}", f"""http:
    port: {p['http_port']}
    tls: true
    auth: [{{path: "*.cfg", scheme: {scheme}, users: {{alice: s3cret}}}}]""")
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = report["services"]["http"]["status"]
    assert status["401"] >= 4 and status["200"] >= 4 * 2 * 2  # challenged, then served
    assert (tmp_path / "report" / "cert.pem").exists()

    wrong = text.replace("alice:s3cret@", "alice:wrong@").replace("phone.reboots == 1", "phones.failed == 100%") \
        .replace("phones.ready == 100%", "phones.total == 4")
    proc, report = run_labsim(tmp_path, wrong)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all("denied" in " ".join(e["detail"] for e in ph["events"]) for ph in report["phones"])


@pytest.mark.parametrize("tls", [False, True])
def test_each_download_is_a_connection_of_its_own_unless_the_fleet_pools_them(tmp_path, tls):
    # A phone fetches each file on a TCP (and TLS) connection of its own, as no two real
    # phones could share one: labsim's server accepts one connection a request. With
    # network.http_connections: pooled the fleet's requests ride a few keep-alive ones.
    p = ports()
    scheme = "https" if tls else "http"
    text = scenario_text(option66=f"{scheme}://127.0.0.1:{p['http_port']}/", count=8, **p)
    if tls:
        text = text.replace(f"http: {{port: {p['http_port']}}}", f"http: {{port: {p['http_port']}, tls: true}}")
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    http = report["services"]["http"]
    assert http["requests"] == 8 * 2 * 4  # two cycles of the two boot files, the common and MAC files
    assert http["connections"] == http["requests"]
    assert f"requests {http['requests']}, connections {http['requests']}," in proc.stdout

    pooled = text.replace("fleets:\n", "network: {http_connections: pooled}\nfleets:\n", 1)
    proc, report = run_labsim(tmp_path, pooled)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    http = report["services"]["http"]
    assert http["requests"] == 8 * 2 * 4 and 1 <= http["connections"] <= 8

"""Every output of ``labsim run``: report.json against its published JSON Schema,
events.jsonl, junit.xml, report.html and the ``--pcap`` capture, from real runs over
loopback sockets; and an interrupted run that still writes them all, marked incomplete."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import jsonschema
import pytest
from scapy.all import BOOTP, DHCP, TCP, UDP, Ether, rdpcap

from labsim.observe.report_schema import REPORT_SCHEMA, schema_text
from tests.peers import free_tcp_port, free_udp_port

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMON = "#!version:1.0.0.1\\nstatic.network.lldp.enable = 1\\n"


def lab_scenario(*, scheme: str, count: int = 6, time_limit: float = 60, dhcp_port: int | None = None) -> str:
    """A small Yealink fleet provisioning from labsim's own services; ``dhcp_port`` points
    the fleet at a port where nothing answers (phones then stay in dhcp)."""
    ports = {"dhcp": free_udp_port(), "tftp": free_udp_port(), "http": free_tcp_port()}
    url = f"{scheme}://127.0.0.1:{ports[scheme]}/"
    network = f"network:\n  dhcp_port: {dhcp_port}\n" if dhcp_port else ""
    return f"""\
name: outputs
time_limit_s: {time_limit}
services:
  dhcp:
    port: {ports['dhcp']}
    subnet: 10.31.0.0/16
    pool: {{start: 10.31.0.10, end: 10.31.0.250}}
    options:
      66: "{url}"
  tftp: {{port: {ports['tftp']}}}
  http: {{port: {ports['http']}}}
provisioning:
  files:
    y000000000066.cfg: "{COMMON}"
    y000000000065.cfg: "{COMMON}"
  per_phone:
    - name: "{{mac}}.cfg"
      text: "#!version:1.0.0.1\\naccount.1.user_name = {{index}}\\n"
{network}fleets:
  - name: desk
    vendor: yealink
    models: {{T46S: {count // 2}, T48S: {count - count // 2}}}
    first_mac: "00:15:65:bb:00:01"
    boot: {{pattern: storm, random_delay_s: 0.3}}
    boot_time_s: 0.1
expect:
  - phones.ready == 100%
  - phone.reboots == 1
"""


def run_lab(tmp_path, text: str, *, pcap: bool = True, timeout: float = 60):
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(text)
    report_dir = tmp_path / "report"
    args = [sys.executable, "-m", "labsim", "run", str(scenario), "--report-dir", str(report_dir)]
    if pcap:
        args += ["--pcap", str(tmp_path / "lab.pcap")]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return proc, report_dir


def read_events(report_dir) -> list[dict]:
    with open(report_dir / "events.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_the_published_schema_file_is_the_generated_one():
    with open(os.path.join(ROOT, "docs", "report.schema.json"), encoding="utf-8") as handle:
        assert handle.read() == schema_text(), "regenerate: python -m labsim.observe.report_schema > docs/report.schema.json"
    jsonschema.Draft202012Validator.check_schema(REPORT_SCHEMA)


def test_a_finished_run_writes_every_output_and_they_agree(tmp_path):
    proc, report_dir = run_lab(tmp_path, lab_scenario(scheme="http"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "also written: events.jsonl, junit.xml, report.html, capture" in proc.stdout

    report = json.loads((report_dir / "report.json").read_text())
    validator = jsonschema.Draft202012Validator(REPORT_SCHEMA)
    validator.validate(report)
    # ... and the schema does say something: broken copies of the same report fail.
    for path, value in ((("complete",), "yes"), (("phones", 0, "state"), "asleep"),
                        (("summary", "time_to_ready_s", "p95"), "fast"), (("expectations", 0, "passed"), None)):
        broken = json.loads(json.dumps(report))
        target = broken
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        assert not validator.is_valid(broken), path
    del report["phones"][0]["mac"]
    assert not validator.is_valid(report)
    report = json.loads((report_dir / "report.json").read_text())
    macs = {phone["mac"] for phone in report["phones"]}
    assert len(macs) == 6

    events = read_events(report_dir)
    assert events[-1] == {"t": events[-1]["t"], "mac": None, "kind": "run", "complete": True,
                          "end_reason": "all phones settled", "events": len(events) - 1}
    body = events[:-1]
    assert [e["t"] for e in body] == sorted(e["t"] for e in body)
    assert {e["kind"] for e in body} == {"state", "step", "dhcp", "fetch"}
    assert {e["mac"] for e in body} == macs
    # The phones' timelines in report.json are exactly the state and step lines.
    timeline_lines = sum(1 for e in body if e["kind"] in ("state", "step"))
    assert timeline_lines == sum(len(phone["events"]) for phone in report["phones"])
    dhcp = [e for e in body if e["kind"] == "dhcp"]
    assert {(e["dir"], e["type"]) for e in dhcp} >= {("out", "DISCOVER"), ("in", "OFFER"), ("out", "REQUEST"),
                                                      ("in", "ACK")}
    assert all(e["yiaddr"].startswith("10.31.0.") for e in dhcp if e["type"] == "ACK")
    fetches = [e for e in body if e["kind"] == "fetch"]
    assert sum(e["status"] == "ok" for e in fetches) == report["services"]["http"]["status"]["200"]
    assert all(e["latency_s"] >= 0 and e["url"].startswith("http://127.0.0.1:") for e in fetches)
    assert all(e["bytes"] > 0 for e in fetches if e["status"] == "ok")
    assert report["network"]["relay"]["sent"] == sum(1 for e in dhcp if e["dir"] == "out")

    suite = ET.parse(report_dir / "junit.xml").getroot().find("testsuite")
    assert suite.get("name") == "outputs" and suite.get("tests") == "3" and suite.get("failures") == "0"

    page = (report_dir / "report.html").read_text(encoding="utf-8")
    assert page.count('class="area"') >= 3 and 'class="bar"' in page and 'data-service="http"' in page

    packets = rdpcap(str(tmp_path / "lab.pcap"))
    dhcp_frames = [p for p in packets if DHCP in p]
    assert len(dhcp_frames) == len(dhcp)
    from_phones = [p for p in dhcp_frames if p[UDP].dport == 67]
    assert {p.src for p in from_phones} == macs
    assert all(p[BOOTP].chaddr[:6] == bytes.fromhex(p.src.replace(":", "")) for p in from_phones)
    gets = [p for p in packets if TCP in p and bytes(p[TCP].payload).startswith(b"GET /")]
    assert len(gets) == len(fetches) and {p.src for p in gets} == macs


def test_an_interrupted_run_writes_every_output_marked_incomplete(tmp_path):
    text = lab_scenario(scheme="http", time_limit=120, dhcp_port=free_udp_port())
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(text)
    report_dir = tmp_path / "report"
    proc = subprocess.Popen([sys.executable, "-m", "labsim", "run", str(scenario), "--report-dir", str(report_dir),
                             "--pcap", str(tmp_path / "lab.pcap")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.stdout.readline().startswith("labsim:"):
                break
        time.sleep(1.0)  # the phones boot (0.1 s) and send DISCOVERs nobody answers
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err

    report = json.loads((report_dir / "report.json").read_text())
    jsonschema.validate(report, REPORT_SCHEMA, cls=jsonschema.Draft202012Validator)
    assert report["complete"] is False

    events = read_events(report_dir)
    assert events[-1]["kind"] == "run" and events[-1]["complete"] is False
    assert "interrupted" in events[-1]["end_reason"]
    assert any(e["kind"] == "dhcp" and e["type"] == "DISCOVER" for e in events)

    root = ET.parse(report_dir / "junit.xml").getroot()
    incomplete = root.find("testsuite/testcase[@name='run completed']/failure")
    assert incomplete is not None and incomplete.get("type") == "incomplete"

    assert "INCOMPLETE: interrupted" in (report_dir / "report.html").read_text(encoding="utf-8")

    discovers = [p for p in rdpcap(str(tmp_path / "lab.pcap")) if DHCP in p]
    assert discovers and all(p[Ether].dst == "ff:ff:ff:ff:ff:ff" for p in discovers)
    assert len(discovers) == sum(1 for e in events if e["kind"] == "dhcp")


@pytest.mark.parametrize("workers", [None, "2"])
def test_a_run_leaves_no_scratch_folder_whether_it_starts_or_not(tmp_path, workers):
    # The served provisioning tree goes into a scratch folder (labsim/scratch.py; a TMPDIR
    # the user set is used as it is): deleted at the end, and when a port in use stops the
    # run before it starts.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    text = lab_scenario(scheme="http", count=4)
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(text)
    command = [sys.executable, "-m", "labsim", "run", str(scenario), "--report-dir", str(tmp_path / "report")]
    command += ["--workers", workers] if workers else []
    env = dict(os.environ, TMPDIR=str(scratch))
    proc = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(scratch.iterdir()) == []
    http_port = int(text.split("http: {port: ")[1].split("}")[0])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        # The run's server closed each phone's connection after its answer (Connection:
        # close), so its port has connections in TIME_WAIT: bind as servers do.
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", http_port))
        taken.listen()
        proc = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=ROOT, env=env)
    assert proc.returncode != 0 and "cannot start" in proc.stderr, proc.stdout + proc.stderr
    assert list(scratch.iterdir()) == []


def test_a_pcap_file_that_cannot_be_made_stops_the_run_before_it_starts(tmp_path):
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(lab_scenario(scheme="http"))
    proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(scenario), "--report-dir",
                           str(tmp_path / "report"), "--pcap", str(tmp_path / "no" / "such" / "dir.pcap")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot start" in proc.stderr and "dir.pcap" in proc.stderr

"""What a newcomer meets on the command line: --version, --help with examples, a taken
port that names the service and the key to change, --ports-file, a summary that lists
every service the run used."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.test_outputs import lab_scenario
from tests.peers import free_tcp_port, free_udp_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def labsim(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labsim", *args], capture_output=True, text=True, timeout=timeout)


def test_version_is_the_packages():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    done = labsim("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"labsim {declared}"


@pytest.mark.parametrize("command", [(), ("run",), ("serve",), ("validate",), ("story",)])
def test_every_help_has_real_examples(command):
    done = labsim(*command, "--help")
    assert done.returncode == 0
    examples = done.stdout.split("examples:", 1)[1]
    commands = [line for line in examples.splitlines() if line.strip().startswith("labsim ")]
    assert len(commands) >= 2, done.stdout
    for line in commands:  # each example names a file that exists or is clearly the user's own
        target = line.split()[2] if len(line.split()) > 2 else ""
        if target.startswith("scenarios/"):
            assert (ROOT / target.replace("*.yaml", "quickstart.yaml")).exists(), line


def test_run_help_shows_how_to_test_an_external_server():
    assert "external" in labsim("run", "--help").stdout


def test_serve_help_lists_every_service():
    out = labsim("serve", "--help").stdout
    for service in ("DHCP", "TFTP", "HTTP", "FTP", "DNS", "PnP"):
        assert service in out


def _scenario(tmp_path: Path, **ports: int) -> Path:
    text = lab_scenario(scheme="http", count=2, time_limit=20)
    for name, port in ports.items():
        original = {"dhcp": r"dhcp:\n    port: (\d+)", "tftp": r"tftp: \{port: (\d+)\}", "http": r"http: \{port: (\d+)\}"}
        found = re.search(original[name], text)
        text = text.replace(found.group(0), found.group(0).replace(found.group(1), str(port)))
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return path


def test_a_taken_tcp_port_names_the_service_and_its_key(tmp_path):
    port = free_tcp_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        done = labsim("run", str(_scenario(tmp_path, http=port)), "--report-dir", str(tmp_path / "r"))
    assert done.returncode == 2
    assert f"HTTP cannot listen on 127.0.0.1:{port}: address already in use" in done.stderr
    assert "services.http.port" in done.stderr


@pytest.mark.parametrize("reuse", [False, True], ids=["plain", "so_reuseaddr"])
def test_a_taken_udp_port_is_refused_even_when_both_could_share_it(tmp_path, reuse):
    # With SO_REUSEADDR on both sides Linux lets two UDP sockets share a port, and the
    # newer one silently takes the datagrams: a second labsim on a running one's DHCP port.
    port = free_udp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        if reuse:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))
        done = labsim("serve", str(_scenario(tmp_path, dhcp=port)), "--report-dir", str(tmp_path / "r"))
    assert done.returncode == 2
    assert f"DHCP cannot listen on 127.0.0.1:{port}" in done.stderr and "services.dhcp.port" in done.stderr


def test_serve_on_port_zero_writes_the_ports_it_got(tmp_path):
    scenario = _scenario(tmp_path, dhcp=0, tftp=0, http=0)
    ports_file = tmp_path / "ports.json"
    proc = subprocess.Popen([sys.executable, "-m", "labsim", "serve", str(scenario), "--report-dir",
                             str(tmp_path / "r"), "--ports-file", str(ports_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not ports_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        ports = json.loads(ports_file.read_text())
        assert set(ports) == {"dhcp", "tftp", "http"} and all(ports.values())
        body = urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/y000000000066.cfg", timeout=5).read()
        assert body.startswith(b"#!version:1.0.0.1")
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_run_summary_lists_every_service_it_used(tmp_path):
    scenario = _scenario(tmp_path)
    done = labsim("run", str(scenario), "--report-dir", str(tmp_path / "r"), "--ports-file", str(tmp_path / "p.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    ports = json.loads((tmp_path / "p.json").read_text())
    servers = [line.split()[1] for line in done.stdout.splitlines() if line.strip().startswith("server ")]
    assert "dhcp://127.0.0.1" in servers
    assert f"http://127.0.0.1:{ports['http']}" in servers
    services = {line.split()[1]: line for line in done.stdout.splitlines() if line.strip().startswith("service ")}
    assert set(services) == {"dhcp", "tftp", "http"}
    assert "ack 4" in services["dhcp"]  # 2 phones, 2 boots each


SCALED = """\
name: scaled
clock: virtual
services:
  dhcp:
    pool: {start: 10.1.0.10, end: 10.1.0.49}
    options: {66: "http://127.0.0.1:8080/"}
  http: {port: 8080}
provisioning:
  files:
    y000000000066.cfg: |
      #!version:1.0.0.1
      lang.gui = English
fleets:
  - vendor: yealink
    model: T46S
    count: 10
    first_mac: "00:15:65:00:00:01"
expect:
  - phones.ready == 100%
  - stage.common_cfg.count == 10
"""


@pytest.mark.parametrize("workers", [(), ("--workers", "2")], ids=["one process", "two shards"])
def test_phones_says_which_counts_it_kept_as_written_and_the_report_keeps_it(tmp_path, workers):
    """--phones 60 on a scenario written for 10: the pool of 40 holds too few, and the
    stage count is the scenario's own number. Said before the run, with the file's line,
    and kept in report.json, the summary and report.html (a --workers run's merged
    report too), where the FAIL it explains is read."""
    scenario = tmp_path / "scaled.yaml"
    scenario.write_text(SCALED)
    done = labsim("run", str(scenario), "--phones", "60", "--duration", "10m", "--report-dir",
                  str(tmp_path / "report"), *workers)
    assert done.returncode == 1, done.stdout + done.stderr
    pool = (f"{scenario}:5:5: services.dhcp.pool: 10.1.0.10-10.1.0.49 holds 40 address(es) for the 60 phones that "
            "lease one: 20 will get no lease while the others hold theirs (the server counts pool_exhausted)")
    count = (f"{scenario}:20:5: expect[1]: 'stage.common_cfg.count == 10' compares a count that grows with the "
             "fleet, written for 10 phones; --phones runs 60: kept as written")
    assert [line for line in done.stderr.splitlines() if "note:" in line] == [
        f"labsim: note: {pool}", f"labsim: note: {count}"]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["notes"] == [pool, count]
    assert report["summary"]["by_state"]["ready"] == 40  # as the note said: 20 without a lease
    assert f"  note: {count}\n  expectations:" in done.stdout
    assert "kept as written" in (tmp_path / "report" / "report.html").read_text()
    written = labsim("run", str(scenario), "--duration", "10m", "--report-dir", str(tmp_path / "as-written"))
    assert written.returncode == 0 and "note" not in written.stderr
    assert json.loads((tmp_path / "as-written" / "report.json").read_text())["notes"] == []


def test_validate_phones_says_what_run_phones_would_keep_as_written(tmp_path):
    scenario = tmp_path / "scaled.yaml"
    scenario.write_text(SCALED)
    as_written = labsim("validate", str(scenario))
    assert as_written.returncode == 0 and as_written.stdout == f"{scenario}: valid (1 fleet(s), 10 phones)\n"
    scaled = labsim("validate", str(scenario), "--phones", "60")
    assert scaled.returncode == 0, scaled.stderr  # notes, not problems
    assert scaled.stdout.splitlines() == [
        f"{scenario}: valid (1 fleet(s), 10 phones; --phones 60 runs 60)",
        f"  note: {scenario}:5:5: services.dhcp.pool: 10.1.0.10-10.1.0.49 holds 40 address(es) for the 60 phones "
        "that lease one: 20 will get no lease while the others hold theirs (the server counts pool_exhausted)",
        f"  note: {scenario}:20:5: expect[1]: 'stage.common_cfg.count == 10' compares a count that grows with the "
        "fleet, written for 10 phones; --phones runs 60: kept as written",
    ]
    refused = labsim("validate", str(scenario), "--phones", "0")
    assert refused.returncode == 2 and "--phones must be at least 1" in refused.stderr


def test_phones_that_make_two_fleets_macs_overlap_stop_the_run_before_it_starts(tmp_path):
    """The quickstart's desk fleet reaches its lobby fleet's MACs past ~5,000 phones: the
    run and validate refuse at the lobby's first_mac, as for a file, and start nothing."""
    quickstart = ROOT / "scenarios" / "quickstart.yaml"
    for command in (("run", str(quickstart), "--clock", "virtual", "--report-dir", str(tmp_path / "report")),
                    ("validate", str(quickstart))):
        done = labsim(*command, "--phones", "10000")
        assert done.returncode == 2, done.stdout + done.stderr
        assert re.search(r"quickstart\.yaml:\d+:5: fleets\[1\]\.first_mac: fleet 'lobby' has overlapping MAC ranges "
                         r"with fleet 'desk' once --phones scales them \(desk 8,000 from 00:15:65:00:00:01, lobby "
                         r"2,000 from 00:15:65:00:10:01\)", done.stderr), done.stderr
    assert not (tmp_path / "report").exists()


def test_a_duration_the_real_clock_cannot_reach_before_the_time_limit_is_refused_and_says_why(tmp_path):
    """A week written for virtual time, without clock: virtual: on the real clock it would
    stop at the time limit every time. run refuses it at the duration's line (or at
    --duration), validate notes it (--clock virtual runs the file), virtual time runs it."""
    scenario = tmp_path / "week.yaml"
    scenario.write_text(SCALED.replace("clock: virtual\n", "duration: 7d\ntime_limit_s: 60\n"))
    why = ("on the real clock outlasts time_limit_s (60 s of wall time): the run would stop at the time limit, "
           "incomplete; run it in simulated time with clock: virtual (or --clock virtual), or raise time_limit_s")
    report = tmp_path / "report"
    refused = labsim("run", str(scenario), "--report-dir", str(report))
    assert refused.returncode == 2 and not report.exists(), refused.stdout + refused.stderr
    assert f"{scenario}:2:1: duration: 7d 00:00:00 {why}" in refused.stderr
    refused = labsim("run", str(scenario), "--duration", "2m", "--report-dir", str(report))
    assert refused.returncode == 2 and f"--duration: 0d 00:02:00 {why}" in refused.stderr and not report.exists()
    noted = labsim("validate", str(scenario))
    assert noted.returncode == 0 and f"  note: {scenario}:2:1: duration: 7d 00:00:00 {why}" in noted.stdout
    reached = labsim("run", str(scenario), "--duration", "8s", "--report-dir", str(report))
    assert reached.returncode == 0, reached.stdout + reached.stderr
    assert json.loads((report / "report.json").read_text())["end_reason"].startswith("duration of 8s reached")
    virtual = labsim("run", str(scenario), "--clock", "virtual", "--report-dir", str(report))
    assert virtual.returncode == 0 and "virtual time: 7d 00:00:00 simulated" in virtual.stdout, virtual.stderr


def test_a_host_name_the_lab_cannot_look_up_is_noted_and_a_run_without_expectations_says_nothing_was_judged(tmp_path):
    """Option 66 names a host, and the lab has no DNS: validate and run say so at the
    option's line before anything starts (the report keeps it), and the run's result line
    does not read as a verdict on the failed phones when there was nothing to judge."""
    http = free_tcp_port()
    scenario = tmp_path / "lab.yaml"
    scenario.write_text(f"""\
name: no-dns
time_limit_s: 30
services:
  dhcp:
    port: {free_udp_port()}
    options: {{66: "http://prov.lab:{http}/"}}
  http: {{port: {http}}}
fleets:
  - vendor: yealink
    model: T46S
    count: 2
    first_mac: "00:15:65:00:00:01"
""")
    note = (f"{scenario}:6:15: services.dhcp.options[66]: names the host 'prov.lab', and the lab has no DNS server "
            "(services.dns or network.dns_server): the phones cannot look it up, and every download from it will be "
            "refused")
    checked = labsim("validate", str(scenario))
    assert checked.returncode == 0 and f"  note: {note}" in checked.stdout, checked.stdout + checked.stderr
    report = tmp_path / "report"
    ran = labsim("run", str(scenario), "--report-dir", str(report))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"labsim: note: {note}" in ran.stderr
    assert json.loads((report / "report.json").read_text())["notes"] == [note]
    assert "2 failed: no configuration file could be downloaded" in ran.stdout
    assert ran.stdout.rstrip().splitlines()[-3].startswith(
        "  result: PASSED (no expectations: nothing was judged; 0 of 2 phones ready;"), ran.stdout

"""Nothing a phone uploads is lost: ``labsim serve`` and ``labsim run`` store HTTP PUT,
TFTP WRQ and FTP STOR uploads in the scenario's upload folder (or ``--uploads DIR``),
never in the temporary copy they serve, and the files are still there after SIGTERM,
Ctrl-C (SIGINT) and a run's time limit; ``run``'s report lists them.

Real clients do the uploading: curl (PUT), tftp-hpa's ``tftp`` (WRQ), Python's ftplib
(STOR) — and, for ``run``, labsim's own Polycom phones.
"""

from __future__ import annotations

import ftplib
import io
import json
import signal
import subprocess
import sys

import pytest

from tests.peers import free_tcp_port, free_udp_port, require_binary
from tests.serve_process import labsim_serve

pytestmark = pytest.mark.e2e

SERVE = """\
name: uploads-kept
services:
  dhcp: {{port: {dhcp}}}
  tftp: {{port: {tftp}, uploads: true}}
  http: {{port: {http}, uploads: true}}
  ftp: {{port: {ftp}, anonymous: true, uploads: true}}
provisioning:
  directory: files
fleets:
  - {{vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}}
"""


def upload_with_real_clients(ports: dict, tmp_path) -> dict[str, bytes]:
    bodies = {"put.log": b"PUT by curl\n" * 50, "wrq.log": b"WRQ by tftp-hpa\n" * 100, "stor.log": b"STOR\n" * 300}
    (tmp_path / "put.log").write_bytes(bodies["put.log"])
    curl = subprocess.run([require_binary("curl"), "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T",
                           str(tmp_path / "put.log"), f"http://127.0.0.1:{ports['http']}/uploads/put.log"],
                          capture_output=True, text=True, timeout=20)
    assert curl.stdout == "201", curl.stdout + curl.stderr
    (tmp_path / "wrq.log").write_bytes(bodies["wrq.log"])
    tftp = subprocess.run([require_binary("tftp"), "-m", "octet", "127.0.0.1", str(ports["tftp"]), "-c", "put",
                           str(tmp_path / "wrq.log"), "uploads/wrq.log"], capture_output=True, text=True, timeout=20)
    assert tftp.returncode == 0 and not tftp.stderr.strip(), tftp.stdout + tftp.stderr
    with ftplib.FTP() as ftp:
        ftp.connect("127.0.0.1", ports["ftp"], timeout=10)
        ftp.login()
        assert ftp.storbinary("STOR uploads/stor.log", io.BytesIO(bodies["stor.log"])).startswith("226")
        # The upload is read back from where it was stored, and listed there.
        got = io.BytesIO()
        ftp.retrbinary("RETR /uploads/stor.log", got.write)
        assert got.getvalue() == bodies["stor.log"]
        assert "stor.log" in ftp.nlst("/uploads")
    return bodies


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_keeps_every_upload_in_the_scenarios_folder_after_a_signal(tmp_path, sig, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # where serve makes the copy it serves
    (tmp_path / "tmp").mkdir()
    ports = {"dhcp": free_udp_port(), "tftp": free_udp_port(), "http": free_tcp_port(), "ftp": free_tcp_port()}
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "site.cfg").write_text("x = 1\n")
    scenario = tmp_path / "serve.yaml"
    scenario.write_text(SERVE.format(**ports))
    with labsim_serve(str(scenario), str(tmp_path / "report")) as serve:
        serve.wait_for("Ctrl-C to stop")
        bodies = upload_with_real_clients(ports, tmp_path)
        # While serving: the uploads are in the scenario's own folder already.
        assert {p.name for p in (tmp_path / "files" / "uploads").iterdir()} == set(bodies)
        [served] = (tmp_path / "tmp").glob("labsim-serve-*/provisioning")
        assert (served / "site.cfg").exists() and not any((served / "uploads").iterdir())
        assert serve.stop(sig) == 0, serve.stderr
    kept = tmp_path / "files" / "uploads"
    for name, body in bodies.items():
        assert (kept / name).read_bytes() == body, name
    assert any(f"uploads kept in {kept}" in line for line in serve.lines), serve.lines


def test_serve_uploads_go_to_the_folder_named_on_the_command_line(tmp_path):
    ports = {"dhcp": free_udp_port(), "tftp": free_udp_port(), "http": free_tcp_port(), "ftp": free_tcp_port()}
    (tmp_path / "files").mkdir()
    scenario = tmp_path / "serve.yaml"
    scenario.write_text(SERVE.format(**ports))
    elsewhere = tmp_path / "kept-here"
    with labsim_serve(str(scenario), str(tmp_path / "report"), "--uploads", str(elsewhere)) as serve:
        serve.wait_for("Ctrl-C to stop")
        bodies = upload_with_real_clients(ports, tmp_path)
        assert serve.stop(signal.SIGTERM) == 0
    assert {p.name: p.read_bytes() for p in elsewhere.iterdir()} == bodies
    assert not (tmp_path / "files" / "uploads").exists() or not any((tmp_path / "files" / "uploads").iterdir())


POLYCOM_RUN = """\
name: polycom-uploads
time_limit_s: {time_limit}
services:
  dhcp:
    port: {dhcp}
    subnet: 10.42.0.0/16
    pool: {{start: 10.42.0.10, end: 10.42.0.250}}
    options: {{66: "http://127.0.0.1:{http}/"}}
  http: {{port: {http}, uploads: true}}
provisioning:
  files:
    000000000000.cfg: |
      <?xml version="1.0" standalone="yes"?>
      <APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="site.cfg" LOG_FILE_DIRECTORY="uploads"
                   OVERRIDES_DIRECTORY="uploads"/>
    site.cfg: |
      <polycomConfig>{polling}</polycomConfig>
fleets:
  - vendor: polycom
    models: {{VVX400: 3}}
    first_mac: "00:04:f2:cc:00:01"
    boot: {{pattern: storm, random_delay_s: 0.2}}
    boot_time_s: 0.2
{timeline}expect:
  - phones.ready == 100%
"""


def run_polycom(tmp_path, *extra, time_limit=60, polling="", timeline=""):
    scenario = tmp_path / "run.yaml"
    scenario.write_text(POLYCOM_RUN.format(dhcp=free_udp_port(), http=free_tcp_port(), time_limit=time_limit,
                                           polling=polling, timeline=timeline))
    report_dir = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(scenario), "--report-dir", str(report_dir),
                           *extra], capture_output=True, text=True, timeout=120)
    return proc, json.loads((report_dir / "report.json").read_text())


def test_run_keeps_uploads_in_the_report_folder_and_lists_them(tmp_path):
    proc, report = run_polycom(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kept = tmp_path / "report" / "uploads"
    names = sorted(p.name for p in kept.iterdir())
    # Each phone: its overrides file (the server had none) and its log.
    assert names == sorted(f"0004f2cc000{i}-{kind}" for i in (1, 2, 3) for kind in ("app.log", "phone.cfg"))
    assert sorted(report["uploads"], key=lambda u: u["path"]) == [
        {"path": str(kept / name), "bytes": (kept / name).stat().st_size} for name in names]
    assert f"uploads: 6 file(s) kept in {kept}" in proc.stdout


def test_run_stopped_by_its_time_limit_or_a_signal_keeps_the_uploads(tmp_path):
    # Phones poll every second, so uploads go on until the time limit stops the run.
    elsewhere = tmp_path / "mine"
    polling = '<prov prov.polling.enabled="1" prov.polling.mode="rel" prov.polling.period="1"/>'
    timeline = "timeline:\n  - at: 60\n    do: {check_sync: {phones: all}}\n"
    proc, report = run_polycom(tmp_path, "--uploads", str(elsewhere), time_limit=4, polling=polling,
                               timeline=timeline)
    assert proc.returncode == 1 and not report["complete"] and "time limit" in report["end_reason"]
    logs = sorted(p.name for p in elsewhere.iterdir())
    assert [name for name in logs if name.endswith("app.log")] == [f"0004f2cc000{i}-app.log" for i in (1, 2, 3)]
    assert {u["path"] for u in report["uploads"]} == {str(elsewhere / name) for name in logs}
    assert not (tmp_path / "report" / "uploads").exists()

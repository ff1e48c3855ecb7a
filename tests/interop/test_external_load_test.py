"""The bundled external load test, at small scale, against the real Kea, tftpd-hpa and
nginx it is written for, started from the scenario's own folder of configurations."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.interop.realservers import running
from tests.peers import require_binary, require_root, wait_for_tcp, wait_for_udp

pytestmark = pytest.mark.interop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIO = os.path.join(ROOT, "scenarios", "external-load-test.yaml")
ASSETS = os.path.join(ROOT, "scenarios", "external-load-test")


def test_external_load_test_scenario_against_kea_tftpd_hpa_and_nginx(tmp_path):
    require_root("Kea and tftpd-hpa on ports 67 and 69")
    kea, tftpd, nginx = (require_binary(name) for name in ("kea-dhcp4", "in.tftpd", "nginx"))
    work = tmp_path / "peers"
    shutil.copytree(ASSETS, work)
    (work / "tmp").mkdir()
    env = dict(os.environ, KEA_PIDFILE_DIR=str(work / "tmp"), KEA_LOCKFILE_DIR=str(work / "tmp"))
    conf = (work / "nginx.conf").read_text().replace("worker_processes 1;", "user root;\nworker_processes 1;")
    (work / "nginx.conf").write_text(conf)
    with running([kea, "-c", str(work / "kea-dhcp4.json")], env=env, name="kea-dhcp4",
                 ready=lambda: wait_for_udp(67)), \
            running([tftpd, "--foreground", "--listen", "--address", "127.0.0.1:69", "--user", "root",
                     "--secure", str(work / "tftpboot")], name="in.tftpd", ready=lambda: wait_for_udp(69)), \
            running([nginx, "-c", str(work / "nginx.conf"), "-p", str(work), "-g", "daemon off;"], name="nginx",
                    ready=lambda: wait_for_tcp("127.0.0.1", 8081)):
        proc = subprocess.run([sys.executable, "-m", "labsim", "run", SCENARIO, "--phones", "25",
                               "--report-dir", str(tmp_path / "report")], capture_output=True, text=True, timeout=200)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["summary"]["by_state"]["ready"] == 25
    servers = report["summary"]["servers"]
    assert servers["tftp://127.0.0.1"]["by_status"]["ok"] == 25 * 2  # the boot file, both cycles
    assert servers["http://127.0.0.1:8081"]["errors"] == 0
    assert servers["http://127.0.0.1:8081"]["requests"] == 25 * 2 * 2

"""labsim's phones provisioning against real servers: Kea for DHCP, tftpd-hpa and nginx
for the files. Nothing of labsim's own services runs here."""

import json
import subprocess
import sys

import pytest

from tests.interop.realservers import kea, nginx, tftpd_hpa
from tests.peers import free_tcp_port, free_udp_port

pytestmark = pytest.mark.interop

COMMON = "#!version:1.0.0.1\nstatic.network.lldp.enable = 1\naccount.1.sip_server.1.address = 127.0.0.1\n"
RELAY = "127.0.0.2"


def write_files(root, count=10):
    root.mkdir()
    (root / "y000000000066.cfg").write_text(COMMON)
    for index in range(1, count + 1):
        mac = f"001565bb{index:04x}"
        (root / f"{mac}.cfg").write_text(f"#!version:1.0.0.1\naccount.1.user_name = {index}\n")
    return root


def fleet_scenario(count=10) -> str:
    return f"""\
name: real-servers
time_limit_s: 60
network:
  dhcp_server: 127.0.0.1
  dhcp_port: 67
  relay_address: {RELAY}
fleets:
  - vendor: yealink
    model: T46S
    count: {count}
    first_mac: "00:15:65:bb:00:01"
    boot: {{pattern: storm, random_delay_s: 0.3}}
    boot_time_s: 0.2
expect:
  - phones.ready == 100%
  - phone.reboots == 1
"""


def run_fleet(tmp_path, text):
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(path), "--report-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    return proc, report


def test_yealink_fleet_against_kea_and_tftpd_hpa(tmp_path):
    root = write_files(tmp_path / "tftpboot")
    tftp_port = free_udp_port()
    options = [{"name": "tftp-server-name", "data": f"tftp://127.0.0.1:{tftp_port}/"},
               {"name": "routers", "data": "10.40.0.1"}]
    with kea(tmp_path, subnet="10.40.0.0/16", pool="10.40.0.10 - 10.40.3.250", relay=RELAY, options=options), \
            tftpd_hpa(str(root), tftp_port):
        proc, report = run_fleet(tmp_path, fleet_scenario())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["summary"]["by_state"]["ready"] == 10
    phone = report["phones"][0]
    assert phone["flash"]["provisioning_url"] == f"tftp://127.0.0.1:{tftp_port}/"
    leases = {event["detail"] for p in report["phones"] for event in p["events"] if event["detail"].startswith("lease")}
    assert all("10.40." in lease for lease in leases)  # addresses from Kea's pool


def test_yealink_fleet_against_kea_and_nginx(tmp_path):
    root = write_files(tmp_path / "www")
    http_port = free_tcp_port()
    log = tmp_path / "connections.log"
    options = [{"name": "tftp-server-name", "data": f"http://127.0.0.1:{http_port}/"}]
    with kea(tmp_path, subnet="10.41.0.0/16", pool="10.41.0.10 - 10.41.3.250", relay=RELAY, options=options), \
            nginx(str(root), http_port, tmp_path, connections_log=str(log)):
        proc, report = run_fleet(tmp_path, fleet_scenario())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["summary"]["by_state"]["ready"] == 10
    assert report["phones"][3]["files"]["y000000000066.cfg"]
    # Each file on a connection of its own, as phones fetch them (http_fetch.PHONE_HTTP_KEEP_ALIVE):
    # nginx numbers every request 1 on its connection, and no connection carries two.
    lines = [line.split() for line in log.read_text().splitlines()]
    assert len(lines) == 10 * 2 * 4  # ten phones, two passes (the reboot), four files a pass
    assert {requests for _, requests, _, _ in lines} == {"1"}
    assert len({connection for connection, _, _, _ in lines}) == len(lines)


GRANDSTREAM_DAILY = (b'<gs_provision version="1"><config version="1"><P194>2</P194><P285>3</P285>'
                     b'<P64>EST5EDT,M3.2.0,M11.1.0</P64></config></gs_provision>')


def test_grandstream_phones_take_their_clock_from_keas_option_2(tmp_path):
    # Kea sends option 2 (time-offset) because the phones ask for it in option 55, as real
    # Grandstream phones do; P143 1, the factory value, lets it override P64's New York zone.
    root = tmp_path / "www"
    root.mkdir()
    (root / "cfg.xml").write_bytes(GRANDSTREAM_DAILY)
    http_port = free_tcp_port()
    options = [{"name": "tftp-server-name", "data": f"http://127.0.0.1:{http_port}/"},
               {"name": "time-offset", "data": "-7200"}]
    text = fleet_scenario(4).replace("vendor: yealink\n    model: T46S", "vendor: grandstream\n    model: GXP2170")
    text = text.replace('"00:15:65:bb:00:01"', '"00:0b:82:bb:00:01"')
    with kea(tmp_path, subnet="10.42.0.0/16", pool="10.42.0.10 - 10.42.3.250", relay=RELAY, options=options), \
            nginx(str(root), http_port, tmp_path):
        proc, report = run_fleet(tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["summary"]["by_state"]["ready"] == 4
    for phone in report["phones"]:
        notes = [event["detail"] for event in phone["events"]]
        assert "clock -2 from DHCP option 2 (P143 1): no summer time" in notes, notes

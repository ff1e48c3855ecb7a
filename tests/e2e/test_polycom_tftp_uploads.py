"""``labsim run`` end to end: a Polycom fleet whose provisioning server is tftp:// uploads
its logs and overrides files with WRQs into labsim's TFTP server's upload folder, and each
upload is an ``upload`` line in events.jsonl (and in a --pcap capture)."""

import json

import pytest
from scapy.all import UDP, rdpcap

from labsim.wire import tftp as wire
from tests.e2e.test_run_scenarios import ports, run_labsim

pytestmark = pytest.mark.e2e

PHONES = 4

POLYCOM_TFTP = """\
name: polycom-tftp-uploads
time_limit_s: 60
services:
  dhcp:
    port: {dhcp_port}
    subnet: 10.42.0.0/16
    pool: {{start: 10.42.0.10, end: 10.42.0.250}}
    options:
      66: "tftp://127.0.0.1:{tftp_port}/"
  tftp: {{port: {tftp_port}, uploads: true, upload_dir: uploads}}
provisioning:
  files:
    000000000000.cfg: |
      <?xml version="1.0" standalone="yes"?>
      <APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="phone[PHONE_MAC_ADDRESS].cfg, site.cfg"
                   LOG_FILE_DIRECTORY="uploads" OVERRIDES_DIRECTORY="uploads"/>
    site.cfg: |
      <polycomConfig>
        <reg reg.1.address="site-default"/>
      </polycomConfig>
  per_phone:
    - name: "phone{{mac}}.cfg"
      text: |
        <polycomConfig><reg reg.1.address="{{index}}"/></polycomConfig>
fleets:
  - name: vvx
    vendor: polycom
    models: {{VVX400: {phones}}}
    first_mac: "00:04:f2:bb:00:01"
    boot: {{pattern: storm, random_delay_s: 0.3}}
    boot_time_s: 0.2
expect:
  - phones.ready == 100%
"""


def test_polycom_fleet_on_tftp_uploads_its_logs_with_wrq(tmp_path):
    p = ports()
    proc, report = run_labsim(tmp_path, POLYCOM_TFTP.format(phones=PHONES, **p), "--pcap",
                              str(tmp_path / "run.pcap"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["passed"] and report["summary"]["by_state"]["ready"] == PHONES

    rows = [json.loads(line) for line in (tmp_path / "report" / "events.jsonl").read_text().splitlines()]
    uploads = [row for row in rows if row["kind"] == "upload"]
    # One pass each (no device.* change, no restart): the overrides file the server did
    # not have, then the app log.
    assert len(uploads) == PHONES * 2, uploads
    assert {row["status"] for row in uploads} == {"ok"}, uploads
    names = {row["url"].rsplit("/", 1)[1] for row in uploads}
    assert names == {f"0004f2bb000{i}{suffix}" for i in range(1, PHONES + 1) for suffix in ("-app.log", "-phone.cfg")}
    assert all(row["url"].startswith(f"tftp://127.0.0.1:{p['tftp_port']}/uploads/") for row in uploads)

    # The server stored every one of them, byte for byte as many as the phones sent.
    tftp = report["services"]["tftp"]
    assert tftp["uploads"] == PHONES * 2
    assert tftp["bytes_received"] == sum(row["bytes"] for row in uploads) > 0

    # The capture shows each upload as a WRQ into the upload folder.
    wrqs = [bytes(packet[UDP].payload) for packet in rdpcap(str(tmp_path / "run.pcap")) if UDP in packet]
    wrqs = [wire.decode_request(payload) for payload in wrqs if payload[:2] == b"\x00\x02"]
    assert sorted(request.filename for request in wrqs) == sorted(
        row["url"].split("/", 3)[3] for row in uploads)

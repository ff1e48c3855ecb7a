"""A host name and a file name with characters beyond ASCII, as a scenario or a config
file may give them: the phone asks the DNS for the name's IDNA form and sends it as HTTP's
Host field; it percent-encodes an HTTP path as UTF-8 (RFC 3987 3.1) and sends a TFTP or
FTP file name as its UTF-8 bytes; the servers find the file. On sockets and in virtual
time alike (in memory the HTTP and TFTP requests raised UnicodeError out of the lab and
the phone never settled; on sockets they failed with an 'ascii' codec error, and FTP
asked for the name in latin-1: 550)."""

import hashlib
import json

import pytest

from tests.e2e.test_run_scenarios import ports, run_labsim
from tests.peers import free_tcp_port, free_udp_port

pytestmark = pytest.mark.e2e

RINGTONE = bytes(range(256)) * 4

SCENARIO = """\
name: non-ascii-names
time_limit_s: 60
services:
  dhcp:
    port: {dhcp_port}
    options: {{66: "http://127.0.0.1:{http_port}/"}}
  http: {{port: {http_port}}}
  tftp: {{port: {tftp_port}}}
  ftp: {{port: {ftp_port}, anonymous: true}}
  dns:
    port: {dns_port}
    records:
      - {{name: prüf.lab, type: A, value: 127.0.0.1}}
provisioning:
  directory: files  # beside the scenario: the ringtone, bytes a `files:` text cannot hold
  files:
    y000000000066.cfg: |
      #!version:1.0.0.1
      ringtone.url = http://prüf.lab:{http_port}/Klingel ü.wav?v=ä
      directory_setting.url = tftp://prüf.lab:{tftp_port}/Klingel ü.wav
      local_contact.data.url = ftp://prüf.lab:{ftp_port}/Klingel ü.wav
  per_phone:
    - name: "{{mac}}.cfg"
      text: |
        #!version:1.0.0.1
        account.1.user_name = 7{{index:03d}}
fleets:
  - vendor: yealink
    model: T46S
    count: 2
    first_mac: "00:15:65:61:00:01"
expect:
  - phones.ready == 100%
  - downloads.errors == 0
"""


@pytest.mark.parametrize("clock", ["real", "virtual"])
def test_a_non_ascii_host_and_file_name_are_asked_for_and_served(tmp_path, clock):
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "Klingel ü.wav").write_bytes(RINGTONE)
    numbers = ports()
    ftp_port = free_tcp_port()
    text = SCENARIO.format(dns_port=free_udp_port(), ftp_port=ftp_port, **numbers)
    proc, report = run_labsim(tmp_path, text, "--clock", clock)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fetches = [json.loads(line) for line in open(tmp_path / "report" / "events.jsonl", encoding="utf-8")
               if '"fetch"' in line and "Klingel" in line]
    assert len(fetches) == 6 and all(f["status"] == "ok" for f in fetches), fetches
    assert {f["url"] for f in fetches} == {f"http://prüf.lab:{numbers['http_port']}/Klingel ü.wav?v=ä",
                                           f"tftp://prüf.lab:{numbers['tftp_port']}/Klingel ü.wav",
                                           f"ftp://prüf.lab:{ftp_port}/Klingel ü.wav"}
    assert all(f["md5"] == hashlib.md5(RINGTONE).hexdigest() for f in fetches)

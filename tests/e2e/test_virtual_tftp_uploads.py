"""TFTP uploads in virtual time go through the TFTP server's own request handler and
write transfer (labsim.virtual.tftp): a Polycom fleet on TFTP uploading its logs ends
the same on sockets and in virtual time, with uploads on and off."""

import os

import pytest

from tests.e2e.test_virtual_http import run
from tests.peers import free_udp_port

pytestmark = pytest.mark.e2e

POLYCOM = """\
name: virtual-tftp-uploads
time_limit_s: 60
services:
  dhcp: {{port: {dhcp}, subnet: 10.1.0.0/16, pool: {{start: 10.1.0.10, end: 10.1.3.250}},
         options: {{66: "tftp://127.0.0.1:{tftp}/"}}}}
  tftp: {{port: {tftp}, uploads: {uploads}, upload_dir: uploads}}
provisioning:
  files:
    000000000000.cfg: '<?xml version="1.0" standalone="yes"?>
      <APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="phone[PHONE_MAC_ADDRESS].cfg"
      LOG_FILE_DIRECTORY="uploads" OVERRIDES_DIRECTORY="uploads"/>'
  per_phone: [{{name: "phone{{mac}}.cfg", text: '<polycomConfig><reg reg.1.address="{{index}}"/></polycomConfig>'}}]
fleets:
  - {{vendor: polycom, models: {{VVX400: 3}}, first_mac: "00:04:f2:00:00:01"}}
"""


def ending(report: dict) -> tuple:
    phones = {p["mac"]: (p["state"], p["reboots"], p["files"]) for p in report["phones"]}
    uploads = sorted((os.path.basename(u["path"]), u["bytes"]) for u in report.get("uploads") or ())
    outcomes = sorted((e["detail"].split(" (")[0]) for p in report["phones"] for e in p["events"]
                      if "upload" in e["detail"].lower())
    return phones, uploads, outcomes


@pytest.mark.parametrize("uploads", ["true", "false"])
def test_uploads_end_as_on_sockets(tmp_path, uploads):
    text = POLYCOM.format(dhcp=free_udp_port(), tftp=free_udp_port(), uploads=uploads)
    on_sockets, in_memory = run(tmp_path, "sockets", text), run(tmp_path, "virtual", text, "--clock", "virtual")
    assert ending(in_memory) == ending(on_sockets)
    _, stored, outcomes = ending(in_memory)
    if uploads == "true":
        assert {f"0004f200000{n}-app.log" for n in (1, 2, 3)} <= {name for name, _ in stored}
    else:
        assert not stored and outcomes

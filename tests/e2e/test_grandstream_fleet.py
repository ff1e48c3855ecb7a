"""``labsim run`` end to end for Grandstream: a small GXP2170 + GXP1625 fleet, configured
over real loopback HTTP (option 66 a bare host, the scheme from P212) and upgraded over
TFTP (P192), by labsim's own DHCP, HTTP and TFTP services."""

import pytest

from labsim.wire import grandstream_cfg
from tests.e2e.test_run_scenarios import ports, run_labsim

pytestmark = pytest.mark.e2e

NEW_GXP1600 = "1.0.7.99"

SCENARIO = """\
name: grandstream-e2e
time_limit_s: 60
services:
  dhcp:
    port: {dhcp_port}
    subnet: 10.42.0.0/16
    pool: {{start: 10.42.0.10, end: 10.42.0.250}}
    options:
      66: "127.0.0.1:{http_port}/gs"
  http: {{port: {http_port}}}
  tftp: {{port: {tftp_port}}}
provisioning:
  files:
    gs/cfg.xml: |
      <?xml version="1.0" encoding="UTF-8"?>
      <gs_provision version="1">
        <config version="1">
          <P271>1</P271>
          <P270>site default</P270>
          <P192>tftp://127.0.0.1:{tftp_port}/fw</P192>
          <P194>1</P194>
          <P193>60</P193>
        </config>
      </gs_provision>
    gs/cfggxp2170.xml: |
      <gs_provision version="1"><config version="1"><P270>gxp2170 line</P270></config></gs_provision>
    fw/gxp1600fw.bin: "{new_image}"
    fw/gxp2170fw.bin: "{running_image}"
  per_phone:
    - name: "gs/cfg{{mac}}.xml"
      text: |
        <gs_provision version="1"><mac>{{mac}}</mac><config version="1"><P35>{{index}}</P35></config></gs_provision>
fleets:
  - name: desk
    vendor: grandstream
    models: {{GXP2170: 3, GXP1625: 2}}
    first_mac: "00:0b:82:aa:00:01"
    boot: {{pattern: storm, random_delay_s: 0.5}}
    boot_time_s: 0.2
    flash: {{settings: {{P212: "1"}}}}
expect:
  - phones.ready == 100%
  - phone.reboots == 1
  - flash: {{key: P270, equals: "gxp2170 line", model: GXP2170}}
  - flash: {{key: P270, equals: "site default", model: GXP1625}}
  - flash: {{key: P35, set: true}}
"""


def test_grandstream_fleet_gets_ready_with_one_reboot_and_the_gxp1600_image(tmp_path):
    p = ports()
    text = SCENARIO.format(**p, new_image=grandstream_cfg.render_image(NEW_GXP1600, 0).decode().strip(),
                           running_image=grandstream_cfg.render_image("1.0.11.3", 0).decode().strip())
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["passed"] and report["summary"]["by_state"]["ready"] == 5
    assert report["summary"]["reboots_total"] == 5
    # Per pass: cfg<mac> 404, cfg<mac>.xml 200, cfg<model>.xml (200 for GXP2170, 404 for
    # GXP1625), cfg.xml 200; two passes (before and after the reboot).
    http = report["services"]["http"]["status"]
    assert http["200"] == 2 * (3 * 3 + 2 * 2) and http["404"] == 2 * (3 * 1 + 2 * 2)
    assert report["services"]["tftp"]["transfers_started"] == 5 * 2  # the image is checked at every pass
    by_model = {}
    for phone in report["phones"]:
        by_model.setdefault(phone["model"], set()).add(phone["flash"]["firmware"])
        assert phone["files"][f"cfg{phone['mac'].replace(':', '')}.xml"] and phone["files"]["cfg.xml"]
    assert by_model == {"GXP1625": {NEW_GXP1600}, "GXP2170": {"1.0.11.3"}}

"""``labsim run`` end to end for the breadth vendors: a small Polycom fleet and a small
Cisco fleet, each provisioned over real loopback HTTP by labsim's own services."""

import pytest

from tests.e2e.test_run_scenarios import ports, run_labsim

pytestmark = pytest.mark.e2e

POLYCOM = """\
name: polycom-e2e
time_limit_s: 60
services:
  dhcp:
    port: {dhcp_port}
    subnet: 10.40.0.0/16
    pool: {{start: 10.40.0.10, end: 10.40.0.250}}
    options:
      66: "http://127.0.0.1:{http_port}/"
  http: {{port: {http_port}, uploads: true, upload_dir: uploads}}
provisioning:
  files:
    000000000000.cfg: |
      <?xml version="1.0" standalone="yes"?>
      <APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="phone[PHONE_MAC_ADDRESS].cfg, site.cfg"
                   LOG_FILE_DIRECTORY="uploads" OVERRIDES_DIRECTORY="uploads"/>
    site.cfg: |
      <polycomConfig>
        <device device.set="1" device.sntp.serverName="127.0.0.1" device.sntp.serverName.set="1"/>
        <reg reg.1.address="site-default"/>
      </polycomConfig>
  per_phone:
    - name: "phone{{mac}}.cfg"
      text: |
        <polycomConfig><reg reg.1.address="{{index}}"/></polycomConfig>
fleets:
  - name: vvx
    vendor: polycom
    models: {{VVX400: 3, VVX410: 2}}
    first_mac: "00:04:f2:aa:00:01"
    boot: {{pattern: storm, random_delay_s: 0.5}}
    boot_time_s: 0.2
expect:
  - phones.ready == 100%
  - phone.reboots == 1
"""

CISCO = """\
name: cisco-e2e
time_limit_s: 60
services:
  dhcp:
    port: {dhcp_port}
    subnet: 10.41.0.0/16
    pool: {{start: 10.41.0.10, end: 10.41.0.250}}
    options:
      66: "http://127.0.0.1:{http_port}/"
  http: {{port: {http_port}}}
provisioning:
  files:
    7841.xml: |
      <flat-profile>
        <Profile_Rule_B>/$MA.xml</Profile_Rule_B>
        <HostName>lab-phone</HostName>
        <Resync_Periodic>3600</Resync_Periodic>
      </flat-profile>
    spa504G.cfg: |
      Profile_Rule_B "/$MA.xml" ;
      HostName "lab-phone" ;
  per_phone:
    - name: "{{mac}}.xml"
      text: |
        <flat-profile><User_ID_1_>{{index}}</User_ID_1_></flat-profile>
fleets:
  - name: desk
    vendor: cisco
    models: {{CP-7841-3PCC: 2, SPA504G: 2}}
    first_mac: "00:0e:08:aa:00:01"
    boot: {{pattern: storm, random_delay_s: 0.5}}
    boot_time_s: 0.2
    behaviour: {{random_delay_unit_s: 0.1}}
expect:
  - phones.ready == 100%
  - phone.reboots == 1
"""


def test_polycom_fleet_gets_ready_and_uploads_its_logs_with_put(tmp_path):
    p = ports()
    proc, report = run_labsim(tmp_path, POLYCOM.format(**p))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["passed"] and report["summary"]["by_state"]["ready"] == 5
    http = report["services"]["http"]
    # Each phone: first pass creates its overrides file and log (201), restarts for the
    # device parameter, then replaces its log (204) and reads its overrides file back.
    assert http["uploads"] == 5 * 3
    assert http["status"]["201"] == 5 * 2 and http["status"]["204"] == 5
    phone = report["phones"][0]
    assert phone["vendor"] == "polycom" and phone["files"]["site.cfg"]


def test_cisco_fleet_gets_ready(tmp_path):
    p = ports()
    proc, report = run_labsim(tmp_path, CISCO.format(**p))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["passed"] and report["summary"]["by_state"]["ready"] == 4
    # Two profiles per pass (the model's, then Profile_Rule_B's per-phone one), two passes.
    assert report["services"]["http"]["status"]["200"] == 4 * 2 * 2
    files = {name for phone in report["phones"] for name in phone["files"]}
    assert {"7841.xml", "spa504G.cfg", "000e08aa0001.xml"} <= files

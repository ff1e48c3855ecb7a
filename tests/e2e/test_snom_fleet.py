"""``labsim run`` end to end for Snom: a small D785 + D345 fleet provisioned over real
loopback HTTP by labsim's own DHCP and HTTP services. Option 43's sub-option 66 names the
server and beats a plain option 66 that points nowhere; each phone reads its model's
file (``{model}.htm``: XML for the D785, the old text form for the D345), which chains
its per-phone ``{mac}.xml``, restarts once for a network setting, and is then steady."""

import pytest

from tests.e2e.test_run_scenarios import ports, run_labsim

pytestmark = pytest.mark.e2e

SNOM = """\
name: snom-e2e
time_limit_s: 60
services:
  dhcp:
    port: {dhcp_port}
    subnet: 10.42.0.0/16
    pool: {{start: 10.42.0.10, end: 10.42.0.250}}
    options:
      66: "http://127.0.0.1:1/"
      43: [{{code: 66, value: "http://127.0.0.1:{http_port}/snom/"}}]
  http: {{port: {http_port}}}
provisioning:
  files:
    snom/snomD785.htm: |
      <?xml version="1.0" encoding="utf-8"?>
      <settings>
        <phone-settings>
          <dns_domain perm="R">lab.test</dns_domain>
          <language perm="RW">English</language>
        </phone-settings>
        <setting-files><file url="{{mac}}.xml"/></setting-files>
      </settings>
    snom/snomD345.htm: |
      <html><pre>
      dns_domain!: lab.test
      language$: Deutsch
      </pre></html>
  per_phone:
    - name: "snom/{{MAC}}.xml"
      text: |
        <settings><phone-settings><user_name idx="1" perm="R">{{index}}</user_name></phone-settings></settings>
fleets:
  - name: desk
    vendor: snom
    models: {{D785: 3, D345: 2}}
    first_mac: "00:04:13:aa:00:01"
    boot: {{pattern: storm, random_delay_s: 0.5}}
    boot_time_s: 0.2
expect:
  - phones.ready == 100%
  - phone.reboots == 1
"""


def test_snom_fleet_gets_ready_through_option_43(tmp_path):
    p = ports()
    proc, report = run_labsim(tmp_path, SNOM.format(**p))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["passed"] and report["summary"]["by_state"]["ready"] == 5
    phones = {phone["mac"]: phone for phone in report["phones"]}
    for mac, phone in phones.items():
        assert phone["vendor"] == "snom" and phone["reboots"] == 1
        if phone["model"] == "D785":  # its model file, then the chained per-phone file
            assert set(phone["files"]) == {"snomD785.htm", mac.replace(":", "").upper() + ".xml"}
        else:
            assert set(phone["files"]) == {"snomD345.htm"}
        assert phone["flash"]["provisioning_url"] == f"http://127.0.0.1:{p['http_port']}/snom/snom{phone['model']}.htm"
    # Two passes per phone (before and after the restart): D785 two files, D345 one.
    assert report["services"]["http"]["status"]["200"] == 2 * (3 * 2 + 2 * 1)


SNOM_PNP = """\
name: snom-pnp-e2e
time_limit_s: 60
services:
  dhcp:
    port: {dhcp_port}
    subnet: 10.43.0.0/16
    pool: {{start: 10.43.0.10, end: 10.43.0.250}}
    options: {{router: 10.43.0.1}}
  http: {{port: {http_port}}}
  pnp:
    port: {pnp_port}
    url: "http://127.0.0.1:{http_port}/nowhere/"
    per_vendor: {{snom: "http://127.0.0.1:{http_port}/snom/"}}
    per_model: {{snomD345: "http://127.0.0.1:{http_port}/d345/"}}
provisioning:
  files:
    snom/snomD785.htm: |
      <settings><phone-settings><dns_domain perm="R">lab.test</dns_domain></phone-settings></settings>
    d345/snomD345.htm: |
      dns_domain!: lab.test
fleets:
  - name: desk
    vendor: snom
    models: {{D785: 2, D345: 2}}
    first_mac: "00:04:13:ab:00:01"
    boot: {{pattern: storm, random_delay_s: 0.5}}
    boot_time_s: 0.2
expect:
  - phones.ready == 100%
  - phone.reboots == 1
"""


def test_snom_fleet_without_dhcp_options_finds_its_server_through_labsims_pnp_responder(tmp_path):
    from tests.peers import free_udp_port

    p = {**ports(), "pnp_port": free_udp_port()}
    proc, report = run_labsim(tmp_path, SNOM_PNP.format(**p))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["summary"]["by_state"]["ready"] == 4
    folders = {"D785": "snom", "D345": "d345"}  # per_vendor, and per_model by Snom's model token
    for phone in report["phones"]:
        url = f"http://127.0.0.1:{p['http_port']}/{folders[phone['model']]}/snom{phone['model']}.htm"
        assert phone["flash"]["provisioning_url"] == url, phone["mac"]
        assert phone["reboots"] == 1
    # Asked at every boot: the first power-on and after the restart, per phone.
    assert report["services"]["pnp"]["subscribes"] == 2 * 4, report["services"]["pnp"]

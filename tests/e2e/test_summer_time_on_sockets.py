"""On sockets too, the phones' clocks start at the scenario's clock_starts and keep summer
time: Cisco phones at GMT+01:00 started eight seconds before Europe's spring change of
clock resync at Resync_At 03:00 local then, when their clock jumps from
02:00 to 03:00; phones told not to keep summer time wait for 03:00 CET, an hour on."""

import json

from tests.e2e.test_run_scenarios import ports, run_labsim

SCENARIO = """\
name: spring-forward-on-sockets
time_limit_s: 60
duration: 13s
clock_starts: "2026-03-29 00:59:52"  # 01:59:52 CET; at 01:00:00 UTC the clocks go forward
services:
  dhcp:
    port: {dhcp_port}
    subnet: 10.42.0.0/16
    pool: {{start: 10.42.0.10, end: 10.42.0.250}}
    options:
      66: "http://127.0.0.1:{http_port}/"
  http: {{port: {http_port}}}
provisioning:
  files:
    spa504G.cfg: |
      Profile_Rule_B "/$MA.cfg" ;
      Time_Zone "GMT+01:00" ;
      Resync_Periodic "0" ;
      Resync_At "0300" ;
      Resync_At_Random_Delay "0" ;
  per_phone:
    - name: "{{mac}}.cfg"
      fleets: [summer]
      text: |
        Daylight_Saving_Time_Enable "Yes" ;
    - name: "{{mac}}.cfg"
      fleets: [standard]
      text: |
        Daylight_Saving_Time_Enable "No" ;
fleets:
  - name: summer
    vendor: cisco
    model: SPA504G
    count: 2
    first_mac: "00:0e:08:bb:00:01"
    boot: {{pattern: storm, random_delay_s: 0.5}}
    boot_time_s: 0.2
    behaviour: {{random_delay_unit_s: 0.1}}
  - name: standard
    vendor: cisco
    model: SPA504G
    count: 2
    first_mac: "00:0e:08:bc:00:01"
    boot: {{pattern: storm, random_delay_s: 0.5}}
    boot_time_s: 0.2
    behaviour: {{random_delay_unit_s: 0.1}}
expect:
  - phones.ready == 100%
"""


def test_cisco_phones_on_sockets_resync_when_their_clock_jumps_to_three(tmp_path):
    proc, report = run_labsim(tmp_path, SCENARIO.format(**ports()))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["clock"] == "real"
    later = {}  # each phone's passes after the boot ones: the Resync_At ones
    for line in open(tmp_path / "report" / "events.jsonl", encoding="utf-8"):
        event = json.loads(line)
        if event["kind"] == "state" and event["detail"] == "scheduled re-provisioning":
            later.setdefault(event["mac"], []).append(event["t"])
    summer = {mac: times for mac, times in later.items() if mac.startswith("00:0e:08:bb")}
    assert sorted(summer) == ["00:0e:08:bb:00:01", "00:0e:08:bb:00:02"], later
    # 8 s after the start is 01:00:00 UTC, 03:00 CEST (late only by the machine's load).
    assert all(len(times) == 1 and 7.9 < times[0] < 12.5 for times in summer.values()), later
    assert not any(mac.startswith("00:0e:08:bc") for mac in later), later  # 03:00 CET is 02:00 UTC

"""One process judges its ``when:`` conditions on metrics it keeps as its phones change
(``scale.fleet_metrics.RunMetrics``), not by counting every phone at each look: at every
look of a virtual run they are what counting over every phone gives
(``observe.report.phone_metrics``), for counts, per-phone reboots, time to ready, a
stage's latencies and the request series (``observe.series.TimeSeries.metrics`` so far),
while phones boot, resync, fail over a stopped server and are power-cycled."""

import io
import json

from labsim.observe.report import phone_metrics
from labsim.scale import fleet_metrics
from labsim.scenario.loader import load_scenario
from labsim.virtual import run as virtual_run

SCENARIO = """\
name: run-metrics
seed: 3
duration: 3h
services:
  dhcp: {port: 6767, subnet: 10.1.0.0/16, pool: {start: 10.1.0.10, end: 10.1.3.250}, lease_time_s: 3600,
         options: {66: "http://127.0.0.1:8080/"}}
  http: {port: 8080}
provisioning:
  files:
    y000000000066.cfg: "#!version:1.0.0.1\\nstatic.auto_provision.repeat.enable = 1\\nstatic.auto_provision.repeat.minutes = 20\\n"
fleets:
  - {vendor: yealink, models: {T46S: 30}, first_mac: "00:15:65:00:00:01", boot: {pattern: storm, random_delay_s: 900}}
timeline:
  - {when: "phones.ready >= 50%", do: {power_cycle: {phones: 3}}}
  - {at: 3000, do: {stop_service: http}}
  - {at: 4800, do: {start_service: http}}
  - {when: "phone.reboots >= 3", do: {power_cycle: {phones: 1}}}
  - {when: "time_to_ready.p90 > 5000", do: {power_cycle: {phones: 1}}}
  - {when: "stage.common_cfg.p95 > 30", do: {power_cycle: {phones: 1}}}
  - {when: "phones.failed >= 20%", do: {power_cycle: {phones: 2}}}
  - {when: "service.http.requests_per_min.max > 10000", do: {power_cycle: {phones: 1}}}
  - {when: "service.dhcp.requests >= 75", do: {power_cycle: {phones: 2}}}
  - {when: "service.http.requests_per_s.mean < 0.11", do: {power_cycle: {phones: 1}}}
"""


def same(live: tuple[dict, dict], full: tuple[dict, dict], wanted) -> bool:
    (live_metrics, live_phones), (full_metrics, full_phones) = live, full
    for name in wanted:
        if name == "phone.reboots":  # one phone of each reboot count decides as every phone does
            if {value for _, value in live_phones[name]} != {value for _, value in full_phones[name]}:
                return False
        elif live_metrics.get(name) != full_metrics.get(name):
            return False
    return all(live_metrics[name] == value for name, value in full_metrics.items() if name.startswith("phones."))


def test_the_metrics_kept_are_the_metrics_counted_at_every_look(tmp_path, monkeypatch):
    looks = []
    kept = fleet_metrics.RunMetrics.metrics

    def checked(live, wanted):
        answer = kept(live, wanted)
        run = live.outbox.run
        counted = phone_metrics(run.members, run.stage_archive, wanted)
        counted[0].update(run.series.metrics(run.elapsed_s()))
        looks.append((run.elapsed_s(), sorted(wanted), same(answer, counted, wanted)))
        return answer

    monkeypatch.setattr(fleet_metrics.RunMetrics, "metrics", checked)
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    code = virtual_run.run_virtual(load_scenario(str(path)), report_dir=str(tmp_path / "report"), stream=io.StringIO())
    assert code in (0, 1)
    assert len(looks) > 200 and all(ok for _, _, ok in looks), [look for look in looks if not look[2]][:3]
    assert {"phone.reboots", "time_to_ready.p90", "stage.common_cfg.p95",
            "service.http.requests_per_min.max"} <= set(looks[-1][1])  # read to the end
    timeline = json.loads((tmp_path / "report" / "report.json").read_text())["timeline"]
    fired = {entry["entry"] for entry in timeline}
    assert {"when phones.ready >= 50%", "when phones.failed >= 20%", "when service.dhcp.requests >= 75",
            "when service.http.requests_per_s.mean < 0.11"} <= fired, fired

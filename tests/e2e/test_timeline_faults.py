"""Timelines, faults and --state-dir, end to end over loopback (small fleets)."""

import json

import pytest

from tests.e2e.test_run_scenarios import ports, run_labsim, scenario_text

pytestmark = pytest.mark.e2e


def base(p, *, option66=None, count=10, expect=(), time_limit=60):
    return scenario_text(option66=option66 or f"http://127.0.0.1:{p['http_port']}/", count=count, expect=expect,
                         time_limit=time_limit, **p)


def test_edit_then_check_sync_reprovisions_and_reboots_for_the_changed_network_setting(tmp_path):
    p = ports()
    text = base(p, expect=("phone.reboots == 2", "phones.ready == 100%")) + """\
timeline:
  - when: phones.ready == 100%
    do:
      - edit_file: {name: y000000000066.cfg, set: {static.network.lldp.enable: 0}}
      - edit_file: {name: y000000000065.cfg, set: {static.network.lldp.enable: 0}}
      - check_sync: {phones: all}
"""
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    actions = [entry["action"] for entry in report["timeline"]]
    assert actions == ["edit_file", "edit_file", "check_sync"]
    assert all(ph["flash"]["settings_count"] >= 2 for ph in report["phones"])


def test_power_cycle_half_the_phones_md5_check_means_no_new_reboot(tmp_path):
    p = ports()
    text = base(p, expect=("phone.reboots == 1", "phones.ready == 100%")) + """\
timeline:
  - when: phones.ready == 100%
    do: {power_cycle: {phones: 50%}}
"""
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cycled = [ph for ph in report["phones"] if ph["power_cycles"] == 1]
    assert len(cycled) == 5
    assert all(any(e["detail"] == "power cycle" for e in ph["events"]) for ph in cycled)


def test_dhcp_packet_loss_delays_but_every_phone_gets_ready(tmp_path):
    p = ports()
    text = base(p, count=6, expect=("phones.ready == 100%",), time_limit=120) + """\
seed: 3
faults:
  - {service: dhcp, direction: in, loss: 0.15}
"""
    proc, report = run_labsim(tmp_path, text, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dropped = report["network"]["faults"]["dropped"]
    assert dropped > 0
    # Every lost request was sent again: the relay sent more than the server received.
    assert report["network"]["relay"]["sent"] - report["services"]["dhcp"]["received"] == dropped


def test_dropping_every_offer_stalls_dhcp_until_the_fault_is_removed(tmp_path):
    p = ports()
    text = base(p, count=4, expect=("phones.ready == 100%", "stage.dhcp.max > 3")) + """\
faults:
  - {name: no-offers, service: dhcp, drop_dhcp: [OFFER]}
timeline:
  - at: 2
    do: {remove_fault: no-offers}
"""
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["network"]["faults"]["dropped"] >= 4


def test_tftp_loss_is_recovered_by_retransmission(tmp_path):
    p = ports()
    text = base(p, option66=f"tftp://127.0.0.1:{p['tftp_port']}/", expect=("phones.ready == 100%",),
                time_limit=120) + """\
faults:
  - {service: tftp, loss: 0.1}
"""
    proc, report = run_labsim(tmp_path, text, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["network"]["faults"]["dropped"] > 0
    assert report["services"]["tftp"]["retransmits"] + report["services"]["tftp"]["timeouts"] > 0


def test_http_500_for_config_files_fails_every_phone(tmp_path):
    p = ports()
    text = base(p, expect=("phones.failed == 100%",)) + """\
faults:
  - {service: http, http_status: 500, path: "/*.cfg"}
"""
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["services"]["http"]["status"]["500"] >= 10 * 2 * 3
    # The load tester's line counts the answers by kind: the server's 500s, every one.
    [line] = [v for server, v in report["summary"]["servers"].items() if server.startswith("http://")]
    assert line["by_status"]["error HTTP 500"] == report["services"]["http"]["status"]["500"]
    assert "error" not in line["by_status"]
    assert "error HTTP 500 " in next(row for row in proc.stdout.splitlines() if row.startswith("  server http://"))


def test_service_down_then_back_phones_recover_with_retries(tmp_path):
    p = ports()
    text = base(p, expect=("phones.ready == 100%",)) + """\
faults:
  - {name: outage, service: http, slow_s: 0.3, path: "/*.boot"}
timeline:
  - at: 0
    do: {stop_service: http}
  - at: 2.5
    do: [{start_service: http}, {remove_fault: outage}]
"""
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [e["action"] for e in report["timeline"]] == ["stop_service", "start_service", "remove_fault"]


def test_state_dir_second_run_continues_from_saved_flash(tmp_path):
    p = ports()
    state = tmp_path / "state"
    first, report1 = run_labsim(tmp_path, base(p, expect=("phone.reboots == 1",)), "--state-dir", str(state))
    assert first.returncode == 0, first.stdout + first.stderr
    saved = json.loads((state / "flash.json").read_text())
    assert len(saved["phones"]) == 10
    second, report2 = run_labsim(tmp_path, base(p, expect=("phone.reboots == 0", "phones.ready == 100%")),
                                 "--state-dir", str(state))
    saved_after_second = json.loads((state / "flash.json").read_text())["phones"]
    assert second.returncode == 0, second.stdout + second.stderr
    assert report2["phones"][0]["files"] == report1["phones"][0]["files"]
    # Before each run labsim says what it takes from the file, and the report keeps it.
    path = state / "flash.json"
    first_note = (f"{path}: no saved flash yet: every phone starts from the scenario's flash, and the fleet's is "
                  "saved there at the end")
    assert f"labsim: note: {first_note}" in first.stderr and report1["notes"] == [first_note]
    assert report2["notes"] == [f"{path}: the saved flash of 10 of this run's 10 phones"]
    # A smaller run continues its own phones and keeps the other phones' flash in the file.
    # --phones 4 gives each model a block of two MACs: the third and fourth are T48S
    # phones here, T46S ones in the full fleet, so they are other devices and start from
    # the scenario's flash (a reboot each), where the first two continue (none).
    third, report3 = run_labsim(tmp_path, base(p, expect=("phone.reboots <= 1",)), "--state-dir", str(state),
                                "--phones", "4")
    assert third.returncode == 0, third.stdout + third.stderr
    assert report3["notes"] == [
        f"{path}: the saved flash of 2 of this run's 4 phones; 2 start from the scenario's flash, 2 of them because "
        "the file's flash at their MAC is another device's (e.g. 00:15:65:aa:00:03: saved by a yealink T46S, a "
        "yealink T48S in this run); 6 other saved phone(s) are not in this run and keep their flash in the file"]
    reboots = {phone["mac"]: (phone["model"], phone["reboots"]) for phone in report3["phones"]}
    assert reboots == {"00:15:65:aa:00:01": ("T46S", 0), "00:15:65:aa:00:02": ("T46S", 0),
                       "00:15:65:aa:00:03": ("T48S", 1), "00:15:65:aa:00:04": ("T48S", 1)}
    after = json.loads(path.read_text())["phones"]
    assert set(after) == set(saved_after_second)
    assert {mac: entry["model"] for mac, entry in after.items() if mac in reboots} == {
        mac: model for mac, (model, _) in reboots.items()}  # each MAC's flash now the device that ran there
    assert {mac: after[mac] for mac in after if mac not in reboots} == {
        mac: entry for mac, entry in saved_after_second.items() if mac not in reboots}  # the six others, as saved


def test_changing_option_66_mid_run_sends_later_phones_elsewhere(tmp_path):
    p = ports()
    # Option 66 starts wrong: the first phones fail. At 1.5 s the lab fixes it; the
    # phones that boot after that (ramp) provision.
    text = base(p, option66="http://127.0.0.1:9/", count=10, expect=("phones.failed >= 1", "phones.ready >= 1"))
    text = text.replace("boot: {pattern: storm, random_delay_s: 0.5}", "boot: {pattern: ramp, per_second: 3}")
    text += f"""\
timeline:
  - at: 1.5
    do: {{set_dhcp_option: {{66: "http://127.0.0.1:{p['http_port']}/"}}}}
"""
    proc, report = run_labsim(tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    by_url = {ph["flash"]["provisioning_url"] for ph in report["phones"] if ph["state"] == "ready"}
    assert by_url == {f"http://127.0.0.1:{p['http_port']}/"}


def http_stops_when(tmp_path, workers, name: str, when: str, *, count: int, per_second: int, expect):
    """A run of ``count`` phones powered on ``per_second`` whose timeline stops the HTTP
    server when ``when`` holds: (report.json, the timeline's one record)."""
    text = base(ports(), count=count, expect=expect, time_limit=60)
    text = text.replace("boot: {pattern: storm, random_delay_s: 0.5}", f"boot: {{pattern: ramp, per_second: {per_second}}}")
    text += f"timeline:\n  - name: {name}\n    when: {when}\n    do: {{stop_service: http}}\n"
    proc, report = run_labsim(tmp_path, text, *(["--workers", workers] if workers else []), timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [fired] = report["timeline"]
    assert (fired["entry"], fired["action"]) == (name, "stop_service")
    return report, fired


@pytest.mark.parametrize("workers", [None, "2"])
def test_a_when_on_a_stage_latency_is_judged_on_every_workers_downloads(tmp_path, workers):
    """``when: stage.dhcp.count >= 3``: the HTTP server stops once three phones of the
    fleet have their lease (a DHCP timing each), in one process and with --workers 2,
    where each worker tells the parent its new stage latencies every 0.2 s."""
    report, fired = http_stops_when(tmp_path, workers, "three leases", "stage.dhcp.count >= 3", count=6, per_second=3,
                                    expect=("phones.failed >= 1",))
    acks = sorted(line["t"] for line in map(json.loads, open(tmp_path / "report" / "events.jsonl"))
                  if line["kind"] == "dhcp" and line.get("type") == "ACK")
    told = 0.2 if workers else 0.0  # a worker tells its latencies every 0.2 s
    assert acks[2] - 0.05 <= fired["t"] <= acks[2] + 0.5 + told + 0.05, (acks, fired["t"])
    assert "failed" in {ph["state"] for ph in report["phones"]}  # the later phones find no server


@pytest.mark.parametrize("workers", [None, "2"])
def test_the_http_server_falls_over_after_its_first_requests_and_the_later_phones_fail(tmp_path, workers):
    """A trainer's lab: the server goes down once it has had 6 requests (a when: on the
    request series, looked at whenever a request or a state change moved it). The phones
    booting before it provision; those after it fail. With --workers 2 the parent adds up
    what each worker tells of its requests, every 0.2 s, and stops the server in both."""
    report, fell = http_stops_when(tmp_path, workers, "the server falls over", "service.http.requests >= 6", count=5,
                                   per_second=4, expect=("phones.failed >= 1", "phones.ready >= 1"))
    started = sorted(line["t"] - line["latency_s"] for line in map(json.loads, open(tmp_path / "report" / "events.jsonl"))
                     if line["kind"] == "fetch" and line["url"].startswith("http:"))
    assert len([t for t in started if t <= fell["t"]]) >= 6  # seen within a look (0.5 s) of the 6th
    told = 0.2 if workers else 0.0  # a worker tells its requests every 0.2 s
    assert started[5] > fell["t"] - 0.5 - told - 0.05
    states = {ph["state"] for ph in report["phones"]}
    assert states == {"ready", "failed"}, states


@pytest.mark.parametrize("clock, workers", [("real", None), ("real", "2"), ("virtual", None), ("virtual", "2")])
def test_a_when_on_the_fleets_download_outcomes_and_expectations_on_them(tmp_path, clock, workers):
    """``when: downloads.optional_missing >= 4``: the HTTP server stops once the fleet has
    had four 404s of files its phones only look for (a Yealink's boot files, two a pass),
    in one process and on two workers, where each tells the parent its downloads'
    outcomes with its stage latencies; then ``downloads.*`` expectations judge the end:
    the boot files' 404s are no error, the refused downloads after the stop are."""
    expect = ("phones.failed >= 1", "downloads.optional_missing >= 4", "downloads.errors >= 1",
              "downloads.error >= 1", "downloads.not_found == 0")
    text = base(ports(), count=6, expect=expect, time_limit=60)
    text = text.replace("boot: {pattern: storm, random_delay_s: 0.5}", "boot: {pattern: ramp, per_second: 3}")
    text += "timeline:\n  - name: four misses\n    when: downloads.optional_missing >= 4\n    do: {stop_service: http}\n"
    args = ["--clock", clock] + (["--workers", workers] if workers else [])
    proc, report = run_labsim(tmp_path, text, *args, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [fired] = report["timeline"]
    assert (fired["entry"], fired["action"]) == ("four misses", "stop_service")
    misses = sorted(line["t"] for line in map(json.loads, open(tmp_path / "report" / "events.jsonl"))
                    if line["kind"] == "fetch" and line["url"].endswith(".boot") and line["status"] == "not_found")
    told = 0.2 if workers and clock == "real" else 0.0  # a real-clock worker tells its timings every 0.2 s
    assert misses[3] - 0.05 <= fired["t"] <= misses[3] + 0.5 + told + 0.05, (misses, fired["t"])
    verdicts = {e["check"]: e["observed"] for e in report["expectations"]}
    http = [stats for server, stats in report["summary"]["servers"].items() if server.startswith("http://")]
    assert verdicts["downloads.optional_missing >= 4"] == sum(s["by_status"].get("optional_missing", 0) for s in http)
    assert verdicts["downloads.errors >= 1"] == sum(s["errors"] for s in http)

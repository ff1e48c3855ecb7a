"""Every bundled scenario runs, small, and ends the way its comments say it does."""

import glob
import json
import os
import re
import subprocess
import sys

import pytest

from labsim.wire import cisco_crypt
from tests.relocate import relocated

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIOS = os.path.join(ROOT, "scenarios")
# Scenarios that need real third-party servers run in tests/interop.
NEEDS_REAL_SERVERS = {"external-load-test.yaml"}
TRAINING_LABS = {"lab-wrong-option-66.yaml", "lab-missing-mac-file.yaml", "lab-md5-no-reboot.yaml",
                 "lab-avaya-profile-fallback.yaml", "lab-dns-typo.yaml", "lab-nightly-stampede.yaml",
                 "lab-maintenance-weekend.yaml"}
SMALL = {"boot-storm.yaml": 60, "quickstart.yaml": 30, "packet-loss-20.yaml": 20, "md5-no-reboot.yaml": 12,
         "week-of-resyncs.yaml": 20, "lease-expiry.yaml": 20}  # the last two: virtual time


# A training lab as shipped runs on sockets, as its students run it; the fixed lab is
# judged in virtual time (test_virtual_equivalence: a scenario ends alike on both clocks),
# which takes a second where the lab's own timeline takes its seconds again.
FIXED = ("--clock", "virtual")


def run(path, tmp_path, *args, text=None):
    """Run a bundled scenario (``text``: with a test's edits) on fresh ports (tests/relocate.py)."""
    report_dir = tmp_path / "report"
    path, _ = relocated(path, tmp_path / "scenario", text)
    proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(path), "--report-dir", str(report_dir), *args],
                          capture_output=True, text=True, timeout=240)
    report = json.loads((report_dir / "report.json").read_text())
    return proc, report


def bundled():
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(SCENARIOS, "*.yaml")))


def test_the_library_index_lists_every_scenario():
    index = open(os.path.join(SCENARIOS, "README.md"), encoding="utf-8").read()
    for name in bundled():
        assert f"]({name})" in index, f"{name} is missing from scenarios/README.md"


@pytest.mark.parametrize("name", [n for n in bundled() if n not in NEEDS_REAL_SERVERS | TRAINING_LABS])
def test_bundled_scenario_passes(name, tmp_path):
    args = ("--phones", str(SMALL[name])) if name in SMALL else ()
    proc, report = run(os.path.join(SCENARIOS, name), tmp_path, *args)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert report["passed"] and report["complete"]


def test_training_lab_wrong_option_66_fails_until_fixed(tmp_path):
    path = os.path.join(SCENARIOS, "lab-wrong-option-66.yaml")
    proc, report = run(path, tmp_path)
    assert proc.returncode == 1
    assert report["summary"]["by_state"]["failed"] == report["summary"]["phones"]
    # The terminal, report.json and report.html say why: the reason, the server and where it came from, the error.
    line = ("10 failed: no configuration file could be downloaded — http://127.0.0.1:8008/ (from DHCP option 66): "
            "connection refused")
    assert line in proc.stdout
    [problem] = report["summary"]["problems"]
    assert (problem["count"], problem["server_from"], problem["error"]) == (10, "DHCP option 66", "connection refused")
    assert report["phones"][0]["cause"]["server"] == "http://127.0.0.1:8008/"
    # The server's line says what its errors were: nothing listened on that port.
    assert report["summary"]["servers"]["http://127.0.0.1:8008"]["by_status"] == {"error connection refused": 80}
    assert line in (tmp_path / "report" / "report.html").read_text()
    proc, report = run(path, tmp_path, *FIXED, text=open(path).read().replace("http://127.0.0.1:8008/", "http://127.0.0.1:8080/"))
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_training_lab_dns_typo_fails_until_fixed_and_the_capture_shows_why(tmp_path):
    """The record's name has a typo: validate notes it, every lookup is answered NXDOMAIN,
    no download leaves a phone (the capture has the DNS queries and replies and no TCP),
    and the phones say so; with the record named right, every phone gets ready."""
    from scapy.all import DNS, TCP, rdpcap

    path = os.path.join(SCENARIOS, "lab-dns-typo.yaml")
    capture = tmp_path / "lab.pcap"
    proc, report = run(path, tmp_path, "--pcap", str(capture))
    assert proc.returncode == 1
    line = (r"10 failed: no configuration file could be downloaded — http://provisioning\.lab:\d+/ \(from DHCP option "
            r"66\): provisioning\.lab: no such name \(NXDOMAIN\) from the lab DNS 127\.0\.0\.1:\d+\n")
    assert re.search(line, proc.stdout), proc.stdout
    assert any("names the host 'provisioning.lab', and services.dns has no A record for it" in note
               for note in report["notes"])
    [(server, counts)] = [(s, c) for s, c in report["summary"]["servers"].items() if s.startswith("http://")]
    assert counts["by_status"] == {"dns": counts["requests"]} and report["services"].get("http", {}).get(
        "requests", 0) == 0
    frames = rdpcap(str(capture))
    replies = [f[DNS] for f in frames if DNS in f and f[DNS].qr == 1]
    assert replies and {reply.rcode for reply in replies} == {3}  # NXDOMAIN
    assert not [f for f in frames if TCP in f]
    text = open(path).read()
    mistake = "{name: provisoning.lab, type: A"
    assert mistake in text
    proc, report = run(path, tmp_path, *FIXED, text=text.replace(mistake, "{name: provisioning.lab, type: A"))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert report["notes"] == []


def test_training_lab_missing_mac_file_fails_until_fixed(tmp_path):
    path = os.path.join(SCENARIOS, "lab-missing-mac-file.yaml")
    proc, report = run(path, tmp_path)
    assert proc.returncode == 1
    failing = [e for e in report["expectations"] if not e["passed"]]
    assert [e["check"] for e in failing] == ["every phone: flash account.1.user_name is set"]
    proc, report = run(path, tmp_path, *FIXED, text=re.sub(r"\n      fleets: \[first-desk\]", "", open(path).read()))
    assert proc.returncode == 0, proc.stdout[-3000:]


@pytest.mark.parametrize("name, mistake, fix, failing", [
    ("lab-md5-no-reboot.yaml", ", static.network.lldp.enable: 0}}   # <- the mistake", "}}", ["phone.reboots == 1"]),
    ("lab-avaya-profile-fallback.yaml", "PRIMARY_SERVER_PROFILE primary-profile.cfg", "PRIMARY_SERVER_PROFILE primary.cfg",
     ["every phone: flash profile/primary/SIP_DOMAIN1 == 'profile.lab.example'"]),
    # Two ways out of the nightly stampede: a window of the whole night, or flexible auto
    # provisioning (each phone once a week, on its MAC's day).
    ("lab-nightly-stampede.yaml", "begin_time = 02:00\n      static.auto_provision.weekly.end_time = 02:05",
     "begin_time = 00:00\n      static.auto_provision.weekly.end_time = 06:00",
     ["service.http.requests_per_min.max < 40 during 00:00-06:00"]),
    ("lab-nightly-stampede.yaml", "static.auto_provision.weekly.enable = 1",
     "static.auto_provision.flexible.enable = 1\n      static.auto_provision.flexible.interval = 7\n"
     "      static.auto_provision.flexible.begin_time = 01:00\n      static.auto_provision.flexible.end_time = 05:00",
     ["service.http.requests_per_min.max < 40 during 00:00-06:00"]),
    # A lease whose half (T1) outlasts the day of maintenance.
    ("lab-maintenance-weekend.yaml", "lease_time_s: 86400", "lease_time_s: 259200",
     ["no phone waited a minute for an address"]),
])
def test_training_lab_fails_until_fixed(tmp_path, name, mistake, fix, failing):
    path = os.path.join(SCENARIOS, name)
    proc, report = run(path, tmp_path)
    assert proc.returncode == 1
    assert [e["name"] for e in report["expectations"] if not e["passed"]] == failing
    text = open(path).read()
    assert mistake in text
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(text.replace(mistake, fix))
    proc, report = run(fixed, tmp_path, *FIXED)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_every_training_lab_has_an_exercise_for_the_dashboard():
    from labsim.scenario.loader import load_scenario

    for name in TRAINING_LABS:
        lab = load_scenario(os.path.join(SCENARIOS, name)).scenario.lab
        assert lab is not None and lab.task.strip() and len(lab.hints) >= 2 and lab.check, name


def test_two_sites_windows_five_hours_apart_the_stampede_without_new_yorks_zone_and_londons_factory_zone(tmp_path):
    path = os.path.join(SCENARIOS, "two-sites-time-zones.yaml")

    def window_hours(report_dir):
        hours = {}
        for line in open(report_dir / "events.jsonl", encoding="utf-8"):
            event = json.loads(line)
            if event["kind"] == "fetch" and event["t"] > 86400:  # Monday
                hours[int(event["t"] // 3600) - 24] = hours.get(int(event["t"] // 3600) - 24, 0) + 1
        return hours

    proc, report = run(path, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert window_hours(tmp_path / "report") == {2: 600 * 4, 7: 600 * 4}  # 02:00 and 07:00 UTC, four requests a pass
    text = open(path).read()
    assert "        local_time.time_zone = -5\n" in text
    proc, report = run(path, tmp_path, text=text.replace("        local_time.time_zone = -5\n", ""))
    assert proc.returncode == 1
    assert window_hours(tmp_path / "report") == {2: 1200 * 4}  # both sites at 02:00 UTC
    failing = [e for e in report["expectations"] if not e["passed"]]
    assert [e["check"] for e in failing] == ["service.http.requests_per_min.max < 400"]
    # The second trap: no zone in the common file: London keeps the factory +8, and its
    # Tuesday 02:00 is Monday 18:00 UTC, in New York's working day.
    assert "      local_time.time_zone = 0\n" in text
    trap = text.replace("      local_time.time_zone = 0\n", "")
    during = "service.http.requests == 0 during mon-fri 08:00-23:00"
    proc, report = run(path, tmp_path, text=trap)
    assert proc.returncode == 1
    assert window_hours(tmp_path / "report") == {7: 600 * 4, 18: 600 * 4}
    failing = [e for e in report["expectations"] if not e["passed"]]
    assert [(e["check"], e["observed"]) for e in failing] == [(during, 600 * 4)]
    # Across two shards, the run starting on Monday: London's windows on Monday and Tuesday
    # at 18:00 UTC both count, on the calendar each shard.json carries (read from the
    # default start, a day earlier, only the second would).
    proc, report = run(path, tmp_path, "--workers", "2", "--clock-starts", "2026-01-05", text=trap)
    assert proc.returncode == 1
    failing = [e for e in report["expectations"] if not e["passed"]]
    assert [(e["check"], e["observed"]) for e in failing] == [(during, 2 * 600 * 4)]


def test_flexible_spread_asks_once_a_phone_a_week_and_the_nightly_window_is_the_stampede(tmp_path):
    path = os.path.join(SCENARIOS, "flexible-spread.yaml")
    proc, report = run(path, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    nights = {}
    for line in open(tmp_path / "report" / "events.jsonl", encoding="utf-8"):
        event = json.loads(line)
        if event["kind"] == "fetch" and event["t"] > 6 * 3600:  # after the boot hour (noon): the nights
            day, hour = divmod(int((event["t"] + 12 * 3600) // 3600), 24)  # the calendar starts at noon
            assert 1 <= hour < 5 or (hour == 5 and (event["t"] + 12 * 3600) % 3600 < 60), event
            nights[day] = nights.get(day, 0) + 1
    assert sum(nights.values()) == 700 * 4 and len(nights) == 7  # each phone once, four requests; every night
    assert min(nights.values()) > 700 * 4 / 7 / 2  # the MACs spread the fleet over the week's days
    [calm] = [e["observed"] for e in report["expectations"] if "during" in e["check"]]
    text = open(path).read()
    flexible = "      static.auto_provision.flexible.enable = 1\n"
    assert flexible in text
    nightly = ("      static.auto_provision.weekly.enable = 1\n      static.auto_provision.weekly.begin_time = 02:00\n"
               "      static.auto_provision.weekly.end_time = 02:10\n")
    proc, report = run(path, tmp_path, text=text.replace(flexible, nightly))
    assert proc.returncode == 1
    failing = [e for e in report["expectations"] if not e["passed"]]
    assert [e["check"] for e in failing] == ["service.http.requests_per_min.max < 40 during 00:00-06:00"]
    assert failing[0]["observed"] > 10 * calm  # every phone every night, in ten minutes


def test_cisco_encrypted_upgrade_decrypts_its_site_profile_and_the_trap_without_the_key(tmp_path):
    folder = os.path.join(SCENARIOS, "cisco-encrypted-upgrade")
    # The encrypted file is the plain one the folder shows, under the scenario's phrase.
    encrypted = open(os.path.join(folder, "secure", "site.cfg"), "rb").read()
    assert cisco_crypt.decrypt(encrypted, "LabSecret2026") == open(os.path.join(folder, "site.xml"), "rb").read()
    path = os.path.join(SCENARIOS, "cisco-encrypted-upgrade.yaml")
    proc, report = run(path, tmp_path, "--phones", "20")
    assert proc.returncode == 0, proc.stdout[-3000:]
    tries = {}
    for line in open(tmp_path / "report" / "events.jsonl", encoding="utf-8"):
        event = json.loads(line)
        if event["kind"] == "fetch" and event["url"].endswith(".loads"):
            tries.setdefault(event["mac"], []).append((event["t"], event["status"]))
    for mac, attempts in tries.items():  # failing until 06:00, then one download that works
        assert [status for _, status in attempts][-1] == "ok" and attempts[-1][0] >= 6 * 3600, (mac, attempts)
        assert all(status == "not_found" and t < 6 * 3600 for t, status in attempts[:-1]) and len(attempts) >= 4
    text = open(path).read()
    assert "[--key $GPP_B] /secure/site.cfg" in text
    proc, report = run(path, tmp_path, "--phones", "20",
                       text=text.replace("[--key $GPP_B] /secure/site.cfg", "/secure/site.cfg"))
    assert proc.returncode == 1
    assert {p["state"] for p in report["phones"]} == {"failed"}
    assert all("an encrypted profile ('Salted__'), but its rule has no [--key ...]" in p["failure"]
               for p in report["phones"])


def site_window_hours(report_dir):
    """spring-forward's fetches by site and hour of the lab's clock (UTC), after the boot hour."""
    hours = {}
    for line in open(report_dir / "events.jsonl", encoding="utf-8"):
        event = json.loads(line)
        if event["kind"] == "fetch" and event["t"] > 7200:
            key = ("london" if event["mac"].startswith("00:15:65:c2") else "berlin", int(event["t"] // 3600))
            hours[key] = hours.get(key, 0) + 1
    return hours


def test_spring_forward_keeps_the_windows_an_hour_apart_and_the_stampede_without_berlins_zone_name(tmp_path):
    path = os.path.join(SCENARIOS, "spring-forward.yaml")
    window_hours = site_window_hours

    proc, report = run(path, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert report["simulated"]["from"] == "2026-03-28T00:00:00+00:00"  # the scenario's clock_starts
    # Saturday: Berlin 03:00 CET = 02:00 UTC, London 03:00 GMT = 03:00 UTC; Sunday, after
    # the change at 01:00 UTC: 03:00 CEST = 01:00 UTC (hour 25), 03:00 BST = 02:00 UTC (26).
    assert window_hours(tmp_path / "report") == {("berlin", 2): 2400, ("london", 3): 2400,
                                                 ("berlin", 25): 2400, ("london", 26): 2400}
    text = open(path).read()
    berlin = text.index("fleets: [berlin]")
    # Berlin's summer time is automatic, by its zone's name: without the name the phones
    # look up the factory China(Beijing), which has no entry at +1.
    proc, report = run(path, tmp_path, text=text[:berlin] + text[berlin:].replace(
        "        local_time.time_zone_name = Germany(Berlin)\n", "", 1))
    assert proc.returncode == 1
    assert window_hours(tmp_path / "report") == {("berlin", 2): 2400, ("london", 3): 2400, ("berlin", 26): 2400,
                                                 ("london", 26): 2400}  # Berlin keeps CET: onto London's hour
    failing = [e for e in report["expectations"] if not e["passed"]]
    assert [e["check"] for e in failing] == ["service.http.requests_per_min.max < 400"]


def test_clock_starts_on_the_command_line_moves_every_shards_calendar(tmp_path):
    # A week earlier, 2026-03-21: no change of clock that weekend, so Sunday's windows stay
    # where Saturday's were (Berlin 02:00 UTC, London 03:00), in both shards.
    proc, report = run(os.path.join(SCENARIOS, "spring-forward.yaml"), tmp_path, "--workers", "2",
                       "--clock-starts", "2026-03-21")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert report["simulated"]["from"] == "2026-03-21T00:00:00+00:00"
    assert "(to Monday 2026-03-23 00:00 UTC)" in proc.stdout and "by 2 shards" in proc.stdout
    assert site_window_hours(tmp_path / "report") == {("berlin", 2): 2400, ("london", 3): 2400,
                                                      ("berlin", 26): 2400, ("london", 27): 2400}


@pytest.mark.parametrize("dhcp, failing", [
    # A week's lease outlasts the maintenance, but the phones renew once in the week.
    ('lease_time_s: 604800\n    options: {66: "http://127.0.0.1:8080/"}',
     ["the phones renewed twice a phone or more in the week"]),
    # T1 an hour (option 58) on a 1-day lease: the address still has under a day left when
    # the server stops, and is lost for up to an hour before it returns.
    ('lease_time_s: 86400\n    options: {66: "http://127.0.0.1:8080/", 58: 3600, 59: 7200}',
     ["no phone waited a minute for an address"]),
])
def test_lab_maintenance_weekend_the_wrong_ways_out(tmp_path, dhcp, failing):
    path = os.path.join(SCENARIOS, "lab-maintenance-weekend.yaml")
    text = open(path).read()
    shipped = 'lease_time_s: 86400\n    options: {66: "http://127.0.0.1:8080/"}'
    assert shipped in text
    proc, report = run(path, tmp_path, text=text.replace(shipped, dhcp))
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert [e["name"] for e in report["expectations"] if not e["passed"]] == failing
    if "58: 3600" in dhcp:  # lost, but for under an hour: the lease had over 23 hours left
        lost = next(e for e in report["expectations"] if e["name"] == failing[0])
        assert 60 < float(lost["observed"]) < 3700

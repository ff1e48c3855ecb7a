"""FTP in virtual time answers under the FTP server's own rules (labsim.virtual.ftp):
each scenario runs on sockets (pyftpdlib) and in virtual time and must end the same:
per-phone states, reboots and files, logins and files by the server's counters, and
the uploads stored. Under a delay fault the server holds each command the phones'
client sends: the time a download or a refused login takes, and how many commands were
held, are the same in memory as measured on sockets."""

import json

import pytest

from tests.e2e.test_virtual_http import run
from tests.peers import free_tcp_port, free_udp_port

pytestmark = pytest.mark.e2e

YEALINK = """\
name: virtual-ftp
time_limit_s: 60
services:
  dhcp: {{port: {dhcp}, subnet: 10.1.0.0/16, pool: {{start: 10.1.0.10, end: 10.1.3.250}},
         options: {{66: "ftp://{login}127.0.0.1:{ftp}/"}}}}
  ftp: {{port: {ftp}, users: {{alice: s3cret}}, anonymous: {anonymous}}}
provisioning:
  files:
    y000000000066.cfg: "#!version:1.0.0.1\\nstatic.network.lldp.enable = 1\\n"
  per_phone: [{{name: "{{mac}}.cfg", text: "#!version:1.0.0.1\\naccount.1.user_name = {{index}}\\n"}}]
fleets:
  - {{vendor: yealink, models: {{T46S: 3}}, first_mac: "00:15:65:00:00:01"}}
{faults}"""

POLYCOM = """\
name: virtual-ftp-uploads
time_limit_s: 60
services:
  dhcp: {{port: {dhcp}, subnet: 10.1.0.0/16, pool: {{start: 10.1.0.10, end: 10.1.3.250}},
         options: {{66: "ftp://alice:s3cret@127.0.0.1:{ftp}/"}}}}
  ftp: {{port: {ftp}, users: {{alice: s3cret}}, uploads: true, upload_dir: uploads}}
provisioning:
  files:
    000000000000.cfg: '<?xml version="1.0" standalone="yes"?>
      <APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="phone[PHONE_MAC_ADDRESS].cfg"
      LOG_FILE_DIRECTORY="uploads" OVERRIDES_DIRECTORY="uploads"/>'
  per_phone: [{{name: "phone{{mac}}.cfg", text: '<polycomConfig><reg reg.1.address="{{index}}"/></polycomConfig>'}}]
fleets:
  - {{vendor: polycom, models: {{VVX500: 3}}, first_mac: "00:04:f2:00:00:01"}}
"""

COUNTERS = ("logins_ok", "logins_failed", "files_sent", "files_received")


def ending(report: dict) -> tuple:
    import os

    phones = {p["mac"]: (p["state"], p["reboots"], p["files"]) for p in report["phones"]}
    ftp = report["services"]["ftp"]
    uploads = sorted(os.path.basename(u["path"]) for u in report.get("uploads") or ())
    return phones, {key: ftp[key] for key in COUNTERS}, uploads


def both_clocks(tmp_path, template: str, faults: str = "", **values):
    text = template.format(dhcp=free_udp_port(), ftp=free_tcp_port(), faults=faults, **values)
    return run(tmp_path, "sockets", text), run(tmp_path, "virtual", text, "--clock", "virtual")


@pytest.mark.parametrize("login, anonymous, state", [("alice:s3cret@", "false", "ready"),
                                                      ("", "true", "ready"),
                                                      ("alice:wrong@", "false", "failed"),
                                                      ("", "false", "failed")])
def test_downloads_end_as_on_sockets(tmp_path, login, anonymous, state):
    on_sockets, in_memory = both_clocks(tmp_path, YEALINK, login=login, anonymous=anonymous)
    assert ending(in_memory) == ending(on_sockets)
    assert {phone["state"] for phone in in_memory["phones"]} == {state}


def test_uploads_are_stored_as_on_sockets(tmp_path):
    on_sockets, in_memory = both_clocks(tmp_path, POLYCOM)
    assert ending(in_memory) == ending(on_sockets)
    _, counters, names = ending(in_memory)
    assert counters["files_received"] >= 3
    assert {f"0004f200000{n}-app.log" for n in (1, 2, 3)} <= set(names)


DELAY_S = 0.2
HELD = {"ready": (5, 0.0), "failed": (2, 0.5)}  # commands the phone waits for; the failed-login delay


@pytest.mark.parametrize("login, state", [("alice:s3cret@", "ready"), ("alice:wrong@", "failed")])
def test_a_delay_fault_holds_the_same_commands_as_on_sockets(tmp_path, login, state):
    faults = f"faults:\n  - {{name: slow, service: ftp, delay_s: {DELAY_S}}}\n"
    on_sockets, in_memory = both_clocks(tmp_path, YEALINK, faults, login=login, anonymous="false")
    assert ending(in_memory) == ending(on_sockets)
    assert {phone["state"] for phone in in_memory["phones"]} == {state}
    waited, after_login = HELD[state]
    expected = waited * DELAY_S + after_login  # USER, PASS (TYPE I, PASV, RETR), as the server holds them
    latencies = {}
    for name in ("sockets", "virtual"):
        lines = (tmp_path / name / "report" / "events.jsonl").read_text().splitlines()
        latencies[name] = [e["latency_s"] for e in map(json.loads, lines) if e["kind"] == "fetch"]
    assert latencies["virtual"] and all(t == pytest.approx(expected + 0.001) for t in latencies["virtual"])
    assert latencies["sockets"] and all(expected <= t < expected + 0.25 for t in latencies["sockets"])
    # Every command held is counted, QUIT included (drawn after the phone has its result):
    # on sockets the last QUIT of each phone may still be unread when the run ends.
    sessions = in_memory["services"]["ftp"]["sessions"]
    delayed = {name: report["network"]["faults"]["delayed"] for name, report in (("sockets", on_sockets),
                                                                                 ("virtual", in_memory))}
    assert delayed["virtual"] == sessions * (waited + 1)
    assert delayed["virtual"] - len(in_memory["phones"]) <= delayed["sockets"] <= delayed["virtual"]


def test_a_bandwidth_fault_paces_the_file_as_on_sockets(tmp_path):
    kbps = 64
    faults = f"faults:\n  - {{name: thin, service: ftp, direction: out, bandwidth_kbps: {kbps}}}\n"
    padding = "".join(f"# padding line {n:03d} so that the common file takes about a second\\n" for n in range(120))
    template = YEALINK.replace('static.network.lldp.enable = 1\\n"', 'static.network.lldp.enable = 1\\n' + padding + '"')
    assert padding in template
    on_sockets, in_memory = both_clocks(tmp_path, template, faults, login="alice:s3cret@", anonymous="false")
    assert ending(in_memory) == ending(on_sockets)
    for name, report in (("sockets", on_sockets), ("virtual", in_memory)):
        lines = (tmp_path / name / "report" / "events.jsonl").read_text().splitlines()
        fetches = [e for e in map(json.loads, lines) if e["kind"] == "fetch" and e["status"] == "ok"]
        assert max(e["bytes"] for e in fetches) > 6000
        for e in fetches:  # size / rate (in memory plus its one hop; on sockets the round trips)
            paced = e["bytes"] * 8 / (kbps * 1000)
            if name == "virtual":
                assert e["latency_s"] == pytest.approx(paced + 0.001)
            else:
                assert paced <= e["latency_s"] < paced + 0.15
    assert in_memory["network"]["faults"]["throttled"] == on_sockets["network"]["faults"]["throttled"] > 0

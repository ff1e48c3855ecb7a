"""HTTP in virtual time is labsim's HTTP core (services.http_files.StaticFiles) over the
in-memory network: Basic and Digest challenges answered as the phones' fetcher answers
them, and PUT uploads stored where a run on sockets stores them. Each scenario runs on
sockets and in virtual time and must end the same: per-phone states, reboots and files,
the HTTP server's counters by status (the 401 challenges included), and the uploads."""

import json
import os
import subprocess
import sys

import pytest

from tests.peers import free_tcp_port, free_udp_port

pytestmark = pytest.mark.e2e

AUTH = """\
name: virtual-http-auth
time_limit_s: 60
services:
  dhcp: {{port: {dhcp}, subnet: 10.1.0.0/16, pool: {{start: 10.1.0.10, end: 10.1.3.250}},
         options: {{66: "http://alice:{password}@127.0.0.1:{http}/"}}}}
  http:
    port: {http}
    auth: [{{path: "*.cfg", scheme: {scheme}, users: {{alice: s3cret}}}}]
provisioning:
  files:
    y000000000066.cfg: "#!version:1.0.0.1\\nstatic.network.lldp.enable = 1\\n"
  per_phone: [{{name: "{{mac}}.cfg", text: "#!version:1.0.0.1\\naccount.1.user_name = {{index}}\\n"}}]
fleets:
  - {{vendor: yealink, models: {{T46S: 4}}, first_mac: "00:15:65:00:00:01"}}
"""

UPLOADS = """\
name: virtual-http-uploads
time_limit_s: 60
services:
  dhcp: {{port: {dhcp}, subnet: 10.1.0.0/16, pool: {{start: 10.1.0.10, end: 10.1.3.250}},
         options: {{66: "http://127.0.0.1:{http}/"}}}}
  http: {{port: {http}, uploads: true, upload_dir: uploads}}
provisioning:
  files:
    000000000000.cfg: '<?xml version="1.0" standalone="yes"?>
      <APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="phone[PHONE_MAC_ADDRESS].cfg"
      LOG_FILE_DIRECTORY="uploads" OVERRIDES_DIRECTORY="uploads"/>'
  per_phone: [{{name: "phone{{mac}}.cfg", text: '<polycomConfig><reg reg.1.address="{{index}}"/></polycomConfig>'}}]
fleets:
  - {{vendor: polycom, models: {{VVX500: 3}}, first_mac: "00:04:f2:00:00:01"}}
"""


def start(tmp_path, name: str, text: str, *args) -> tuple[subprocess.Popen, object]:
    folder = tmp_path / name
    folder.mkdir()
    path = folder / "scenario.yaml"
    path.write_text(text)
    proc = subprocess.Popen([sys.executable, "-m", "labsim", "run", str(path), "--report-dir", str(folder / "report"),
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, folder


def finish(proc: subprocess.Popen, folder) -> dict:
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, 1), stdout[-3000:] + stderr[-3000:]
    return json.loads((folder / "report" / "report.json").read_text())


def run(tmp_path, name: str, text: str, *args) -> dict:
    return finish(*start(tmp_path, name, text, *args))


def run_on_both_clocks(tmp_path, text: str) -> tuple[dict, dict]:
    """(the report on sockets, the report in virtual time) of one scenario, both run at
    once: the socket run mostly waits on its clock, and the virtual one binds no port."""
    runs = [start(tmp_path, "sockets", text), start(tmp_path, "virtual", text, "--clock", "virtual")]
    try:
        return finish(*runs[0]), finish(*runs[1])
    finally:
        for proc, _ in runs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def ending(report: dict) -> tuple:
    phones = {p["mac"]: (p["state"], p["reboots"], p["files"]) for p in report["phones"]}
    http = report["services"]["http"]
    uploads = sorted(os.path.basename(u["path"]) for u in report.get("uploads") or ())
    return phones, http["status"], http.get("uploads"), uploads


def both_clocks(tmp_path, template: str, **values) -> tuple[dict, dict]:
    text = template.format(dhcp=free_udp_port(), http=free_tcp_port(), **values)
    return run_on_both_clocks(tmp_path, text)


@pytest.mark.parametrize("scheme", ["basic", "digest"])
def test_challenged_downloads_end_as_on_sockets(tmp_path, scheme):
    on_sockets, in_memory = both_clocks(tmp_path, AUTH, scheme=scheme, password="s3cret")
    assert ending(in_memory) == ending(on_sockets)
    phones, status, _, _ = ending(in_memory)
    assert {state for state, _, _ in phones.values()} == {"ready"}
    assert status["401"] >= 4 * 2 and status["200"] >= 4 * 2  # each .cfg challenged, then served


def test_a_wrong_password_is_denied_as_on_sockets(tmp_path):
    on_sockets, in_memory = both_clocks(tmp_path, AUTH, scheme="digest", password="wrong")
    assert ending(in_memory) == ending(on_sockets)
    assert {phone["state"] for phone in in_memory["phones"]} == {"failed"}
    assert all("denied" in " ".join(e["detail"] for e in phone["events"]) for phone in in_memory["phones"])


def test_uploads_are_stored_as_on_sockets(tmp_path):
    on_sockets, in_memory = both_clocks(tmp_path, UPLOADS)
    assert ending(in_memory) == ending(on_sockets)
    _, status, stored, names = ending(in_memory)
    assert stored >= 3 and status.get("201", 0) >= 3
    assert {f"0004f200000{n}-app.log" for n in (1, 2, 3)} <= set(names)
    for upload in in_memory["uploads"]:  # on disk, where the run's uploads go (never in its temporary copy)
        assert os.path.getsize(upload["path"]) == upload["bytes"] > 0


CISCO_KEYS = """\
name: cisco-per-phone-keys
time_limit_s: 60
services:
  dhcp: {{port: {dhcp}, subnet: 10.1.0.0/16, pool: {{start: 10.1.0.10, end: 10.1.3.250}},
         options: {{66: "http://127.0.0.1:{http}/"}}}}
  http: {{port: {http}}}
provisioning:
  files:
    spa504G.cfg: '<flat-profile><Profile_Rule_B>[--key "Desk $MA"] /$MA.xml</Profile_Rule_B></flat-profile>'
  per_phone:
    - {{name: "{{mac}}.xml", cisco_key: "Desk {key_of}", text: "<flat-profile><GPP_A>desk {{index}}</GPP_A></flat-profile>"}}
fleets:
  - {{vendor: cisco, model: SPA504G, count: 3, first_mac: "00:0e:08:00:00:01"}}
expect:
  - phones.ready == 100%
  - flash: {{key: GPP_A, set: true}}
"""


def test_per_phone_cisco_keys_are_read_as_on_sockets(tmp_path):
    # Each phone's own file, encrypted with its own phrase ("Desk <its MAC>"), which its
    # rule names as "Desk $MA": every phone decrypts its file, on both clocks alike.
    on_sockets, in_memory = both_clocks(tmp_path, CISCO_KEYS, key_of="{mac}")
    assert ending(in_memory) == ending(on_sockets)
    assert {p["state"] for p in in_memory["phones"]} == {"ready"} and in_memory["passed"]
    assert all(f"{p['mac'].replace(':', '')}.xml" in p["flash"]["file_md5"] for p in in_memory["phones"])
    # One phrase for all instead: no phone's rule names it, and every resync fails on it.
    report = run(tmp_path, "one-key", CISCO_KEYS.format(dhcp=free_udp_port(), http=free_tcp_port(), key_of="all"),
                 "--clock", "virtual")
    assert {p["state"] for p in report["phones"]} == {"failed"}
    assert all("cannot decrypt the profile with its --key" in p["failure"] for p in report["phones"])

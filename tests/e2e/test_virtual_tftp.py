"""TFTP in virtual time is the phones' own TFTP client against the TFTP server's own
request handler and transfers (labsim.virtual.tftp), datagram by datagram. The same
scenarios on sockets and in virtual time end the same: a Yealink fleet downloading a
multi-block file at a negotiated blksize (with files missing and a name refused), the
server's counters of requests, transfers, refusals and DATA bytes; the same fleet
under 30 % datagram loss (the server's and the phones' retransmissions); and a Polycom
fleet uploading its logs, with uploads on and off."""

import json
import os

import pytest

from tests.e2e.test_virtual_http import run, run_on_both_clocks
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


YEALINK = """\
name: virtual-tftp-downloads
seed: 7
time_limit_s: 120
services:
  dhcp: {{port: {dhcp}, subnet: 10.1.0.0/16, pool: {{start: 10.1.0.10, end: 10.1.3.250}},
         options: {{66: "tftp://127.0.0.1:{tftp}/"}}}}
  tftp: {{port: {tftp}, blksize_max: 512, timeout_s: 0.5, max_retransmits: 10}}
provisioning:
  files:
    y000000000066.cfg: "#!version:1.0.0.1\\nstatic.network.lldp.enable = 1\\n{padding}"
  per_phone: [{{name: "{{mac}}.cfg", text: "#!version:1.0.0.1\\naccount.1.user_name = {{index}}\\n"}}]
fleets:
  - {{vendor: yealink, models: {{T46S: 4}}, first_mac: "00:15:65:00:00:01", behaviour: {{retry_delay_s: 1.0}}}}
{faults}"""
LOSS = "faults:\n  - {name: lossy, service: tftp, direction: both, loss: 0.3}\n"
# transfers_ok among them: when the phones have settled, the final ACK of each phone's
# last file is still on its way (its 1 ms hop in memory, a loopback datagram on sockets);
# a settled run lets it reach the server before it reads the counters, in both.
SERVER_COUNTS = ("rrq", "transfers_started", "transfers_ok", "not_found", "access_violation", "option_refused")


def yealink(loss: bool) -> str:
    padding = "".join(f"# line {n} of a long comment to make the file several blocks long\\n" for n in range(40))
    return YEALINK.format(dhcp=free_udp_port(), tftp=free_udp_port(), padding=padding, faults=LOSS if loss else "")


def test_downloads_end_as_on_sockets_with_the_same_server_counters(tmp_path):
    text = yealink(loss=False)
    on_sockets, in_memory = run_on_both_clocks(tmp_path, text)
    phones = {p["mac"]: (p["state"], p["reboots"], p["files"]) for p in on_sockets["phones"]}
    assert {p["mac"]: (p["state"], p["reboots"], p["files"]) for p in in_memory["phones"]} == phones
    assert {state for state, _, _ in phones.values()} == {"ready"}
    server = {key: on_sockets["services"]["tftp"][key] for key in SERVER_COUNTS}
    assert {key: in_memory["services"]["tftp"][key] for key in SERVER_COUNTS} == server
    assert server["not_found"] > 0 and server["transfers_started"] > 0  # the .boot files are missing
    stats = in_memory["services"]["tftp"]
    # Every transfer ended, the last one's final ACK included: none still active.
    for counters in (stats, on_sockets["services"]["tftp"]):
        assert counters["transfers_ok"] == counters["transfers_started"] and not counters.get("active"), counters
    assert stats["retransmits"] == stats["timeouts"] == stats["duplicate_acks"] == 0  # nothing lost in memory
    # blksize 1428 asked, 512 granted (the OACK): the common file went out in 512-byte DATA
    lines = (tmp_path / "virtual" / "report" / "events.jsonl").read_text().splitlines()
    fetched = [event for event in map(json.loads, lines) if event["kind"] == "fetch" and event["status"] == "ok"]
    assert all(e["bytes"] > 3 * 512 for e in fetched if e["url"].endswith("y000000000066.cfg"))
    # each file: an OACK, then its DATA, the last one short (empty after a full one)
    assert stats["packets_sent"] == sum(1 + e["bytes"] // 512 + 1 for e in fetched) > 4 * len(fetched)


def test_lost_datagrams_are_retransmitted_by_both_ends_as_on_sockets(tmp_path):
    text = yealink(loss=True)
    on_sockets, in_memory = run_on_both_clocks(tmp_path, text)
    for report in (on_sockets, in_memory):
        assert {p["state"] for p in report["phones"]} == {"ready"}
        assert report["services"]["tftp"]["retransmits"] > 0 and report["network"]["faults"]["dropped"] > 0
    assert ({p["mac"]: p["files"] for p in in_memory["phones"]} == {p["mac"]: p["files"] for p in on_sockets["phones"]})


def test_a_lossy_run_replays_byte_for_byte_and_another_seed_differs(tmp_path):
    # Every datagram is a call on the clock, its fault draws made when it is sent, among
    # the other phones' datagrams and timers: the order is the clock's, the same each run.
    text = yealink(loss=True)
    first, second = run(tmp_path, "first", text, "--clock", "virtual"), run(tmp_path, "second", text, "--clock", "virtual")
    other = run(tmp_path, "other", text.replace("seed: 7", "seed: 8"), "--clock", "virtual")
    assert first["services"]["tftp"]["retransmits"] > 0 and first["network"]["faults"]["dropped"] > 0
    events = [(tmp_path / name / "report" / "events.jsonl").read_bytes() for name in ("first", "second", "other")]
    assert events[0] == events[1] != events[2]


def ending(report: dict) -> tuple:
    phones = {p["mac"]: (p["state"], p["reboots"], p["files"]) for p in report["phones"]}
    uploads = sorted((os.path.basename(u["path"]), u["bytes"]) for u in report.get("uploads") or ())
    outcomes = sorted((e["detail"].split(" (")[0]) for p in report["phones"] for e in p["events"]
                      if "upload" in e["detail"].lower())
    return phones, uploads, outcomes


@pytest.mark.parametrize("uploads", ["true", "false"])
def test_uploads_end_as_on_sockets(tmp_path, uploads):
    text = POLYCOM.format(dhcp=free_udp_port(), tftp=free_udp_port(), uploads=uploads)
    on_sockets, in_memory = run_on_both_clocks(tmp_path, text)
    assert ending(in_memory) == ending(on_sockets)
    _, stored, outcomes = ending(in_memory)
    if uploads == "true":
        assert {f"0004f200000{n}-app.log" for n in (1, 2, 3)} <= {name for name, _ in stored}
    else:
        assert not stored and outcomes


def test_a_tftp_url_with_no_tftp_service_times_out_as_the_phones_client_does(tmp_path):
    text = yealink(loss=False).replace("  tftp: {port:", "  # tftp: {port:")
    report = run(tmp_path, "virtual", text, "--clock", "virtual")
    assert "tftp" not in report["services"]
    lines = (tmp_path / "virtual" / "report" / "events.jsonl").read_text().splitlines()
    fetches = [e for e in map(json.loads, lines) if e["kind"] == "fetch"]
    # RRQ and five retransmissions, 1 s doubling up to 8 s: 31 s, then "no answer"
    assert fetches and {(e["status"], e["latency_s"], e["detail"]) for e in fetches} == {("timeout", 31.0,
                                                                                          "TFTP: no answer")}


# A common file of 19 blocks of 512 bytes, each datagram held 0.1 s: the phones fetch it
# from 1.2 s to 5.2 s of the run, and the timeline acts at 3 s, in the middle of it.
MID_TRANSFER = """\
name: virtual-tftp-mid-transfer
seed: 3
time_limit_s: 60
services:
  dhcp: {{port: 6767, subnet: 10.1.0.0/16, pool: {{start: 10.1.0.10, end: 10.1.3.250}},
         options: {{66: "tftp://127.0.0.1:6969/"}}}}
  tftp: {{port: 6969, blksize_max: 512}}
provisioning:
  files:
    y000000000066.cfg: "#!version:1.0.0.1\\nstatic.network.lldp.enable = 1\\n{padding}"
fleets:
  - {{vendor: yealink, models: {{T46S: 2}}, first_mac: "00:15:65:00:00:01", behaviour: {{retry_delay_s: 1.0}}}}
faults:
  - {{name: slow, service: tftp, direction: both, delay_s: 0.1}}
timeline:
  - {{at: 3, do: {first}}}
  - {{at: 6, do: {then}}}
"""
COMMON = "tftp://127.0.0.1:6969/y000000000066.cfg"
STOP_S = 3.0
BACKOFF_S = 1 + 2 + 4 + 8 + 8 + 8  # the phones' client: five retransmissions, 1 s doubling up to 8 s


def mid_transfer(tmp_path, first: str, then: str) -> tuple[dict, dict]:
    padding = "".join(f"# line {n} of a long comment, to make the file many blocks long\\n" for n in range(140))
    report = run(tmp_path, "virtual", MID_TRANSFER.format(padding=padding, first=first, then=then), "--clock", "virtual")
    fetches = {}
    for event in map(json.loads, (tmp_path / "virtual" / "report" / "events.jsonl").read_text().splitlines()):
        if event["kind"] == "fetch" and event["url"] == COMMON:
            fetches.setdefault(event["mac"], []).append(event)
    assert len(fetches) == 2 and {p["state"] for p in report["phones"]} == {"ready"}
    return report, fetches


def test_a_server_stopped_in_the_middle_of_a_transfer_leaves_the_phone_to_time_out(tmp_path):
    # This scenario on sockets (run by hand twice, 2026-12-05): the common file times out
    # at 34.02 s and 33.90 s (in memory: 33.82 s), the phones start over and the run ends
    # at 49.5 s and 48.6 s (48.3 s); the restarted server's counters the same (rrq 20, 4
    # transfers started and ok, not_found 16, 76 packets, 35,596 bytes; the report now adds
    # the first server's to them). Too slow for the suite: 50 s of wall.
    report, fetches = mid_transfer(tmp_path, "{stop_service: tftp}", "{start_service: tftp}")
    for events in fetches.values():
        failed = events[0]
        assert (failed["status"], failed["detail"]) == ("timeout", "TFTP: no answer")
        assert failed["t"] - failed["latency_s"] < STOP_S  # asked before the server stopped
        # Its last ACK went out as the last DATA arrived (before 3.1 s); five retries later it gave up.
        assert STOP_S - 0.25 + BACKOFF_S < failed["t"] <= STOP_S + 0.1 + BACKOFF_S
        assert [e["status"] for e in events[1:]] == ["ok", "ok"]  # it starts over, and again after its reboot
    # The run's counters: the first server's (two boot files and the common file for each
    # phone, the two transfers it never finished), then the restarted server's 20, 4 and 4.
    stats = report["services"]["tftp"]
    assert (stats["rrq"], stats["transfers_started"], stats["transfers_ok"]) == (6 + 20, 2 + 4, 4)


def test_a_fault_window_opening_in_the_middle_of_a_transfer_stalls_it_until_it_closes(tmp_path):
    report, fetches = mid_transfer(tmp_path, "{add_fault: {name: cut, service: tftp, direction: both, loss: 1.0}}",
                                   "{remove_fault: cut}")
    for events in fetches.values():
        assert events[0]["status"] == "ok" and events[0]["t"] > 6.0  # 4 s of transfer, 3 s of them cut
    stats = report["services"]["tftp"]
    assert stats["retransmits"] > 0 and stats["timeouts"] == 0 and report["network"]["faults"]["dropped"] > 0

"""FTP in virtual time is the phones' own FTP client against labsim's own FTP server
(pyftpdlib's handlers) over the lab's TCP, segment by segment on the clock
(labsim.virtual.ftp): each scenario runs on sockets (pyftpdlib) and in virtual time and
must end the same: per-phone states, reboots and files, logins and files by the
server's counters, and the uploads stored. Under a delay fault the server holds each
command it reads: the time a download or a refused login takes (plus, in memory, the
exchange's hops), and how many commands were held, are the same in memory as measured
on sockets. A server stopped, or a fault removed, in the middle of an exchange acts on
it in memory as on sockets, fetch by fetch."""

import json

import pytest

from tests.e2e.test_virtual_http import run, run_on_both_clocks
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
  - {{vendor: yealink, models: {{T46S: 3}}, first_mac: "00:15:65:00:00:01",
     behaviour: {{retry_delay_s: 0.5}}}}  # a failing file is asked for again sooner: a shorter test
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
    return run_on_both_clocks(tmp_path, text)


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


def test_uploads_under_a_delay_fault_are_stored_as_on_sockets(tmp_path):
    # The phones' client sends the file as soon as the data connection opens, while the
    # server still holds the STOR: the data channel waits for it (pyftpdlib alone closed
    # it, and every upload hung until the client's 30 s limit, on both clocks).
    text = POLYCOM.format(dhcp=free_udp_port(), ftp=free_tcp_port()) + \
        "faults:\n  - {name: slow, service: ftp, delay_s: 0.2}\n"
    on_sockets, in_memory = run_on_both_clocks(tmp_path, text)
    assert ending(in_memory) == ending(on_sockets)
    _, counters, names = ending(in_memory)
    assert counters["files_received"] == 6 and len(names) == 6  # each phone's override and log
    assert same_fetches(tmp_path, slack_s=0.3)


DELAY_S = 0.2
HOP_S = 0.001  # the in-memory lab's latency: every segment one hop
# Commands the phone waits for; the failed-login delay; the hops of the exchange in memory
# (SYN, SYN-ACK with the 220, then USER, PASS, TYPE I, PASV and their replies, the data
# connection's SYN with the RETR, the file and 226 back: 12; a refused login ends at the 530: 6).
HELD = {"ready": (5, 0.0, 12), "failed": (2, 0.5, 6)}


@pytest.mark.parametrize("login, state", [("alice:s3cret@", "ready"), ("alice:wrong@", "failed")])
def test_a_delay_fault_holds_the_same_commands_as_on_sockets(tmp_path, login, state):
    faults = f"faults:\n  - {{name: slow, service: ftp, delay_s: {DELAY_S}}}\n"
    on_sockets, in_memory = both_clocks(tmp_path, YEALINK, faults, login=login, anonymous="false")
    assert ending(in_memory) == ending(on_sockets)
    assert {phone["state"] for phone in in_memory["phones"]} == {state}
    waited, after_login, hops = HELD[state]
    expected = waited * DELAY_S + after_login  # USER, PASS (TYPE I, PASV, RETR), as the server holds them
    latencies = {}
    for name in ("sockets", "virtual"):
        lines = (tmp_path / name / "report" / "events.jsonl").read_text().splitlines()
        latencies[name] = [e["latency_s"] for e in map(json.loads, lines) if e["kind"] == "fetch"]
    assert latencies["virtual"] and all(t == pytest.approx(expected + hops * HOP_S) for t in latencies["virtual"])
    assert latencies["sockets"] and all(expected <= t < expected + 0.25 for t in latencies["sockets"])
    # Every command held is counted, QUIT included (read after the phone has its result):
    # on both clocks the last QUIT of each phone may still be on its way when the run ends.
    sessions = in_memory["services"]["ftp"]["sessions"]
    phones = len(in_memory["phones"])
    for report in (on_sockets, in_memory):
        delayed = report["network"]["faults"]["delayed"]
        assert sessions * waited + sessions - phones <= delayed <= sessions * (waited + 1)


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
        for e in fetches:  # size / rate, plus the round trips (in memory: the 12 hops of a download)
            paced = e["bytes"] * 8 / (kbps * 1000)
            if name == "virtual":
                assert e["latency_s"] == pytest.approx(paced + 12 * HOP_S, abs=1e-5)  # events keep microseconds
            else:
                assert paced <= e["latency_s"] < paced + 0.15
    assert in_memory["network"]["faults"]["throttled"] == on_sockets["network"]["faults"]["throttled"] > 0


MID_EXCHANGE = """\
name: virtual-ftp-mid-exchange
seed: 5
time_limit_s: 60
services:
  dhcp: {{port: {dhcp}, subnet: 10.1.0.0/16, pool: {{start: 10.1.0.10, end: 10.1.3.250}},
         options: {{66: "ftp://alice:s3cret@127.0.0.1:{ftp}/"}}}}
  ftp: {{port: {ftp}, users: {{alice: s3cret}}}}
provisioning:
  files:
    y000000000066.cfg: "#!version:1.0.0.1\\nstatic.network.lldp.enable = 1\\n"
  per_phone: [{{name: "{{mac}}.cfg", text: "#!version:1.0.0.1\\naccount.1.user_name = {{index}}\\n"}}]
fleets:
  - {{vendor: yealink, models: {{T46S: 2}}, first_mac: "00:15:65:00:00:01", behaviour: {{retry_delay_s: 1.0}}}}
faults:
  - {{name: slow, service: ftp, delay_s: 0.5}}
timeline:
{timeline}"""


def fetches_of(tmp_path, name: str) -> dict:
    """Per phone, its FTP fetches and uploads in order: (url, status, detail, when it ended)."""
    fetches = {}
    for event in map(json.loads, (tmp_path / name / "report" / "events.jsonl").read_text().splitlines()):
        if event["kind"] in ("fetch", "upload"):
            fetches.setdefault(event["mac"], []).append((event["url"], event["status"], event.get("detail", ""),
                                                         event["t"]))
    return fetches


def same_fetches(tmp_path, slack_s: float) -> dict:
    """The fetches in memory, checked against the run on sockets: the same, in the same
    order, ending within ``slack_s`` of each other."""
    on_sockets, in_memory = fetches_of(tmp_path, "sockets"), fetches_of(tmp_path, "virtual")
    assert {mac: [f[:3] for f in fs] for mac, fs in in_memory.items()} == \
        {mac: [f[:3] for f in fs] for mac, fs in on_sockets.items()}
    for mac, fs in in_memory.items():
        for mine, theirs in zip(fs, on_sockets[mac]):
            assert abs(mine[3] - theirs[3]) < slack_s, (mine, theirs)
    return in_memory


def on_both_clocks(tmp_path, timeline: str, faults: str = "") -> tuple[dict, dict, dict]:
    """MID_EXCHANGE with ``timeline`` (and ``faults`` before its own) run on sockets and in
    memory: (the report on sockets, the report in memory, the fetches in memory), after
    checking that both ended alike, fetch by fetch."""
    text = MID_EXCHANGE.format(dhcp=free_udp_port(), ftp=free_tcp_port(), timeline=timeline)
    text = text.replace("faults:\n", "faults:\n" + faults)
    on_sockets, in_memory = run_on_both_clocks(tmp_path, text)
    assert ending(in_memory) == ending(on_sockets)
    return on_sockets, in_memory, same_fetches(tmp_path, slack_s=0.3)


def test_a_server_stopped_in_the_middle_of_an_exchange_closes_it_as_on_sockets(tmp_path):
    # Each command held 0.5 s: the phones' first download (asked at ~1 s) is 2 s into its
    # exchange when the server stops at 3 s. The socket server's stop closes its control
    # connection; so does the server in memory, and the phone reads the same close. Its
    # retries meet a closed port until the server is back at 6 s.
    on_sockets, in_memory, fetches = on_both_clocks(
        tmp_path, "  - {at: 3, do: {stop_service: ftp}}\n  - {at: 6, do: {start_service: ftp}}\n")
    for events in fetches.values():
        _, status, detail, ended = events[0]
        assert (status, ended) == ("error", pytest.approx(3.0, abs=0.002))
        assert detail.startswith("FTP: the server closed the connection")
        refused = [e for e in events if e[2] == "FTP: connection refused"]
        assert refused and all(3.0 < e[3] < 6.0 for e in refused)  # retried while it was stopped
        assert events[-1][1] == "ok" and events[-1][3] > 6.0
    # The run's logins, both starts' added up, as on sockets.
    assert in_memory["services"]["ftp"]["logins_ok"] == on_sockets["services"]["ftp"]["logins_ok"]


def test_a_delay_window_closing_in_the_middle_of_an_exchange_frees_the_commands_after_it(tmp_path):
    # Each command held 0.5 s until the fault is removed at 2 s: the phones' first download
    # (asked at ~1 s, USER and PASS held) sends its TYPE I after 2 s and is answered at
    # once, as on sockets: the exchange ends at ~2 s, not 2.5 s after it began.
    on_sockets, in_memory, fetches = on_both_clocks(tmp_path, "  - {at: 2, do: {remove_fault: slow}}\n")
    for events in fetches.values():
        _, status, _, ended = events[0]
        assert 2.0 < ended < 2.1
    assert on_sockets["network"]["faults"]["delayed"] == in_memory["network"]["faults"]["delayed"] == 4


def test_down_closes_new_connections_before_the_greeting_as_on_sockets(tmp_path):
    # Down from the start until 2.5 s: each connection the phones open is accepted and
    # closed before the 220 (the session never starts), read by the phone as on sockets.
    on_sockets, in_memory, fetches = on_both_clocks(tmp_path, "  - {at: 2.5, do: {remove_fault: outage}}\n",
                                                    faults="  - {name: outage, service: ftp, down: true}\n")
    for events in fetches.values():
        closed = [e for e in events if e[3] < 2.5]
        assert closed and all(e[1:3] == ("error", "FTP: the server closed the connection (Connection was closed "
                                                  "cleanly.)") for e in closed)
        assert events[-1][1] == "ok"
    assert in_memory["network"]["faults"]["refused"] == on_sockets["network"]["faults"]["refused"] > 0


def test_a_jittered_run_in_memory_replays_byte_for_byte(tmp_path):
    faults = "faults:\n  - {name: jitter, service: ftp, delay_s: 0.05, jitter_s: 0.3}\n"
    port, dhcp = free_tcp_port(), free_udp_port()

    def events(name: str, seed: int) -> bytes:
        text = YEALINK.format(dhcp=dhcp, ftp=port, faults=faults, login="alice:s3cret@", anonymous="false")
        run(tmp_path, name, f"seed: {seed}\n" + text, "--clock", "virtual")
        return (tmp_path / name / "report" / "events.jsonl").read_bytes()

    first = events("first", 11)
    assert b'"kind":"fetch"' in first.replace(b" ", b"")
    assert events("again", 11) == first
    assert events("other-seed", 12) != first

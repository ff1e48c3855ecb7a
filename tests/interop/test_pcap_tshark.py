"""``labsim run --pcap``, read by Wireshark's own dissectors (tshark): the DHCP exchanges
carry the phones' MACs, the HTTP GETs and responses and the TFTP read requests decode,
and nothing is malformed or flagged by TCP analysis. A mixed run (Yealink phones that
find their server by SIP PnP, half of them sent to FTP, and Polycom phones that PUT their
logs) shows FTP control and data connections, the PnP SUBSCRIBE/NOTIFY exchange with the
URL, and the HTTP PUTs, matching events.jsonl's fetch and upload lines."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from urllib.parse import urlsplit

import pytest

from tests.e2e.test_outputs import ROOT, lab_scenario, read_events
from tests.peers import free_tcp_port, free_udp_port, require_binary

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def tshark():
    return require_binary("tshark")


def _run(tmp_path_factory, scheme: str):
    folder = tmp_path_factory.mktemp(f"pcap-{scheme}")
    scenario = folder / "scenario.yaml"
    scenario.write_text(lab_scenario(scheme=scheme, count=4))
    report_dir = folder / "report"
    proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(scenario), "--report-dir", str(report_dir),
                           "--pcap", str(folder / "lab.pcap")], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((report_dir / "report.json").read_text())
    fetches = [e for e in read_events(report_dir) if e["kind"] == "fetch"]
    return str(folder / "lab.pcap"), report, fetches


@pytest.fixture(scope="module")
def http_run(tmp_path_factory):
    return _run(tmp_path_factory, "http")


@pytest.fixture(scope="module")
def tftp_run(tmp_path_factory):
    return _run(tmp_path_factory, "tftp")


def fields(tshark: str, pcap: str, display_filter: str, *names: str,
           decode_as: str | tuple[str, ...] | None = None) -> list[list[str]]:
    args = [tshark, "-r", pcap, "-Y", display_filter, "-T", "fields", "-E", "separator=|"]
    for rule in (decode_as,) if isinstance(decode_as, str) else decode_as or ():
        args += ["-d", rule]
    for name in names:
        args += ["-e", name]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line.split("|") for line in proc.stdout.splitlines() if line]


def test_dhcp_decodes_with_the_phone_macs(tshark, http_run):
    pcap, report, _ = http_run
    macs = {phone["mac"] for phone in report["phones"]}
    rows = fields(tshark, pcap, "bootp", "eth.src", "eth.dst", "dhcp.option.dhcp", "dhcp.hw.mac_addr", "dhcp.id")
    assert rows
    from_phones = [r for r in rows if r[2] in ("1", "3")]  # DISCOVER, REQUEST
    to_phones = [r for r in rows if r[2] in ("2", "5")]  # OFFER, ACK
    assert {r[0] for r in from_phones} == macs
    assert all(r[1] == "ff:ff:ff:ff:ff:ff" for r in from_phones)
    assert {r[1] for r in to_phones} == macs  # unicast to the phone's MAC
    assert all(r[0] == r[3].split(",")[0] for r in from_phones)  # chaddr is the sender
    # Every phone got a lease twice (two boot cycles, a reboot in between): DORA on the
    # first boot, then INIT-REBOOT (REQUEST for the remembered address, ACK; RFC 2131
    # 4.3.2) after the reboot.
    for mac in macs:
        kinds = [r[2] for r in rows if mac in (r[0], r[1])]
        assert kinds.count("5") == 2 and kinds.count("3") >= 2 and kinds.count("1") >= 1


def test_http_gets_and_responses_decode(tshark, http_run):
    pcap, report, fetches = http_run
    port = urlsplit(fetches[0]["url"]).port
    requests = fields(tshark, pcap, "http.request", "eth.src", "http.request.method", "http.request.uri",
                      "http.user_agent", decode_as=f"tcp.port=={port},http")
    assert len(requests) == len(fetches)
    assert {r[1] for r in requests} == {"GET"}
    assert {r[0] for r in requests} == {phone["mac"] for phone in report["phones"]}
    assert sorted(r[2] for r in requests) == sorted(urlsplit(f["url"]).path for f in fetches)
    assert all(r[3].startswith("Yealink") for r in requests)
    responses = fields(tshark, pcap, "http.response", "http.response.code", "http.content_length",
                       decode_as=f"tcp.port=={port},http")
    assert len(responses) == len(fetches)
    codes = sorted(int(r[0]) for r in responses)
    assert codes.count(200) == sum(f["status"] == "ok" for f in fetches)
    assert codes.count(404) == sum(f["status"] == "not_found" for f in fetches)
    ok_sizes = sorted(int(r[1]) for r in responses if r[0] == "200")
    assert ok_sizes == sorted(f["bytes"] for f in fetches if f["status"] == "ok")


def test_nothing_is_malformed_and_tcp_analysis_finds_nothing(tshark, http_run):
    pcap, _, _ = http_run
    flagged = fields(tshark, pcap, "_ws.malformed || tcp.analysis.flags || _ws.expert.severity >= warning",
                     "frame.number", "_ws.expert.message")
    assert flagged == []


def test_tftp_read_requests_decode(tshark, tftp_run):
    pcap, report, fetches = tftp_run
    port = urlsplit(fetches[0]["url"]).port
    decode = f"udp.port=={port},tftp"
    requests = fields(tshark, pcap, "tftp.opcode == 1", "eth.src", "tftp.source_file", "tftp.type",
                      decode_as=decode)
    assert len(requests) == len(fetches)
    assert {r[0] for r in requests} == {phone["mac"] for phone in report["phones"]}
    assert sorted(r[1] for r in requests) == sorted(urlsplit(f["url"]).path.lstrip("/") for f in fetches)
    assert {r[2] for r in requests} == {"octet"}
    assert fields(tshark, pcap, "tftp", "frame.number", decode_as=decode)  # the whole transfers decode too
    data = fields(tshark, pcap, "tftp.opcode == 3", "tftp.block", decode_as=decode)
    assert len(data) >= sum(f["status"] == "ok" for f in fetches)
    errors = fields(tshark, pcap, "tftp.opcode == 5", "tftp.error.code", decode_as=decode)
    assert len(errors) == sum(f["status"] == "not_found" for f in fetches) and {e[0] for e in errors} <= {"1"}
    assert fields(tshark, pcap, "_ws.malformed", "frame.number", decode_as=decode) == []


# --- FTP, SIP PnP and uploads -------------------------------------------------------------


def mixed_scenario(*, count: int = 2) -> tuple[dict[str, int], str]:
    """Yealink phones with no option 66 (PnP tells T46S an HTTP URL, T48S an FTP one with a
    login) and Polycom phones (option 66 by vendor class) that upload their logs."""
    ports = {"dhcp": free_udp_port(), "http": free_tcp_port(), "ftp": free_tcp_port(), "pnp": free_udp_port()}
    return ports, f"""\
name: pcap-ftp-pnp-uploads
time_limit_s: 60
services:
  dhcp:
    port: {ports['dhcp']}
    subnet: 10.32.0.0/16
    pool: {{start: 10.32.0.10, end: 10.32.0.250}}
    options: {{router: 10.32.0.1}}
    classes:
      - {{name: polycom, match: {{vendor_class: {{regex: "Polycom"}}}}, options: {{66: "http://127.0.0.1:{ports['http']}/"}}}}
  http: {{port: {ports['http']}, uploads: true, upload_dir: uploads}}
  ftp:
    port: {ports['ftp']}
    users: {{phone: "s3cret"}}
  pnp:
    port: {ports['pnp']}
    url: "http://127.0.0.1:{ports['http']}/"
    per_model: {{T48S: "ftp://phone:s3cret@127.0.0.1:{ports['ftp']}/"}}
provisioning:
  files:
    y000000000066.cfg: "#!version:1.0.0.1\\n"
    y000000000065.cfg: "#!version:1.0.0.1\\nstatic.network.lldp.enable = 1\\n"
    000000000000.cfg: |
      <?xml version="1.0" standalone="yes"?>
      <APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="site.cfg"
                   LOG_FILE_DIRECTORY="uploads" OVERRIDES_DIRECTORY="uploads"/>
    site.cfg: |
      <polycomConfig><reg reg.1.address="site"/></polycomConfig>
  per_phone:
    - name: "{{mac}}.cfg"
      fleets: [yealink]
      text: "#!version:1.0.0.1\\naccount.1.user_name = {{index}}\\n"
fleets:
  - name: yealink
    vendor: yealink
    models: {{T46S: {count}, T48S: {count}}}
    first_mac: "00:15:65:cc:00:01"
    boot: {{pattern: storm, random_delay_s: 0.3}}
    boot_time_s: 0.1
  - name: vvx
    vendor: polycom
    models: {{VVX400: {count}}}
    first_mac: "00:04:f2:cc:00:01"
    boot: {{pattern: storm, random_delay_s: 0.3}}
    boot_time_s: 0.1
expect:
  - phones.ready == 100%
"""


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pcap-mixed")
    ports, text = mixed_scenario()
    scenario = folder / "scenario.yaml"
    scenario.write_text(text)
    report_dir = folder / "report"
    proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(scenario), "--report-dir", str(report_dir),
                           "--pcap", str(folder / "lab.pcap")], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((report_dir / "report.json").read_text())
    decode = (f"tcp.port=={ports['http']},http", f"tcp.port=={ports['ftp']},ftp")
    return str(folder / "lab.pcap"), report, read_events(report_dir), ports, decode


def _macs(report, model_prefix: str) -> set[str]:
    return {phone["mac"] for phone in report["phones"] if phone["model"].startswith(model_prefix)}


def test_ftp_control_and_data_connections_decode(tshark, mixed_run):
    pcap, report, events, ports, decode = mixed_run
    ftp_fetches = [e for e in events if e["kind"] == "fetch" and e["url"].startswith("ftp://")]
    assert ftp_fetches and {e["mac"] for e in ftp_fetches} == _macs(report, "T48S")
    retrs = fields(tshark, pcap, 'ftp.request.command == "RETR"', "eth.src", "ftp.request.arg", decode_as=decode)
    assert sorted(r[1] for r in retrs) == sorted(urlsplit(e["url"]).path.lstrip("/") for e in ftp_fetches)
    assert {r[0] for r in retrs} == _macs(report, "T48S")
    logins = fields(tshark, pcap, 'ftp.request.command == "USER"', "ftp.request.arg", decode_as=decode)
    assert len(logins) == len(ftp_fetches) and {r[0] for r in logins} == {"phone"}
    # The server's own 550 for each missing file; a 226 for each one sent.
    codes = [int(r[0]) for r in fields(tshark, pcap, "ftp.response", "ftp.response.code", decode_as=decode)]
    assert codes.count(550) == sum(e["status"] == "not_found" for e in ftp_fetches)
    assert codes.count(226) == sum(e["status"] == "ok" for e in ftp_fetches)
    # Wireshark follows each 227 to its data connection and knows which RETR it carries.
    data = fields(tshark, pcap, "ftp-data", "ftp-data.command", "ftp-data.setup-method", "tcp.len", decode_as=decode)
    assert {r[1] for r in data} == {"PASV"}
    carried: dict[str, int] = {}
    for command, _, size in data:
        carried[command] = carried.get(command, 0) + int(size)
    ok = [e for e in ftp_fetches if e["status"] == "ok"]
    assert sorted(carried) == sorted({"RETR " + urlsplit(e["url"]).path.lstrip("/") for e in ok})
    assert sum(carried.values()) == sum(e["bytes"] for e in ok)


def test_sip_pnp_subscribe_and_notify_decode_with_the_url(tshark, mixed_run):
    pcap, report, events, ports, decode = mixed_run
    yealink = _macs(report, "T4")
    subscribes = fields(tshark, pcap, 'sip.Method == "SUBSCRIBE"', "eth.src", "ip.dst", "udp.dstport", "sip.Event")
    assert {r[0] for r in subscribes} == yealink
    assert {(r[1], r[2]) for r in subscribes} == {("224.0.1.75", "5060")}
    assert all(r[3].startswith("ua-profile") for r in subscribes)
    notifies = fields(tshark, pcap, 'sip.Method == "NOTIFY"', "eth.dst", "udp.srcport", "udp.dstport", "udp.payload")
    # A NOTIFY for each PnP answer a phone noted (a phone that rebooted asked again; a
    # responder that retransmits may send more, which the phone no longer answers).
    answers = [e["mac"] for e in events if e["kind"] == "step" and e["detail"].startswith("PnP: ")]
    assert set(answers) == yealink
    notified = Counter(r[0] for r in notifies)
    assert all(notified[mac] >= count for mac, count in Counter(answers).items()) and set(notified) == yealink
    assert {(r[1], r[2]) for r in notifies} == {(str(ports["pnp"]), "5060")}  # from the responder's real port
    urls = {"T46S": f"http://127.0.0.1:{ports['http']}/", "T48S": f"ftp://phone:s3cret@127.0.0.1:{ports['ftp']}/"}
    model_of = {phone["mac"]: phone["model"] for phone in report["phones"]}
    for mac, _, _, payload in notifies:
        assert bytes.fromhex(payload).partition(b"\r\n\r\n")[2].decode() == urls[model_of[mac]]
    answered = fields(tshark, pcap, "sip.Status-Code == 200", "sip.CSeq.method", "eth.src")
    assert sorted(r[1] for r in answered if r[0] == "NOTIFY") == sorted(answers)  # the phones' 200s, one each
    assert sum(r[0] == "SUBSCRIBE" for r in answered) >= len(answers)  # the responder's


def test_uploads_are_http_puts_and_upload_events(tshark, mixed_run):
    pcap, report, events, ports, decode = mixed_run
    uploads = [e for e in events if e["kind"] == "upload"]
    polycom = _macs(report, "VVX")
    assert {e["mac"] for e in uploads} == polycom and all(e["status"] == "ok" for e in uploads)
    assert len(uploads) == 2 * len(polycom)  # the overrides file (none existed) and the app log
    assert all(e["bytes"] > 0 and e["latency_s"] >= 0 for e in uploads)
    puts = fields(tshark, pcap, 'http.request.method == "PUT"', "eth.src", "http.request.uri", "http.content_length",
                  decode_as=decode)
    assert sorted((r[0], r[1], int(r[2])) for r in puts) == sorted(
        (e["mac"], urlsplit(e["url"]).path, e["bytes"]) for e in uploads)
    answers = fields(tshark, pcap, "http.response", "http.response.code", "http.response_for.uri", decode_as=decode)
    put_answers = [r for r in answers if "/uploads/" in r[1] and r[0] == "200"]
    assert len(put_answers) >= len(uploads)  # the 200 of every PUT (the overrides GET before it was a 404)


def test_the_mixed_capture_has_nothing_malformed_or_flagged(tshark, mixed_run):
    pcap, _, _, _, decode = mixed_run
    flagged = fields(tshark, pcap, "_ws.malformed || tcp.analysis.flags || _ws.expert.severity >= warning",
                     "frame.number", "_ws.expert.message", decode_as=decode)
    assert flagged == []


# --- a DNS outage, as Wireshark shows it --------------------------------------------------


@pytest.fixture(scope="module")
def dns_outage_run(tmp_path_factory):
    """Option 66 names the server by host name; the lab's DNS is down for the first 4 s."""
    from tests.e2e.test_faults_dns_pnp_ftp import dns_outage_scenario
    from tests.e2e.test_run_scenarios import run_labsim

    folder = tmp_path_factory.mktemp("pcap-dns")
    proc, report = run_labsim(folder, dns_outage_scenario(3), "--pcap", str(folder / "lab.pcap"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return str(folder / "lab.pcap"), report, [e for e in read_events(folder / "report") if e["kind"] == "fetch"]


def test_a_dns_outage_shows_as_unanswered_queries_and_no_connection_until_the_name_resolves(tshark, dns_outage_run):
    """What a trainer opens in Wireshark: the resolver's queries for the name, unanswered
    while the DNS is down, then the answer, and only then TCP to the address it gave. A
    download whose name did not resolve never left the phone, so it has no frames (it
    used to show a connection to 127.0.0.1 that the server reset 3 s later)."""
    pcap, report, fetches = dns_outage_run
    dns = fields(tshark, pcap, "dns", "frame.time_epoch", "dns.flags.response", "dns.qry.name", "dns.a", "eth.src",
                 "udp.srcport", "udp.dstport", "dns.id")
    queries = [row for row in dns if row[1] == "0"]
    answers = [row for row in dns if row[1] == "1"]
    assert {row[2] for row in dns} == {"prov.lab.example"}
    assert {row[4] for row in queries} == {"02:6c:61:62:00:02"} and {row[6] for row in queries} == {"53"}
    assert len({row[5] for row in queries}) == 1  # the fleet's one resolver socket
    faults, served = report["network"]["faults"], report["services"]["dns"]["queries"]
    assert len(queries) == faults["dropped"] + served >= 4  # a lost lookup is three tries, then another lookup
    assert len(answers) == served >= 1 and {row[3] for row in answers} == {"127.0.0.1"}
    first_answer = min(float(row[0]) for row in answers)
    assert sum(float(row[0]) < first_answer for row in queries) >= 3  # unanswered while down
    tcp = fields(tshark, pcap, "tcp", "frame.time_epoch", "ip.dst", "ip.src")
    assert tcp and min(float(row[0]) for row in tcp) >= first_answer
    assert all("127.0.0.1" in (row[1], row[2]) for row in tcp)
    port = urlsplit(fetches[0]["url"]).port
    requests = fields(tshark, pcap, "http.request", "http.request.uri", decode_as=f"tcp.port=={port},http")
    unresolved = [f for f in fetches if f["status"] == "dns"]
    assert unresolved and len(unresolved) == report["network"]["dns_failures"]
    assert sorted(r[0] for r in requests) == sorted(urlsplit(f["url"]).path for f in fetches if f["status"] != "dns")
    flagged = fields(tshark, pcap, "_ws.malformed || tcp.analysis.flags || _ws.expert.severity >= warning",
                     "frame.number", "_ws.expert.message")
    # Wireshark marks a query sent again with the same ID, which is what the resolver's
    # tries are; nothing else is flagged.
    retried = [row for row in flagged if row[1].startswith("DNS query retransmission")]
    assert [row for row in flagged if row not in retried] == []
    assert len(retried) == len(queries) - len({row[7] for row in queries}) > 0

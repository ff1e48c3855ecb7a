"""``labsim run --pcap``, read by Wireshark's own dissectors (tshark): the DHCP exchanges
carry the phones' MACs, the HTTP GETs and responses and the TFTP read requests decode,
and nothing is malformed or flagged by TCP analysis."""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from tests.e2e.test_outputs import ROOT, lab_scenario, read_events
from tests.peers import require_binary

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


def fields(tshark: str, pcap: str, display_filter: str, *names: str, decode_as: str | None = None) -> list[list[str]]:
    args = [tshark, "-r", pcap, "-Y", display_filter, "-T", "fields", "-E", "separator=|"]
    if decode_as:
        args += ["-d", decode_as]
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
    # Every phone completed DORA twice (two boot cycles, a reboot in between).
    for mac in macs:
        kinds = [r[2] for r in rows if mac in (r[0], r[1])]
        assert kinds.count("5") == 2 and kinds.count("1") >= 2


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

"""Log injection: whatever a client sends — a TFTP file name, an FTP user name and path, an
HTTP path, a DNS name — reaches ``labsim serve``'s live log escaped by the one shared rule
(``labsim.observe.log_text.client_text``): no control character, no newline, so no forged
line and no terminal escape; the same rule writes events.jsonl and report.html."""

from __future__ import annotations

import socket
import struct
from types import SimpleNamespace

import pytest
from hypothesis import given, strategies as st

from labsim.observe.events_log import row_to_json
from labsim.observe.html_report import build_html
from labsim.observe.log_text import client_text
from labsim.observe.report import _phone_entry
from labsim.phones import yealink
from tests.phonelab import PhoneLab
from tests.unit.test_html_report import report
from tests.peers import free_port_udp_and_tcp, free_tcp_port, free_udp_port
from tests.serve_process import labsim_serve

pytestmark = pytest.mark.e2e

FORGED = "12:00:00 tftp RRQ forged.cfg from 10.9.9.9:69: sending 42 bytes"
HOSTILE = "x\n" + FORGED + "\x1b[2J\x07\r\u2028\u202e"


def test_client_text_escapes_every_unprintable_character_visibly():
    assert client_text("y000000000066.cfg") == "y000000000066.cfg"
    assert client_text("a\nb\x1b[2J") == "a\\x0ab\\x1b[2J"
    assert client_text(b"caf\xc3\xa9 \xff\x00") == "café \\xff\\x00"
    assert client_text("\u2028\u202e") == "\\u2028\\u202e"
    assert client_text("z" * 300) == "z" * 197 + "..."


@given(st.one_of(st.text(), st.binary()))
def test_client_text_never_lets_a_control_character_through(value):
    text = client_text(value, limit=10_000)
    assert text.isprintable()


def test_serve_live_log_escapes_tftp_ftp_http_and_dns_client_strings(tmp_path):
    tftp_port, http_port, ftp_port, dns_port = free_udp_port(), free_tcp_port(), free_tcp_port(), free_port_udp_and_tcp()
    scenario = tmp_path / "serve.yaml"
    scenario.write_text(f"""\
name: log-injection
services:
  dhcp: {{port: {free_udp_port()}}}
  tftp: {{port: {tftp_port}}}
  http: {{port: {http_port}}}
  ftp: {{port: {ftp_port}, users: {{phone: s3cret}}}}
  dns: {{port: {dns_port}, records: [{{name: prov.lab, type: A, value: 127.0.0.1}}]}}
provisioning:
  files: {{a.cfg: "x"}}
fleets:
  - {{vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}}
""")
    with labsim_serve(str(scenario), str(tmp_path / "report")) as serve:
        serve.wait_for("Ctrl-C to stop")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(2)
            # TFTP RRQ whose name carries a newline, a forged line and escape sequences.
            udp.sendto(b"\x00\x01" + HOSTILE.encode() + b"\x00octet\x00", ("127.0.0.1", tftp_port))
            udp.recvfrom(600)  # the ERROR (file not found): the request was handled
            # A DNS question whose label holds a newline and ESC.
            label = b"evil\n\x1b[31m"
            query = struct.pack("!6H", 0x1234, 0x0100, 1, 0, 0, 0) + bytes([len(label)]) + label + b"\x03lab\x00" \
                + struct.pack("!2H", 1, 1)
            udp.sendto(query, ("127.0.0.1", dns_port))
            udp.recvfrom(600)
        with socket.create_connection(("127.0.0.1", ftp_port), timeout=5) as ftp:
            ftp.recv(200)
            ftp.sendall(b"USER ev\x1b[2Jil\rx\r\n")
            ftp.recv(200)
            ftp.sendall(b"PASS wrong\r\n")
            ftp.recv(200)
        for path in (b"/a\x1b[2J.cfg", b"/a%0a%1b[2J.cfg"):  # raw: twisted.web answers 400 and logs nothing
            with socket.create_connection(("127.0.0.1", http_port), timeout=5) as http:
                http.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                http.recv(2000)
        serve.wait_for("ftp login")
        serve.wait_for("dns A evil")
        serve.wait_for("http GET")
        serve.stop()
    log = "\n".join(serve.lines)
    assert all(line.isprintable() for line in serve.lines), [line for line in serve.lines if not line.isprintable()]
    assert not any(line.startswith("12:00:00 tftp RRQ forged") for line in serve.lines)
    tftp_line = next(line for line in serve.lines if " tftp RRQ " in line)
    assert "x\\x0a12:00:00 tftp RRQ forged.cfg" in tftp_line and "\\x1b[2J\\x07\\x0d\\u2028\\u202e" in tftp_line
    assert "ftp login ev\\x1b[2Jil\\x0dx from" in log
    assert "dns A evil\\" in log
    assert "http GET /a%0a%1b[2J.cfg 404 from 127.0.0.1" in log


def test_events_jsonl_and_report_html_use_the_same_rule(tmp_path):
    row = (1.0, "00:15:65:00:00:01", "fetch", "tftp://127.0.0.1/" + HOSTILE, "error", 0, 0.1, "server said: " + HOSTILE, "")
    data = row_to_json(row)
    assert data["url"] == "tftp://127.0.0.1/" + client_text(HOSTILE, 2000)
    assert data["detail"] == "server said: " + client_text(HOSTILE, 2000)
    assert all(value.isprintable() for value in data.values() if isinstance(value, str))
    # A phone whose timeline and failure hold a server's hostile text: report.json's entry
    # and the report.html page written from it carry the escaped text only.
    lab = PhoneLab(yealink, model="T46S", mac="00:15:65:00:00:01", options={66: b"http://127.0.0.1:8080/"}, files={})
    lab.phone.note("server said: " + HOSTILE)
    lab.phone.failure = HOSTILE
    entry = _phone_entry(SimpleNamespace(phone=lab.phone, vendor="yealink", fleet="desk"))
    assert entry["failure"] == client_text(HOSTILE, 2000)
    assert entry["events"][-1]["detail"] == "server said: " + client_text(HOSTILE, 2000)
    page = build_html(report([entry]))
    assert "\x1b" not in page and "\u2028" not in page and "\u202e" not in page
    assert "x\\\\x0a12:00:00 tftp RRQ forged.cfg" in page  # JSON inside the page doubles the backslash

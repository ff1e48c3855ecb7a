"""``labsim serve``'s live log names FTP logins and transfers and DNS answers, as it does
DHCP exchanges and files served over TFTP and HTTP: a trainer watching it sees a phone
log in, fetch its file, and resolve (or fail to resolve) the provisioning host."""

from __future__ import annotations

import ftplib
import socket

import pytest
from dnslib import QTYPE, DNSRecord

from labsim.observe.live_log import format_dns, format_ftp
from labsim.wire.dns_records import DnsAnswerer, DnsRecordConfig, Zone
from tests.peers import free_port_udp_and_tcp, free_tcp_port, free_udp_port
from tests.serve_process import labsim_serve

pytestmark = pytest.mark.e2e

CONFIG = "#!version:1.0.0.1\naccount.1.enable = 1\n"


def test_format_ftp_lines():
    assert format_ftp("login", ("127.0.0.1", 4000), {"user": "phone", "ok": True}) == \
        "ftp login phone from 127.0.0.1:4000: ok"
    assert format_ftp("login", ("127.0.0.1", 4000), {"user": "x", "ok": False}) == \
        "ftp login x from 127.0.0.1:4000: refused"
    retr = {"command": "RETR", "path": "/a.cfg", "bytes": 210, "completed": True, "seconds": 0.0012}
    assert format_ftp("transfer", ("127.0.0.1", 4000), retr) == "ftp RETR /a.cfg to 127.0.0.1:4000: 210 bytes in 0.001 s"
    stor = dict(retr, command="STOR", completed=False, bytes=5)
    assert format_ftp("transfer", ("127.0.0.1", 4000), stor) == "ftp STOR /a.cfg from 127.0.0.1:4000: incomplete after 5 bytes"


def test_format_dns_lines_from_real_answers():
    zone = Zone([DnsRecordConfig("prov.lab", "A", f"127.0.0.{i}", 60) for i in range(1, 7)])
    answerer = DnsAnswerer(zone)
    query = bytes(DNSRecord.question("prov.lab", "A").pack())
    reply = answerer.handle(query)
    assert format_dns(query, reply, False) == \
        "dns A prov.lab (udp): 127.0.0.1, 127.0.0.2, 127.0.0.3, 127.0.0.4 and 2 more"
    missing = bytes(DNSRecord.question("nowhere.lab", "A").pack())
    assert format_dns(missing, answerer.handle(missing, over_tcp=True), True) == "dns A nowhere.lab (tcp): NXDOMAIN"


def test_serve_logs_ftp_logins_transfers_and_dns_answers(tmp_path):
    ftp_port, dns_port = free_tcp_port(), free_port_udp_and_tcp()
    scenario = tmp_path / "serve.yaml"
    scenario.write_text(f"""\
name: live-log
services:
  dhcp: {{port: {free_udp_port()}}}
  ftp: {{port: {ftp_port}, users: {{phone: s3cret}}}}
  dns:
    port: {dns_port}
    records:
      - {{name: prov.lab, type: A, value: 127.0.0.1}}
provisioning:
  files:
    y000000000066.cfg: "{CONFIG.encode('unicode_escape').decode()}"
fleets:
  - {{vendor: yealink, model: T46S, count: 1, first_mac: "00:15:65:00:00:01"}}
""")
    with labsim_serve(str(scenario), str(tmp_path / "r")) as serve:
        serve.wait_for("labsim serve:")
        with ftplib.FTP() as ftp:
            ftp.connect("127.0.0.1", ftp_port, timeout=5)
            with pytest.raises(ftplib.error_perm):
                ftp.login("phone", "wrong")
        with ftplib.FTP() as ftp:
            ftp.connect("127.0.0.1", ftp_port, timeout=5)
            ftp.login("phone", "s3cret")
            got = bytearray()
            ftp.retrbinary("RETR y000000000066.cfg", got.extend)
        assert got.decode() == CONFIG
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as resolver:
            resolver.settimeout(5)
            resolver.sendto(DNSRecord.question("prov.lab", "A").pack(), ("127.0.0.1", dns_port))
            answer = DNSRecord.parse(resolver.recv(512))
        assert [str(rr.rdata) for rr in answer.rr if rr.rtype == QTYPE.A] == ["127.0.0.1"]

        assert serve.wait_for("ftp login phone from 127.0.0.1:").endswith(": refused")
        retr = serve.wait_for("ftp RETR")
        assert "/y000000000066.cfg to 127.0.0.1:" in retr and f": {len(CONFIG)} bytes in " in retr
        logins = [line.rsplit(": ", 1)[1] for line in serve.lines if "ftp login phone from" in line]
        assert logins == ["refused", "ok"], serve.lines
        assert serve.wait_for("dns A prov.lab").endswith("dns A prov.lab (udp): 127.0.0.1")
        assert serve.stop() == 0, serve.stderr

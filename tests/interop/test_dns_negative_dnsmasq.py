"""A Yealink phone keeps a negative DNS answer as RFC 2308 lets it (Yealink's guide: "Support
for negative caching of DNS queries as described in RFC 2308"), against dnsmasq: with
dnsmasq authoritative for the zone, its NXDOMAIN carries the zone's SOA, and each phone
asks once for a misspelt host however many downloads it tries; with dnsmasq's bare
NXDOMAIN (no SOA: not to be kept), every download asks again."""

import json
import re
import subprocess
import sys

import pytest

from tests.interop.realservers import dnsmasq_dns
from tests.peers import free_port_udp_and_tcp, free_tcp_port, free_udp_port

pytestmark = pytest.mark.interop

PHONES = 4


@pytest.mark.parametrize("authoritative", [True, False], ids=["soa", "bare-nxdomain"])
def test_yealink_phones_keep_dnsmasqs_nxdomain_only_when_it_carries_the_soa(tmp_path, authoritative):
    dns_port, http_port = free_port_udp_and_tcp(), free_tcp_port()
    log = tmp_path / "dnsmasq.log"
    (tmp_path / "lab.yaml").write_text(f"""\
name: dnsmasq-negative
time_limit_s: 60
services:
  dhcp: {{port: {free_udp_port()}, options: {{66: "http://prvo.lab:{http_port}/", 6: "127.0.0.1"}}}}
  http: {{port: {http_port}}}
network: {{dns_server: "127.0.0.1:{dns_port}"}}
fleets:
  - {{vendor: yealink, model: T46S, count: {PHONES}, first_mac: "00:15:65:d8:00:01", boot_time_s: 0.2}}
expect:
  - phones.failed == 100%
""")
    with dnsmasq_dns(tmp_path, port=dns_port, addresses={"prov.lab": "127.0.0.1"}, local_ttl=600, log=str(log),
                     zone="lab", authoritative=authoritative):
        proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(tmp_path / "lab.yaml"),
                               "--report-dir", str(tmp_path / "r")], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    lookups = report["network"]["dns_lookups"]
    asked = re.findall(r"(?:query|auth)\[A\] prvo\.lab from 127\.0\.0\.1", log.read_text())
    answered = re.findall(r"(?:config|auth) prvo\.lab is NXDOMAIN", log.read_text())
    # Each phone tries its boot files, Common CFG and MAC CFG (three times each): 8 lookups.
    assert lookups["lookups"] == PHONES * 8 and lookups["failures"] == PHONES * 8
    assert len(answered) == len(asked)  # dnsmasq said NXDOMAIN to every question
    if authoritative:
        assert len(asked) == lookups["queries"] == PHONES  # one a phone: the rest from its cache
        assert lookups["cache_hits"] == PHONES * 7
        assert "no such name (NXDOMAIN)" in proc.stdout and "RFC 2308" in proc.stdout
    else:
        assert len(asked) == lookups["queries"] == PHONES * 8 and lookups["cache_hits"] == 0

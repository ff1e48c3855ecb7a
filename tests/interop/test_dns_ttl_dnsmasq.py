"""Each labsim phone looks its provisioning server's name up for itself and keeps the
answer for the record's TTL, as real phones do, so a real DNS server sees the load a
fleet puts on it. Against dnsmasq (its log counts every query): with a TTL of 600 s a
phone asks once a boot and its four downloads of a pass share the answer; with TTL 0,
dnsmasq's default for its own records, every download asks again."""

import json
import re
import subprocess
import sys

import pytest

from tests.interop.realservers import dnsmasq_dns
from tests.peers import free_port_udp_and_tcp, free_tcp_port, free_udp_port

pytestmark = pytest.mark.interop

PHONES = 4


@pytest.mark.parametrize("ttl", [600, 0])
def test_phones_ask_dnsmasq_once_a_boot_or_at_every_download_as_its_ttl_says(tmp_path, ttl):
    dns_port, http_port = free_port_udp_and_tcp(), free_tcp_port()
    log = tmp_path / "dnsmasq.log"
    (tmp_path / "lab.yaml").write_text(f"""\
name: dnsmasq-ttl
time_limit_s: 60
services:
  dhcp: {{port: {free_udp_port()}, options: {{66: "http://prov.lab:{http_port}/", 6: "127.0.0.1"}}}}
  http: {{port: {http_port}}}
network: {{dns_server: "127.0.0.1:{dns_port}"}}
provisioning:
  files:
    y000000000066.cfg: "#!version:1.0.0.1\\nstatic.network.lldp.enable = 1\\n"
  per_phone: [{{name: "{{mac}}.cfg", text: "#!version:1.0.0.1\\naccount.1.user_name = {{index}}\\n"}}]
fleets:
  - {{vendor: yealink, model: T46S, count: {PHONES}, first_mac: "00:15:65:d7:00:01", boot_time_s: 0.2}}
expect:
  - phones.ready == 100%
  - phone.reboots == 1
""")
    with dnsmasq_dns(tmp_path, port=dns_port, addresses={"prov.lab": "127.0.0.1"}, local_ttl=ttl, log=str(log)):
        proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(tmp_path / "lab.yaml"),
                               "--report-dir", str(tmp_path / "r")], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    [(server, line)] = [(s, v) for s, v in report["summary"]["servers"].items() if s.startswith("http://")]
    downloads = line["requests"]
    assert downloads == PHONES * 2 * 4  # two passes (one reboot), four files each
    queries = len(re.findall(r"query\[A\] prov\.lab from 127\.0\.0\.1", log.read_text()))
    if ttl:
        assert queries == PHONES * 2  # once a boot: the answer is RAM, kept for 600 s
    else:
        assert queries == downloads  # nothing kept: every download asked

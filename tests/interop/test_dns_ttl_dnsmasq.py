"""Each labsim phone looks its provisioning server's name up for itself and keeps the
answer as long as the DNS lets it, as real phones do, so a real DNS server sees the load
a fleet puts on it. Against dnsmasq (its log counts every query):

* an address: with a TTL of 600 s a phone asks once a boot and its four downloads of a
  pass share the answer; with TTL 0, dnsmasq's default for its own records, every
  download asks again;
* a misspelt name: a Yealink keeps the negative answer as RFC 2308 lets it (its guide:
  "Support for negative caching of DNS queries as described in RFC 2308"). With dnsmasq
  authoritative for the zone, its NXDOMAIN carries the zone's SOA, and each phone asks
  once however many downloads it tries; dnsmasq's bare NXDOMAIN (no SOA: not to be
  kept) is asked for again at every download."""

import json
import re
import subprocess
import sys

import pytest

from tests.interop.realservers import dnsmasq_dns
from tests.peers import free_port_udp_and_tcp, free_tcp_port, free_udp_port

pytestmark = pytest.mark.interop

PHONES = 4
FILES = """\
provisioning:
  files:
    y000000000066.cfg: "#!version:1.0.0.1\\nstatic.network.lldp.enable = 1\\n"
  per_phone: [{name: "{mac}.cfg", text: "#!version:1.0.0.1\\naccount.1.user_name = {index}\\n"}]
"""


def run_against_dnsmasq(tmp_path, host: str, expect: tuple[str, ...], **dnsmasq) -> tuple[dict, str, str]:
    """PHONES Yealink phones told (option 66) to provision from ``host``, resolving it with
    dnsmasq (``dnsmasq``: ``dnsmasq_dns``'s options), prov.lab its one name: the run's
    report, its summary and dnsmasq's log."""
    dns_port, http_port = free_port_udp_and_tcp(), free_tcp_port()
    log = tmp_path / "dnsmasq.log"
    checks = "".join(f"  - {check}\n" for check in expect)
    (tmp_path / "lab.yaml").write_text(f"""\
name: dnsmasq-cache
time_limit_s: 60
services:
  dhcp: {{port: {free_udp_port()}, options: {{66: "http://{host}:{http_port}/", 6: "127.0.0.1"}}}}
  http: {{port: {http_port}}}
network: {{dns_server: "127.0.0.1:{dns_port}"}}
{FILES}fleets:
  - {{vendor: yealink, model: T46S, count: {PHONES}, first_mac: "00:15:65:d7:00:01", boot_time_s: 0.2}}
expect:
{checks}""")
    with dnsmasq_dns(tmp_path, port=dns_port, addresses={"prov.lab": "127.0.0.1"}, log=str(log), **dnsmasq):
        proc = subprocess.run([sys.executable, "-m", "labsim", "run", str(tmp_path / "lab.yaml"),
                               "--report-dir", str(tmp_path / "r")], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((tmp_path / "r" / "report.json").read_text()), proc.stdout, log.read_text()


@pytest.mark.parametrize("ttl", [600, 0])
def test_phones_ask_dnsmasq_once_a_boot_or_at_every_download_as_its_ttl_says(tmp_path, ttl):
    report, _, log = run_against_dnsmasq(tmp_path, "prov.lab", ("phones.ready == 100%", "phone.reboots == 1"),
                                         local_ttl=ttl)  # the run passes only with these
    [(server, line)] = [(s, v) for s, v in report["summary"]["servers"].items() if s.startswith("http://")]
    downloads = line["requests"]
    assert downloads == PHONES * 2 * 4  # two passes (one reboot), four files each
    queries = len(re.findall(r"query\[A\] prov\.lab from 127\.0\.0\.1", log))
    if ttl:
        assert queries == PHONES * 2  # once a boot: the answer is RAM, kept for 600 s
    else:
        assert queries == downloads  # nothing kept: every download asked


@pytest.mark.parametrize("authoritative", [True, False], ids=["soa", "bare-nxdomain"])
def test_yealink_phones_keep_dnsmasqs_nxdomain_only_when_it_carries_the_soa(tmp_path, authoritative):
    report, summary, log = run_against_dnsmasq(tmp_path, "prvo.lab", ("phones.failed == 100%",), local_ttl=600,
                                               zone="lab", authoritative=authoritative)
    lookups = report["network"]["dns_lookups"]
    asked = re.findall(r"(?:query|auth)\[A\] prvo\.lab from 127\.0\.0\.1", log)
    answered = re.findall(r"(?:config|auth) prvo\.lab is NXDOMAIN", log)
    # Each phone tries its boot files, Common CFG and MAC CFG (three times each): 8 lookups.
    assert lookups["lookups"] == PHONES * 8 and lookups["failures"] == PHONES * 8
    assert len(answered) == len(asked)  # dnsmasq said NXDOMAIN to every question
    if authoritative:
        assert len(asked) == lookups["queries"] == PHONES  # one a phone: the rest from its cache
        assert lookups["cache_hits"] == PHONES * 7
        assert "no such name (NXDOMAIN)" in summary and "RFC 2308" in summary
    else:
        assert len(asked) == lookups["queries"] == PHONES * 8 and lookups["cache_hits"] == 0

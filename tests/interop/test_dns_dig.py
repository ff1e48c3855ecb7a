"""dig, a real DNS client, against labsim's DNS server run as its own process."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.interop.realservers import labsim_service
from tests.peers import require_binary

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
ZONE = """
; the records a provisioning lab hands phones
prov.lab.            A      127.0.0.10
prov.lab.       60   A      127.0.0.11
prov.lab.            AAAA   2001:db8::10
www.lab.             CNAME  alias.lab.
alias.lab.           CNAME  prov.lab.
_http._tcp.lab.      SRV    10 5 8080 prov.lab.
prov.lab.            TXT    "labsim provisioning"
"""


@pytest.fixture(scope="module")
def dns_port(tmp_path_factory):
    """``python -m labsim.services.dns --port 0``, shared by this module; always stopped."""
    zone = tmp_path_factory.mktemp("dns") / "lab.zone"
    zone.write_text(ZONE)
    with labsim_service("dns", "--zone", str(zone), "--port", "0", listening=r"127\.0\.0\.1:(\d+)") as port:
        yield int(port)


def dig(port: int, name: str, qtype: str) -> tuple[str, list[tuple[str, int, str, str]]]:
    """(status, answer records as (name, ttl, type, data)) from dig's text output."""
    binary = require_binary("dig")
    out = subprocess.run(
        [binary, "@127.0.0.1", "-p", str(port), name, qtype, "+tries=1", "+time=3", "+nocookie"],
        capture_output=True,
        text=True,
        timeout=20,
    ).stdout
    status = re.search(r"status: (\w+)", out)
    assert status, out
    answers = []
    section = re.search(r";; ANSWER SECTION:\n(.*?)(?:\n\n|\Z)", out, re.S)
    for line in section.group(1).splitlines() if section else []:
        rname, ttl, _cls, rtype, data = line.split(None, 4)
        answers.append((rname, int(ttl), rtype, data))
    return status.group(1), answers


def test_a_with_ttls(dns_port):
    status, answers = dig(dns_port, "prov.lab", "A")
    assert status == "NOERROR"
    assert sorted(answers) == [("prov.lab.", 60, "A", "127.0.0.11"), ("prov.lab.", 300, "A", "127.0.0.10")]


def test_aaaa(dns_port):
    # asked in upper case: found all the same (owner names come back as the zone spells them)
    assert dig(dns_port, "PROV.lab", "AAAA") == ("NOERROR", [("prov.lab.", 300, "AAAA", "2001:db8::10")])


def test_cname_chain(dns_port):
    status, answers = dig(dns_port, "www.lab", "A")
    assert status == "NOERROR"
    assert [(n, t, d) for n, _, t, d in answers] == [
        ("www.lab.", "CNAME", "alias.lab."),
        ("alias.lab.", "CNAME", "prov.lab."),
        ("prov.lab.", "A", "127.0.0.10"),
        ("prov.lab.", "A", "127.0.0.11"),
    ]


def test_srv_and_txt(dns_port):
    assert dig(dns_port, "_http._tcp.lab", "SRV") == (
        "NOERROR",
        [("_http._tcp.lab.", 300, "SRV", "10 5 8080 prov.lab.")],
    )
    assert dig(dns_port, "prov.lab", "TXT") == ("NOERROR", [("prov.lab.", 300, "TXT", '"labsim provisioning"')])


def test_nxdomain(dns_port):
    assert dig(dns_port, "nothere.lab", "A") == ("NXDOMAIN", [])

"""dig, a real DNS client, against labsim's DNS server run as its own process: over UDP,
over TCP, and the UDP-truncated-then-TCP retry a real resolver does (RFC 7766)."""

from __future__ import annotations

import re
import socket
import struct
import subprocess
from pathlib import Path

import pytest
from dnslib import DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

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
lab.            3600 SOA    ns.lab. hostmaster.lab. 2026120701 3600 600 86400 90
"""
# Answers too large for UDP (dig asks with EDNS 1232): ~6.5 KB of TXT, ~3.2 KB of A records.
BIG_TXT = 30
MANY_A = 200
ZONE += "".join(f'big.lab.  TXT  "{i:03d}{"x" * 200}"\n' for i in range(BIG_TXT))
ZONE += "".join(f"many.lab.  A  127.1.{i // 250}.{i % 250 + 1}\n" for i in range(MANY_A))


@pytest.fixture(scope="module")
def dns_port(tmp_path_factory):
    """``python -m labsim.services.dns_net --port 0``, shared by this module; always stopped."""
    zone = tmp_path_factory.mktemp("dns") / "lab.zone"
    zone.write_text(ZONE)
    with labsim_service("dns_net", "--zone", str(zone), "--port", "0", listening=r"127\.0\.0\.1:(\d+)") as port:
        yield int(port)


def dig_output(port: int, name: str, qtype: str, *options: str) -> str:
    binary = require_binary("dig")
    return subprocess.run(
        [binary, "@127.0.0.1", "-p", str(port), name, qtype, "+tries=1", "+time=3", "+nocookie", *options],
        capture_output=True,
        text=True,
        timeout=20,
    ).stdout


def parse_dig(out: str) -> tuple[str, set[str], list[tuple[str, int, str, str]]]:
    """(status, header flags, answer records as (name, ttl, type, data)) from dig's text output."""
    status = re.search(r"status: (\w+)", out)
    flags = re.search(r";; flags: ([a-z ]*);", out)
    assert status and flags, out
    answers = []
    section = re.search(r";; ANSWER SECTION:\n(.*?)(?:\n\n|\Z)", out, re.S)
    for line in section.group(1).splitlines() if section else []:
        rname, ttl, _cls, rtype, data = line.split(None, 4)
        answers.append((rname, int(ttl), rtype, data))
    return status.group(1), set(flags.group(1).split()), answers


def dig(port: int, name: str, qtype: str, *options: str) -> tuple[str, list[tuple[str, int, str, str]]]:
    """(status, answer records) from dig."""
    status, _flags, answers = parse_dig(dig_output(port, name, qtype, *options))
    return status, answers


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


def authority(out: str) -> list[str]:
    section = re.search(r";; AUTHORITY SECTION:\n(.*?)(?:\n\n|\Z)", out, re.S)
    return [" ".join(line.split()) for line in section.group(1).splitlines()] if section else []


@pytest.mark.parametrize("name, qtype, status", [("nothere.lab", "A", "NXDOMAIN"), ("_http._tcp.lab", "A", "NOERROR"),
                                                 ("prov.lab", "MX", "NOERROR")])
def test_a_negative_answer_carries_the_zones_soa_for_negative_caching(dns_port, name, qtype, status):
    """RFC 2308: dig sees the zone's SOA in the authority section of a negative answer,
    its TTL the smaller of the SOA's (3600) and its MINIMUM (90)."""
    out = dig_output(dns_port, name, qtype)
    assert parse_dig(out)[0] == status and parse_dig(out)[2] == []
    assert authority(out) == ["lab. 90 IN SOA ns.lab. hostmaster.lab. 2026120701 3600 600 86400 90"]
    assert authority(dig_output(dns_port, "prov.lab", "A")) == []  # an answer carries none


# --- TCP ---------------------------------------------------------------------------------


def test_a_and_srv_over_tcp(dns_port):
    out = dig_output(dns_port, "prov.lab", "A", "+tcp")
    assert "(TCP)" in out, out  # dig's footer names the transport: ";; SERVER: 127.0.0.1#PORT(127.0.0.1) (TCP)"
    status, _flags, answers = parse_dig(out)
    assert status == "NOERROR"
    assert sorted(answers) == [("prov.lab.", 60, "A", "127.0.0.11"), ("prov.lab.", 300, "A", "127.0.0.10")]
    assert dig(dns_port, "_http._tcp.lab", "SRV", "+tcp") == (
        "NOERROR",
        [("_http._tcp.lab.", 300, "SRV", "10 5 8080 prov.lab.")],
    )


@pytest.mark.parametrize("name, qtype, count", [("big.lab", "TXT", BIG_TXT), ("many.lab", "A", MANY_A)])
def test_too_large_for_udp_dig_retries_over_tcp(dns_port, name, qtype, count):
    out = dig_output(dns_port, name, qtype)
    # dig asked over UDP, saw TC and asked again over TCP, as a resolver does
    assert "Truncated, retrying in TCP mode" in out, out
    status, flags, answers = parse_dig(out)
    assert status == "NOERROR" and "tc" not in flags
    assert len(answers) == count and {rtype for _, _, rtype, _ in answers} == {qtype}
    if qtype == "TXT":
        assert sorted(data[1:4] for *_, data in answers) == [f"{i:03d}" for i in range(count)]


@pytest.mark.parametrize("name, qtype, count", [("big.lab", "TXT", BIG_TXT), ("many.lab", "A", MANY_A)])
def test_too_large_for_udp_shows_tc_when_dig_keeps_it(dns_port, name, qtype, count):
    for options, limit in [((), 1232), (("+noedns",), 512)]:
        out = dig_output(dns_port, name, qtype, "+ignore", "+notcp", *options)
        status, flags, answers = parse_dig(out)
        assert status == "NOERROR" and "tc" in flags, out
        assert 0 < len(answers) < count  # what fits, whole records only
        size = re.search(r"MSG SIZE\s+rcvd: (\d+)", out)
        assert size and int(size.group(1)) <= limit, out


# --- fuzz over TCP -------------------------------------------------------------------------


def _frame(message: bytes) -> bytes:
    return struct.pack("!H", len(message)) + message


def _tcp_query(port: int, name: str, qid: int) -> DNSRecord:
    query = DNSRecord.question(name, "A")
    query.header.id = qid
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(_frame(bytes(query.pack())))
        data = b""
        while len(data) < 2 or len(data) < 2 + struct.unpack("!H", data[:2])[0]:
            chunk = s.recv(65536)
            assert chunk, f"server closed after {len(data)} bytes"
            data += chunk
    return DNSRecord.parse(data[2:])


GOOD = bytes(DNSRecord.question("prov.lab", "A").pack())
stream_junk = st.one_of(
    st.binary(max_size=300),  # anything at all
    st.integers(1, len(GOOD) + 1).map(lambda cut: _frame(GOOD)[:cut]),  # a query cut short, prefix included
    st.tuples(st.integers(0, 65535), st.binary(max_size=64)).map(lambda t: struct.pack("!H", t[0]) + t[1]),
    st.binary(min_size=1, max_size=40).map(lambda junk: _frame(GOOD) + _frame(junk)),  # good, then garbage
)


@settings(max_examples=150, deadline=None)
@given(junk=stream_junk, half_close=st.booleans(), qid=st.integers(0, 65535))
def test_fuzz_tcp_stream_never_stops_the_server(dns_port, junk, half_close, qid):
    with socket.create_connection(("127.0.0.1", dns_port), timeout=3) as s:
        s.sendall(junk)
        if half_close:
            s.shutdown(socket.SHUT_WR)  # EOF in the middle of whatever we sent
            s.settimeout(3)
            try:
                while s.recv(65536):  # the server answers what it can, then closes
                    pass
            except ConnectionResetError:
                pass
    # the next client is served
    reply = _tcp_query(dns_port, "prov.lab", qid)
    assert reply.header.id == qid and sorted(str(rr.rdata) for rr in reply.rr) == ["127.0.0.10", "127.0.0.11"]


def test_served_over_udp_and_tcp_after_the_fuzz(dns_port):
    # runs after the fuzz in file order; stands alone too
    assert dig(dns_port, "prov.lab", "A", "+tcp")[0] == "NOERROR"
    assert dig(dns_port, "prov.lab", "A")[0] == "NOERROR"


@pytest.mark.parametrize("transport", [(), ("+tcp",)])
def test_edns_version_1_gets_badvers_and_version_0(dns_port, transport):
    """RFC 6891 6.1.3: a version the server does not implement is answered BADVERS, with
    the server's own version (0) and no answer records."""
    out = dig_output(dns_port, "prov.lab", "A", "+edns=1", "+noednsnegotiation", *transport)
    status, _, answers = parse_dig(out)
    assert status == "BADVERS", out
    assert answers == []
    assert re.search(r"EDNS: version: 0\b", out), out


def test_the_do_bit_is_copied_back(dns_port):
    """RFC 3225 3: the DO bit of the query is copied into the response."""
    with_do = dig_output(dns_port, "prov.lab", "A", "+dnssec")
    assert parse_dig(with_do)[0] == "NOERROR" and re.search(r"EDNS: version: 0, flags: do;", with_do), with_do
    without = dig_output(dns_port, "prov.lab", "A")
    assert re.search(r"EDNS: version: 0, flags:;", without), without

"""The DNS answer logic with dnslib-built queries (no sockets), the resolver, and one
loopback round trip through the Twisted adapter."""

from __future__ import annotations

import socket

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSHeader, DNSQuestion, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor, threads
from twisted.trial import unittest as trial

from labsim.services.dns import (
    DnsLookupError,
    DnsRecordConfig,
    DnsResolver,
    DnsServerConfig,
    SrvTarget,
    parse_zone,
)
from labsim.services.dns_net import start_dns_server
from labsim.wire.dns_records import DnsAnswerer, Zone

RECORDS = [
    DnsRecordConfig("prov.lab", "A", "127.0.0.10"),
    DnsRecordConfig("prov.lab", "A", "127.0.0.11", ttl=60),
    DnsRecordConfig("prov.lab", "AAAA", "2001:db8::10"),
    DnsRecordConfig("prov.lab", "TXT", "labsim provisioning"),
    DnsRecordConfig("www.lab.", "CNAME", "alias.lab"),
    DnsRecordConfig("alias.lab", "CNAME", "prov.lab."),
    DnsRecordConfig("away.lab", "CNAME", "elsewhere.example"),
    DnsRecordConfig("loop1.lab", "CNAME", "loop2.lab"),
    DnsRecordConfig("loop2.lab", "CNAME", "loop1.lab"),
    DnsRecordConfig("_http._tcp.lab", "SRV", "10 5 8080 prov.lab"),
    DnsRecordConfig("_http._tcp.lab", "SRV", "5 1 80 backup.lab"),
]


@pytest.fixture
def answerer():
    return DnsAnswerer(Zone(RECORDS))


def ask(answerer, name, qtype="A", **kw) -> DNSRecord:
    query = DNSRecord.question(name, qtype)
    for key, value in kw.items():
        setattr(query.header, key, value)
    raw = answerer.handle(bytes(query.pack()))
    reply = DNSRecord.parse(raw)
    assert reply.header.id == query.header.id and reply.header.qr == 1
    return reply


def rdatas(reply, qtype):
    return sorted(str(rr.rdata) for rr in reply.rr if rr.rtype == getattr(QTYPE, qtype))


def test_a_records_and_ttl(answerer):
    reply = ask(answerer, "prov.lab", ad=1, cd=1)
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa == 1
    assert (reply.header.ad, reply.header.cd, reply.header.rd, reply.header.ra) == (0, 1, 1, 0)
    assert rdatas(reply, "A") == ["127.0.0.10", "127.0.0.11"]
    assert sorted(rr.ttl for rr in reply.rr) == [60, 300]


def test_aaaa_txt_srv(answerer):
    assert rdatas(ask(answerer, "prov.lab", "AAAA"), "AAAA") == ["2001:db8::10"]
    txt = ask(answerer, "prov.lab", "TXT").rr
    assert [b"".join(rr.rdata.data) for rr in txt] == [b"labsim provisioning"]
    srv = ask(answerer, "_http._tcp.lab", "SRV").rr
    assert sorted((rr.rdata.priority, rr.rdata.weight, rr.rdata.port, str(rr.rdata.target)) for rr in srv) == [
        (5, 1, 80, "backup.lab."),
        (10, 5, 8080, "prov.lab."),
    ]


def test_cname_chain_followed_inside_our_records(answerer):
    reply = ask(answerer, "www.lab", "A")
    assert [(str(rr.rname), QTYPE.get(rr.rtype)) for rr in reply.rr] == [
        ("www.lab.", "CNAME"),
        ("alias.lab.", "CNAME"),
        ("prov.lab.", "A"),
        ("prov.lab.", "A"),
    ]
    # asking for the CNAME itself gives just that record
    assert rdatas(ask(answerer, "www.lab", "CNAME"), "CNAME") == ["alias.lab."]
    # a target outside our records: the CNAME alone
    assert rdatas(ask(answerer, "away.lab"), "CNAME") == ["elsewhere.example."]
    # a loop terminates
    loop = ask(answerer, "loop1.lab")
    assert loop.header.rcode == RCODE.NOERROR and len(loop.rr) == 2


def test_nxdomain_nodata_and_case(answerer):
    assert ask(answerer, "nothere.lab").header.rcode == RCODE.NXDOMAIN
    nodata = ask(answerer, "_http._tcp.lab", "A")
    assert nodata.header.rcode == RCODE.NOERROR and nodata.rr == []
    mixed = ask(answerer, "PrOv.LAB")
    assert rdatas(mixed, "A") == ["127.0.0.10", "127.0.0.11"]
    assert str(mixed.q.qname) == "PrOv.LAB."  # the question is echoed as asked (0x20 randomisation)


def test_negative_answers_inside_a_zone_carry_its_soa_with_the_smaller_of_ttl_and_minimum():
    """RFC 2308 3: with an SOA in the records, a name at or below it that does not exist
    (NXDOMAIN), or exists without the type asked (NODATA), is answered with the zone's SOA
    in the authority section, its TTL min(SOA TTL, MINIMUM): how long a resolver may keep
    the negative answer. The closest zone's SOA; none outside every zone, none with data."""
    zone = Zone(RECORDS + [DnsRecordConfig("lab.", "SOA", "ns.lab. hostmaster.lab. 7 3600 600 86400 120", 3600),
                           DnsRecordConfig("sub.lab.", "SOA", "ns.lab. hostmaster.lab. 1 3600 600 86400 900", 30),
                           DnsRecordConfig("x.sub.lab", "A", "127.0.0.12")])
    answerer = DnsAnswerer(zone)

    def authority(reply):
        return [(str(rr.rname), rr.ttl, rr.rdata.times[0]) for rr in reply.auth if rr.rtype == QTYPE.SOA]

    nxdomain = ask(answerer, "nothere.lab")
    assert nxdomain.header.rcode == RCODE.NXDOMAIN and authority(nxdomain) == [("lab.", 120, 7)]
    nodata = ask(answerer, "_http._tcp.lab", "A")
    assert nodata.header.rcode == RCODE.NOERROR and nodata.rr == [] and authority(nodata) == [("lab.", 120, 7)]
    assert authority(ask(answerer, "deep.down.sub.lab")) == [("sub.lab.", 30, 1)]  # the closest zone: TTL 30 < 900
    assert authority(ask(answerer, "x.sub.lab", "AAAA")) == [("sub.lab.", 30, 1)]
    assert authority(ask(answerer, "prov.lab")) == [] and rdatas(ask(answerer, "prov.lab"), "A")
    assert authority(ask(answerer, "prov.lab", "CNAME")) == [("lab.", 120, 7)]  # no CNAME there: NODATA too
    assert authority(ask(answerer, "www.lab", "CNAME")) == []
    outside = ask(answerer, "nothere.example")
    assert outside.header.rcode == RCODE.NXDOMAIN and outside.auth == []
    soa = ask(answerer, "lab.", "SOA")  # asked for, the SOA is the record as written
    assert [(rr.ttl, rr.rdata.times) for rr in soa.rr] == [(3600, (7, 3600, 600, 86400, 120))]
    # The phones' resolver reads how long it may keep each negative answer.
    with pytest.raises(DnsLookupError) as caught:
        resolve(answerer, "nothere.lab", "A")
    assert caught.value.negative_ttl == 120
    with pytest.raises(DnsLookupError) as caught:
        resolve(DnsAnswerer(Zone(RECORDS)), "nothere.lab", "A")
    assert caught.value.negative_ttl is None  # no SOA: not to be kept
    resolver = DnsResolver()
    assert resolver.parse_answer_and_ttl(answerer.handle(resolver.build_query("_http._tcp.lab", "A", 9))) == ([], 120)


def test_formerr_refused_notimp_and_drops(answerer):
    good = bytes(DNSRecord.question("prov.lab").pack())
    # header fine, question truncated -> FORMERR with the same id
    formerr = DNSRecord.parse(answerer.handle(good[:-3]))
    assert formerr.header.rcode == RCODE.FORMERR and formerr.header.id == DNSRecord.parse(good).header.id
    # two questions -> FORMERR
    two = DNSRecord(DNSHeader(id=7), questions=[DNSQuestion("prov.lab"), DNSQuestion("www.lab")])
    assert DNSRecord.parse(answerer.handle(bytes(two.pack()))).header.rcode == RCODE.FORMERR
    # class CH -> REFUSED
    chaos = DNSRecord(DNSHeader(id=8), q=DNSQuestion("prov.lab", QTYPE.TXT, 3))
    assert DNSRecord.parse(answerer.handle(bytes(chaos.pack()))).header.rcode == RCODE.REFUSED
    # opcode UPDATE -> NOTIMP
    update = DNSRecord(DNSHeader(id=9, opcode=5), q=DNSQuestion("prov.lab"))
    assert DNSRecord.parse(answerer.handle(bytes(update.pack()))).header.rcode == RCODE.NOTIMP
    before = answerer.stats.malformed
    assert answerer.handle(b"") is None
    assert answerer.handle(b"\x00" * 11) is None
    # a response (QR=1) is never answered
    assert answerer.handle(bytes(DNSRecord.question("prov.lab").reply().pack())) is None
    assert answerer.stats.malformed == before + 3
    assert answerer.stats.rcodes["FORMERR"] == 2 and answerer.stats.rcodes["REFUSED"] == 1


def test_cache_returns_fresh_ids_and_counts(answerer):
    first = ask(answerer, "prov.lab")
    second = ask(answerer, "prov.lab")  # same bytes after the id: served from the cache
    assert answerer.stats.cache_hits == 1
    assert rdatas(first, "A") == rdatas(second, "A")
    assert answerer.stats.queries == 2 and answerer.stats.rcodes["NOERROR"] == 2


def _with_edns(query: DNSRecord, size: int) -> bytes:
    query.add_ar(EDNS0(udp_len=size))
    return bytes(query.pack())


def _check_cut(truncated: DNSRecord, full: DNSRecord, limit: int, raw_size: int) -> None:
    """TC set, the reply within ``limit``, its answers the longest run of whole records
    of the full answer that fits (one more would not)."""
    assert truncated.header.tc == 1 and raw_size <= limit
    kept = len(truncated.rr)
    assert [rr.rdata.data for rr in truncated.rr] == [rr.rdata.data for rr in full.rr[:kept]]
    bigger = DNSRecord(truncated.header, q=truncated.q, rr=full.rr[: kept + 1], ar=truncated.ar)
    assert len(bigger.pack()) > limit


def test_udp_truncation_cuts_to_512_or_the_edns_size():
    # ~216 bytes a record: 4 fit EDNS's 1232 bytes but not plain DNS's 512; 8 fit neither
    many = [DnsRecordConfig("big.lab", "TXT", f"{i:03d}" + "x" * 200) for i in range(8)]
    four, eight = DnsAnswerer(Zone(many[:4])), DnsAnswerer(Zone(many))
    full = DNSRecord.parse(eight.handle(bytes(DNSRecord.question("big.lab", "TXT").pack()), over_tcp=True))
    assert full.header.tc == 0 and len(full.rr) == 8  # TCP: the whole answer

    raw = four.handle(bytes(DNSRecord.question("big.lab", "TXT").pack()))
    plain = DNSRecord.parse(raw)
    _check_cut(plain, full, 512, len(raw))
    assert len(plain.rr) == 2 and plain.ar == []  # no EDNS asked: none answered
    assert four.stats.truncated == 1

    # EDNS 4096: we honour up to 1232 (what we advertise back)
    reply = DNSRecord.parse(four.handle(_with_edns(DNSRecord.question("big.lab", "TXT"), 4096)))
    assert reply.header.tc == 0 and len(reply.rr) == 4
    assert [rr.rclass for rr in reply.ar if rr.rtype == QTYPE.OPT] == [1232]
    raw = eight.handle(_with_edns(DNSRecord.question("big.lab", "TXT"), 4096))
    cut = DNSRecord.parse(raw)
    _check_cut(cut, full, 1232, len(raw))
    assert [rr.rtype for rr in cut.ar] == [QTYPE.OPT]  # RFC 6891 7: OPT stays in a truncated reply
    # EDNS 700: cut to 700; EDNS 100 counts as 512 (RFC 6891 6.2.5)
    for asked, limit in [(700, 700), (100, 512)]:
        raw = eight.handle(_with_edns(DNSRecord.question("big.lab", "TXT"), asked))
        _check_cut(DNSRecord.parse(raw), full, limit, len(raw))
    assert eight.stats.truncated == 3
    # the truncated reply is cached per transport: TCP still gets it whole afterwards
    again = DNSRecord.parse(eight.handle(bytes(DNSRecord.question("big.lab", "TXT").pack()), over_tcp=True))
    assert again.header.tc == 0 and len(again.rr) == 8 and eight.stats.tcp_queries == 2


def test_many_a_records_cut_over_udp_whole_over_tcp():
    records = [DnsRecordConfig("many.lab", "A", f"127.0.{i // 250}.{i % 250 + 1}") for i in range(300)]
    answerer = DnsAnswerer(Zone(records))
    query = bytes(DNSRecord.question("many.lab", "A").pack())
    full = DNSRecord.parse(answerer.handle(query, over_tcp=True))
    assert full.header.tc == 0 and len(full.rr) == 300
    raw = answerer.handle(query)
    _check_cut(DNSRecord.parse(raw), full, 512, len(raw))


def test_bad_config_rejected():
    for bad in [
        DnsRecordConfig("a.lab", "A", "999.1.1.1"),
        DnsRecordConfig("a.lab", "AAAA", "1.2.3.4"),
        DnsRecordConfig("a.lab", "SRV", "1 2 3"),
        DnsRecordConfig("a.lab", "SRV", "1 2 70000 x.lab"),
        DnsRecordConfig("a.lab", "MX", "10 x.lab"),
        DnsRecordConfig("lab.", "SOA", "ns.lab. hostmaster.lab. 1 3600 600 86400"),
        DnsRecordConfig("lab.", "SOA", "ns.lab. hostmaster.lab. 1 3600 600 86400 -1"),
        DnsRecordConfig("lab.", "SOA", "ns..lab. hostmaster.lab. 1 3600 600 86400 60"),
    ]:
        with pytest.raises(ValueError):
            Zone([bad])
    soa = "ns.lab. hostmaster.lab. 1 3600 600 86400 60"
    with pytest.raises(ValueError, match="one SOA"):
        Zone([DnsRecordConfig("lab.", "SOA", soa), DnsRecordConfig("LAB", "SOA", soa)])
    with pytest.raises(ValueError):  # CNAME beside other data
        Zone([DnsRecordConfig("a.lab", "CNAME", "b.lab"), DnsRecordConfig("a.lab", "A", "1.2.3.4")])


def test_zone_file_parsing():
    records = parse_zone(
        """
        # comment
        prov.lab.   A 127.0.0.1 ; trailing comment
        www.lab. 60 CNAME prov.lab.
        _sip._udp.lab SRV 10 5 5060 prov.lab.
        prov.lab TXT "two words"
        lab. 3600 SOA ns.lab. hostmaster.lab. 1 3600 600 86400 60
        """
    )
    assert records == [
        DnsRecordConfig("prov.lab.", "A", "127.0.0.1"),
        DnsRecordConfig("www.lab.", "CNAME", "prov.lab.", 60),
        DnsRecordConfig("_sip._udp.lab", "SRV", "10 5 5060 prov.lab."),
        DnsRecordConfig("prov.lab", "TXT", "two words"),
        DnsRecordConfig("lab.", "SOA", "ns.lab. hostmaster.lab. 1 3600 600 86400 60", 3600),
    ]
    with pytest.raises(ValueError, match="line 1"):
        parse_zone("lonely.lab A")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_never_raise(data):
    answerer = DnsAnswerer(Zone(RECORDS))
    reply = answerer.handle(data)
    assert reply is None or DNSRecord.parse(reply).header.qr == 1
    assert answerer.stats.queries == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=40), st.integers(0, 60))
def test_fuzz_mutated_queries_never_raise(noise, offset):
    answerer = DnsAnswerer(Zone(RECORDS))
    base = bytearray(DNSRecord.question("www.lab", "A").pack())
    base[offset : offset + len(noise)] = noise
    reply = answerer.handle(bytes(base))
    assert reply is None or len(reply) >= 12


# --- resolver ----------------------------------------------------------------------


def resolve(answerer, name, qtype, qid=4242):
    resolver = DnsResolver()
    return resolver.parse_answer(answerer.handle(resolver.build_query(name, qtype, qid)))


def test_resolver_types(answerer):
    assert resolve(answerer, "www.lab", "A") == ["127.0.0.10", "127.0.0.11"]
    assert resolve(answerer, "prov.lab", "AAAA") == ["2001:db8::10"]
    assert resolve(answerer, "prov.lab", "TXT") == ["labsim provisioning"]
    assert resolve(answerer, "_http._tcp.lab", "SRV") == [
        SrvTarget(5, 1, 80, "backup.lab"),
        SrvTarget(10, 5, 8080, "prov.lab"),
    ]
    assert resolve(answerer, "www.lab", "CNAME") == ["alias.lab"]
    assert resolve(answerer, "_http._tcp.lab", "A") == []


def test_resolver_errors(answerer):
    with pytest.raises(DnsLookupError) as err:
        resolve(answerer, "nothere.lab", "A")
    assert err.value.rcode == RCODE.NXDOMAIN
    resolver = DnsResolver()
    query = resolver.build_query("prov.lab", "A", 1)
    reply = bytearray(answerer.handle(query))
    reply[0:2] = b"\x00\x02"  # an id we never used
    with pytest.raises(DnsLookupError):
        resolver.parse_answer(bytes(reply))
    with pytest.raises(DnsLookupError):
        resolver.parse_answer(b"\x00\x01garbage")
    with pytest.raises(DnsLookupError):  # our own query echoed back is not an answer
        resolver.parse_answer(query)
    assert resolver.parse_answer(answerer.handle(query)) == ["127.0.0.10", "127.0.0.11"]


# --- the Twisted adapter on a loopback socket ----------------------------------------


def _udp_exchange(port: int, payload: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(payload, ("127.0.0.1", port))
        return s.recv(4096)


class DnsOverLoopback(trial.TestCase):
    timeout = 10

    @defer.inlineCallbacks
    def test_query_and_garbage_over_udp(self):
        handle = start_dns_server(reactor, DnsServerConfig(RECORDS), port=0)
        self.addCleanup(handle.stop)
        resolver = DnsResolver()
        # a blocking client in a thread keeps the reactor free to serve it
        raw = yield threads.deferToThread(_udp_exchange, handle.port, resolver.build_query("www.lab", "A", 99))
        self.assertEqual(resolver.parse_answer(raw), ["127.0.0.10", "127.0.0.11"])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"\xff", ("127.0.0.1", handle.port))
        raw = yield threads.deferToThread(_udp_exchange, handle.port, resolver.build_query("x.lab", "A", 100))
        with self.assertRaises(DnsLookupError):
            resolver.parse_answer(raw)
        self.assertEqual(handle.stats.malformed, 1)
        self.assertEqual(handle.stats.queries, 3)

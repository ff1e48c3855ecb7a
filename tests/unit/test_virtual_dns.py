"""The phones' resolver over the in-memory lab (labsim.virtual.dns): LabResolver's own
logic asking labsim's DnsAnswerer, on a simulated clock."""

from labsim.phones.dns_client import PhoneDns
from labsim.transport.dns_lookup import LookupFailed
from labsim.virtual.clock import HeapClock
from labsim.virtual.dns import VirtualResolver
from labsim.wire.dns_records import DnsAnswerer, DnsRecordConfig, Zone


class Link:
    """A fault link that lets datagrams through, and may refuse TCP (``down``)."""

    def __init__(self, down=False):
        self.down, self.carried = down, []

    def carry(self, direction, data, forward):
        self.carried.append(direction)
        forward(data)

    def refuses(self):
        return self.down

    def answer_delay(self):
        return 0.0


def lookup(resolver, clock, name, until=10.0):
    outcome = []
    resolver.resolve_all(name).addBoth(outcome.append)
    clock.run_until(clock.seconds() + until)
    assert len(outcome) == 1
    return outcome[0]


def answerer(records):
    return DnsAnswerer(Zone([DnsRecordConfig(name, "A", value) for name, value in records]))


def test_a_name_resolves_through_the_answerer_and_is_cached():
    clock, server, link = HeapClock(), answerer([("provisioning.lab", "127.0.0.1")]), Link()
    resolver = VirtualResolver(clock, ("127.0.0.1", 53), lambda: server, link)
    assert lookup(resolver, clock, "provisioning.lab") == ["127.0.0.1"]
    assert link.carried == ["in", "out"] and server.stats.queries == 1
    assert lookup(resolver, clock, "Provisioning.Lab.") == ["127.0.0.1"]  # from the cache
    assert server.stats.queries == 1 and resolver.stats["cache_hits"] == 1


def test_a_stopped_server_means_three_tries_a_second_apart_then_failure():
    clock = HeapClock()
    resolver = VirtualResolver(clock, ("127.0.0.1", 53), lambda: None)
    started = clock.seconds()
    failure = lookup(resolver, clock, "provisioning.lab")
    assert failure.check(LookupFailed) and "no answer from the lab DNS" in failure.getErrorMessage()
    assert resolver.stats["queries"] == 3 and clock.seconds() - started >= 3.0


def test_a_truncated_answer_is_asked_again_over_tcp_and_all_addresses_come_back():
    many = [("big.lab", f"127.0.1.{n}") for n in range(1, 61)]  # far more than 512 bytes of answer
    clock, server = HeapClock(), answerer(many)
    resolver = VirtualResolver(clock, ("127.0.0.1", 53), lambda: server, Link())
    assert lookup(resolver, clock, "big.lab") == [value for _, value in many]
    assert resolver.stats["truncated"] == 1 and resolver.stats["tcp_queries"] == 1
    assert server.stats.tcp_queries == 1


def test_tcp_refused_by_a_down_fault_fails_after_the_attempts():
    many = [("big.lab", f"127.0.1.{n}") for n in range(1, 61)]
    clock, server = HeapClock(), answerer(many)
    resolver = VirtualResolver(clock, ("127.0.0.1", 53), lambda: server, Link(down=True))
    failure = lookup(resolver, clock, "big.lab")
    assert failure.check(LookupFailed) and "truncated" in failure.getErrorMessage()
    assert resolver.stats["tcp_failures"] == 3


def test_with_a_capture_the_resolvers_queries_and_the_replies_it_took_are_frames():
    """--pcap: every query the resolver sends and every reply it takes, real bytes, from
    the resolver's own MAC and one port to the server's port 53; a cached lookup sends
    nothing; a server that does not answer leaves the three tries alone."""
    from scapy.all import DNS, IP, UDP, Ether

    from labsim.observe.pcap import PcapCapture
    from tests.unit.test_pcap import ListSink

    up = answerer([("provisioning.lab", "127.0.0.7")])
    server = [up]
    clock, sink = HeapClock(), ListSink()
    resolver = VirtualResolver(clock, ("127.0.0.1", 5354), lambda: server[0])
    resolver.capture = PcapCapture(sink=sink)
    lookup(resolver, clock, "provisioning.lab")
    lookup(resolver, clock, "provisioning.lab")  # cached: nothing on the wire
    server[0] = None
    lookup(resolver, clock, "other.lab")
    frames = [Ether(frame) for frame, _, _ in sink.packets]
    assert [(f.src, f[IP].src, f[IP].dst, f[UDP].dport, f[DNS].qr, f[DNS].qd[0].qname) for f in frames] == [
        ("02:6c:61:62:00:02", "127.0.0.1", "127.0.0.1", 53, 0, b"provisioning.lab."),
        ("02:6c:61:62:00:01", "127.0.0.1", "127.0.0.1", 49152, 1, b"provisioning.lab."),
    ] + [("02:6c:61:62:00:02", "127.0.0.1", "127.0.0.1", 53, 0, b"other.lab.")] * 3
    assert frames[1][DNS].an[0].rdata == "127.0.0.7" and frames[1][DNS].id == frames[0][DNS].id
    assert {f[UDP].sport for f in frames if f[DNS].qr == 0} == {49152}
    times = [sec + usec / 1e6 for _, sec, usec in sink.packets]
    assert times[2:] == sorted(times[2:]) and round(times[4] - times[2], 3) == 2.0  # a second apart


def test_a_phone_asks_only_the_dns_servers_its_lease_named():
    """resolve_with: the lease's option 6 decides. With the lab's DNS in it (or not said)
    the name resolves; with none the phone has no one to ask and fails at once, sending
    nothing; with other servers it asks them, hears nothing, and fails after its three
    tries a second apart, and still nothing reaches the lab's DNS."""
    clock, server = HeapClock(), answerer([("provisioning.lab", "127.0.0.7")])
    resolver = VirtualResolver(clock, ("127.0.0.1", 5354), lambda: server)

    for said in (None, ("10.0.0.53", "127.0.0.1")):
        answered = []
        resolver.resolve_with("provisioning.lab", said, PhoneDns()).addCallback(answered.append)
        clock.run_until(clock.seconds() + 10.0)
        assert answered == ["127.0.0.7"]
    queries = server.stats.queries
    failures = []
    for name_servers, dns in (((), PhoneDns()), (("10.0.0.53", "10.0.0.54"), PhoneDns()),
                              (("10.0.0.53",), PhoneDns(timeout_s=3.0, tries=3))):  # a Yealink's timing
        started = clock.seconds()
        failed = []
        resolver.resolve_with("provisioning.lab", name_servers, dns).addErrback(
            lambda failure: failed.append((failure, clock.seconds())))
        clock.run_until(clock.seconds() + 10.0)
        [(failure, at)] = failed
        assert failure.check(LookupFailed)
        failures.append((failure.getErrorMessage(), round(at - started, 3)))
    assert failures == [
        ("provisioning.lab: no DNS server to ask: the phone's lease has none (DHCP option 6)", 0.0),
        ("provisioning.lab: no answer from 10.0.0.53, 10.0.0.54 (the lease's DNS servers, DHCP option 6), which "
         "are not the lab's DNS 127.0.0.1", 3.0),
        ("provisioning.lab: no answer from 10.0.0.53 (the lease's DNS servers, DHCP option 6), which "
         "are not the lab's DNS 127.0.0.1", 9.0)]
    assert server.stats.queries == queries  # nothing was sent to the lab's DNS for them


def test_with_a_capture_a_lease_naming_other_dns_servers_shows_the_phones_unanswered_queries():
    """The phone asks the servers its lease names, in turn, a second apart, and hears
    nothing: the capture shows those queries (made up: labsim sends nothing there), and
    nothing at all to or from the lab's DNS."""
    from scapy.all import DNS, IP, UDP, Ether

    from labsim.observe.pcap import PcapCapture
    from tests.unit.test_pcap import ListSink

    clock, sink, server = HeapClock(), ListSink(), answerer([("provisioning.lab", "127.0.0.7")])
    resolver = VirtualResolver(clock, ("127.0.0.1", 5354), lambda: server)
    resolver.capture = PcapCapture(sink=sink)
    started = clock.seconds()
    resolver.resolve_with("provisioning.lab", ("10.0.0.53", "10.0.0.54")).addErrback(lambda failure: None)
    clock.run_until(started + 10.0)
    frames = [Ether(frame) for frame, _, _ in sink.packets]
    assert [(f[IP].dst, f[UDP].dport, f[DNS].qr, f[DNS].qd[0].qname) for f in frames] == [
        ("10.0.0.53", 53, 0, b"provisioning.lab."), ("10.0.0.54", 53, 0, b"provisioning.lab."),
        ("10.0.0.53", 53, 0, b"provisioning.lab.")]
    assert len({f[DNS].id for f in frames}) == 1 and server.stats.queries == 0
    assert [round(sec + usec / 1e6 - started, 3) for _, sec, usec in sink.packets] == [0.0, 1.0, 2.0]


def phone_lookup(resolver, clock, name, dns, until=10.0):
    outcome = []
    resolver.resolve_with(name, None, dns).addBoth(outcome.append)
    clock.run_until(clock.seconds() + until)
    assert len(outcome) == 1
    return outcome[0]


def test_each_phone_asks_for_itself_and_keeps_the_answer_for_the_records_ttl():
    """A phone's question goes on the wire whatever the others ask (a storm of phones is
    a storm of queries at the DNS server), and its answer stays in that phone's cache for
    the record's TTL: the smallest along a CNAME chain."""
    zone = Zone([DnsRecordConfig("prov.lab", "CNAME", "web.lab", ttl=300),
                 DnsRecordConfig("web.lab", "A", "127.0.0.9", ttl=60)])
    clock, server = HeapClock(), DnsAnswerer(zone)
    resolver = VirtualResolver(clock, ("127.0.0.1", 53), lambda: server, Link())
    first_phone, second_phone = PhoneDns(), PhoneDns()
    outcomes = []
    for dns in (first_phone, second_phone):  # at the same moment, the same name
        resolver.resolve_with("prov.lab", ("127.0.0.1",), dns).addBoth(outcomes.append)
    clock.run_until(1.0)
    assert outcomes == ["127.0.0.9", "127.0.0.9"] and server.stats.queries == 2
    assert first_phone.answers["prov.lab"] == (0.001 + 60, ("127.0.0.9",))  # its reply a hop later; the A record's 60 s, not the CNAME's 300
    assert phone_lookup(resolver, clock, "PROV.lab.", first_phone) == "127.0.0.9"
    assert server.stats.queries == 2 and resolver.stats["cache_hits"] == 1
    clock.run_until(61.0)  # past the TTL: the phone asks again
    assert phone_lookup(resolver, clock, "prov.lab", first_phone) == "127.0.0.9"
    assert server.stats.queries == 3 and first_phone.answers["prov.lab"][0] == 61.001 + 60


def test_an_answer_with_ttl_0_is_used_once_and_not_kept():
    clock, server = HeapClock(), DnsAnswerer(Zone([DnsRecordConfig("prov.lab", "A", "127.0.0.9", ttl=0)]))
    resolver = VirtualResolver(clock, ("127.0.0.1", 53), lambda: server, Link())
    dns = PhoneDns()
    assert phone_lookup(resolver, clock, "prov.lab", dns) == "127.0.0.9"
    assert phone_lookup(resolver, clock, "prov.lab", dns) == "127.0.0.9"
    assert dns.answers == {} and server.stats.queries == 2


def test_a_failed_lookup_is_not_kept_the_phone_asks_again():
    clock, server = HeapClock(), answerer([("prov.lab", "127.0.0.9")])
    resolver = VirtualResolver(clock, ("127.0.0.1", 53), lambda: server, Link())
    dns = PhoneDns()
    for _ in range(2):
        failure = phone_lookup(resolver, clock, "typo.lab", dns)
        assert failure.check(LookupFailed) and "NXDOMAIN" in failure.getErrorMessage()
    assert server.stats.queries == 2 and dns.answers == {} and resolver.stats["failures"] == 2


LAB_SOA = DnsRecordConfig("lab.", "SOA", "ns.lab. hostmaster.lab. 1 3600 600 86400 120", ttl=3600)


def test_a_phone_that_keeps_negative_answers_keeps_them_as_long_as_the_soa_says():
    """RFC 2308: a "no such name" (or "no address") answer whose authority section holds
    the zone's SOA is kept for the smaller of the SOA's TTL and MINIMUM (120 s here); the
    phone's next lookups of that name fail at once, nothing asked, until then."""
    zone = Zone([LAB_SOA, DnsRecordConfig("prov.lab", "A", "127.0.0.9"),
                 DnsRecordConfig("v6only.lab", "AAAA", "2001:db8::1")])
    clock, server = HeapClock(), DnsAnswerer(zone)
    resolver = VirtualResolver(clock, ("127.0.0.1", 53), lambda: server, Link())
    dns = PhoneDns(negative_caching=True)
    first = phone_lookup(resolver, clock, "typo.lab", dns)
    assert "no such name (NXDOMAIN)" in first.getErrorMessage() and server.stats.queries == 1
    assert dns.answers["typo.lab"][0] == 0.001 + 120
    clock.run_until(100.0)
    again = phone_lookup(resolver, clock, "TYPO.lab.", dns)
    assert again.check(LookupFailed) and server.stats.queries == 1
    assert "no such name (NXDOMAIN)" in again.getErrorMessage() and "RFC 2308" in again.getErrorMessage()
    assert resolver.stats["cache_hits"] == 1 and resolver.stats["failures"] == 2
    clock.run_until(121.0)  # past the SOA's minimum: the phone asks again
    phone_lookup(resolver, clock, "typo.lab", dns)
    assert server.stats.queries == 2
    # A name without an A record (NODATA) is kept the same way; another phone asks for itself.
    for _ in range(2):
        assert "no A record" in phone_lookup(resolver, clock, "v6only.lab", dns).getErrorMessage()
    assert server.stats.queries == 3
    assert phone_lookup(resolver, clock, "prov.lab", dns) == "127.0.0.9"
    phone_lookup(resolver, clock, "typo.lab", PhoneDns(negative_caching=True))
    assert server.stats.queries == 5


def test_without_an_soa_or_a_phone_that_keeps_them_a_negative_answer_is_asked_again():
    with_soa = DnsAnswerer(Zone([LAB_SOA, DnsRecordConfig("prov.lab", "A", "127.0.0.9")]))
    without = answerer([("prov.lab", "127.0.0.9")])
    outside = DnsAnswerer(Zone([LAB_SOA, DnsRecordConfig("prov.example", "A", "127.0.0.9")]))
    for server, dns, name in ((with_soa, PhoneDns(), "typo.lab"), (without, PhoneDns(negative_caching=True), "typo.lab"),
                              (outside, PhoneDns(negative_caching=True), "typo.example")):  # the SOA is lab.'s
        clock = HeapClock()
        resolver = VirtualResolver(clock, ("127.0.0.1", 53), lambda server=server: server, Link())
        for _ in range(3):
            assert phone_lookup(resolver, clock, name, dns).check(LookupFailed)
        assert server.stats.queries == 3 and dns.answers == {}


def test_beyond_the_query_ids_in_flight_a_lookup_waits_for_one_to_end():
    """One socket carries every phone's questions, told apart by a 16-bit ID: past
    QUERIES_IN_FLIGHT a lookup is held, and sent as soon as another one ends."""
    clock, server = HeapClock(), answerer([("prov.lab", "127.0.0.9")])
    resolver = VirtualResolver(clock, ("127.0.0.1", 53), lambda: server, Link())
    resolver.QUERIES_IN_FLIGHT = 2
    outcomes = []
    for _ in range(3):
        resolver.resolve_with("prov.lab", None, PhoneDns()).addBoth(lambda result: outcomes.append((clock.seconds(), result)))
    assert resolver.stats["queries"] == 2 and resolver.stats["held"] == 1
    clock.run_until(1.0)
    assert outcomes == [(0.001, "127.0.0.9"), (0.001, "127.0.0.9"), (0.002, "127.0.0.9")]  # a hop after the first reply
    assert server.stats.queries == 3


def test_a_phone_asks_with_its_own_timing():
    """A phone's tries and the wait between them are its own (a Yealink's: three
    queries 3 s apart), whatever the resolver's default, on a server that does not answer."""
    clock = HeapClock()
    resolver = VirtualResolver(clock, ("127.0.0.1", 53), lambda: None)
    failures = []
    resolver.resolve_with("prov.lab", None, PhoneDns(timeout_s=3.0, tries=3)).addErrback(
        lambda failure: failures.append(clock.seconds()))
    clock.run_until(8.9)
    assert resolver.stats["queries"] == 3 and failures == []
    clock.run_until(20.0)
    assert failures == [9.0]


def test_a_name_no_query_can_carry_fails_at_once_and_nothing_is_sent():
    # A URL's host with a character IDNA refuses, an empty label or one over 63 bytes: a
    # stub resolver refuses it without asking (it raised UnicodeError out of the lookup).
    clock, server, link = HeapClock(), answerer([("provisioning.lab", "127.0.0.1")]), Link()
    resolver = VirtualResolver(clock, ("127.0.0.1", 53), lambda: server, link)
    for name, why in [("pr\ufffdvisioning.lab", "Invalid character"), ("a..b", "label empty or too long"),
                      ("x" * 64 + ".lab", "label empty or too long")]:
        started = clock.seconds()
        failure = lookup(resolver, clock, name)
        assert failure.check(LookupFailed), failure
        assert f"{name.lower()}: no DNS name (" in failure.getErrorMessage() and why in failure.getErrorMessage()
        assert "nothing asked" in failure.getErrorMessage()
    assert link.carried == [] and server.stats.queries == 0 and resolver.stats["queries"] == 0
    # A lease whose DNS servers are not the lab's: refused as at once, not after the tries.
    outcome = []
    resolver.resolve_with("a..b", ("198.18.0.53",)).addBoth(outcome.append)
    assert outcome and outcome[0].check(LookupFailed) and "no DNS name" in outcome[0].getErrorMessage()
    assert lookup(resolver, clock, "provisioning.lab") == ["127.0.0.1"]  # the resolver still works


def test_yealink_and_polycom_phones_keep_negative_answers_the_other_vendors_phones_do_not():
    """The guides that say so (Yealink's, Polycom's UC Software: RFC 2308 negative caching);
    the others say nothing, and their phones ask again."""
    import random

    from labsim.phones.dns_client import new_dns_client
    from labsim.phones.phone import Phone
    from labsim.phones.vendors import VENDORS, profile_for

    keeping = {vendor for vendor, module in VENDORS.items()
               if new_dns_client(Phone(module.MAC_PREFIXES[0] + ":00:00:01", module.MODELS[0], profile_for(vendor),
                                       rng=random.Random(1))).negative_caching}
    assert keeping == {"yealink", "polycom"}

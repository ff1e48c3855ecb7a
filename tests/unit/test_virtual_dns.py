"""The phones' resolver over the in-memory lab (labsim.virtual.dns): LabResolver's own
logic asking labsim's DnsAnswerer, on a simulated clock."""

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
        resolver._cache.clear()
        answered = []
        resolver.resolve_with("provisioning.lab", said).addCallback(answered.append)
        clock.run_until(clock.seconds() + 10.0)
        assert answered == ["127.0.0.7"]
    queries = server.stats.queries
    failures = []
    for name_servers in ((), ("10.0.0.53", "10.0.0.54")):
        started = clock.seconds()
        resolver._cache.clear()
        failed = []
        resolver.resolve_with("provisioning.lab", name_servers).addErrback(
            lambda failure: failed.append((failure, clock.seconds())))
        clock.run_until(clock.seconds() + 10.0)
        [(failure, at)] = failed
        assert failure.check(LookupFailed)
        failures.append((failure.getErrorMessage(), round(at - started, 3)))
    assert failures == [
        ("provisioning.lab: no DNS server to ask: the phone's lease has none (DHCP option 6)", 0.0),
        ("provisioning.lab: no answer from 10.0.0.53, 10.0.0.54 (the lease's DNS servers, DHCP option 6), which "
         "are not the lab's DNS 127.0.0.1", 3.0)]
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

"""DNS without I/O: the records labsim serves, the server's answer logic (one function for
UDP and TCP), the TCP stream framing, a phone's resolver.

Everything here takes and returns bytes; ``labsim.services.dns_net`` puts the server on a
UDP and a TCP socket. dnslib is the codec (DESIGN.md: ~33 µs per query), never
``dnslib.server``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import NamedTuple

from dnslib import AAAA, CNAME, EDNS0, QTYPE, RCODE, RR, SOA, SRV, TXT, A, DNSHeader, DNSLabel, DNSQuestion, DNSRecord
from dnslib.buffer import Buffer
from dnslib.label import DNSLabelError

SUPPORTED_TYPES = ("A", "AAAA", "CNAME", "SRV", "TXT", "SOA")
OPCODE_QUERY = 0
CLASS_IN = 1
QTYPE_ANY = 255
# Without EDNS a UDP answer must fit in 512 bytes (RFC 1035 4.2.1); with EDNS we honour the
# client's size up to the value the DNS Flag Day 2020 settled on.
PLAIN_UDP_LIMIT = 512
EDNS_UDP_LIMIT = 1232
EDNS_VERSION = 0  # the only EDNS version there is (RFC 6891)
EDNS_DO_BIT = 0x8000  # in the OPT record's TTL field (RFC 3225)
BADVERS = 16  # extended rcode (RFC 6891 9)
# Over TCP a message is as long as its 2-byte length prefix can say (RFC 1035 4.2.2).
TCP_LIMIT = 65535
TC_BIT = 0x02  # in the third header byte: QR(1) OPCODE(4) AA(1) TC(1) RD(1)
MAX_CNAME_HOPS = 8
# Answers are a pure function of the query bytes after the ID (the zone never changes
# while serving), so a phone fleet asking the same few names hits this cache.
ANSWER_CACHE_SIZE = 4096

Key = tuple  # a name as a tuple of lower-cased labels: case-insensitive, no trailing-dot ambiguity


def name_key(name: str | DNSLabel) -> Key:
    labels = name.label if isinstance(name, DNSLabel) else DNSLabel(name).label
    return tuple(label.lower() for label in labels)


@dataclass(frozen=True)
class DnsRecordConfig:
    """One record. SRV value: ``"priority weight port target"``; SOA value: ``"mname
    rname serial refresh retry expire minimum"`` (RFC 1035 3.3.13), which makes the
    server's negative answers for names at and below the record's name cacheable
    (RFC 2308)."""

    name: str
    type: str
    value: str
    ttl: int = 300

    def to_rr(self) -> RR:
        _dns_name(self.name, "record name ")
        rtype = self.type.upper()
        if rtype not in SUPPORTED_TYPES:
            raise ValueError(f"{self.name}: record type {self.type!r} not one of {SUPPORTED_TYPES}")
        if not 0 <= self.ttl < 2**31:
            raise ValueError(f"{self.name}: ttl {self.ttl} out of range")
        try:
            rdata = _rdata(rtype, self.value)
        except (ValueError, IndexError) as exc:
            raise ValueError(f"{self.name} {rtype}: bad value {self.value!r}: {exc}") from None
        return RR(DNSLabel(self.name), getattr(QTYPE, rtype), rdata=rdata, ttl=self.ttl)


def _dns_name(name: str, what: str = "") -> str:
    """``name``, or ValueError when no query could carry it (a record's name, a CNAME's,
    SRV's or SOA's target)."""
    problem = dns_name_problem(name)
    if problem is not None:
        raise ValueError(f"{what}{name!r} is no DNS name ({problem})")
    return name


def _rdata(rtype: str, value: str):
    if rtype == "A":
        return A(str(ipaddress.IPv4Address(value.strip())))
    if rtype == "AAAA":
        return AAAA(tuple(ipaddress.IPv6Address(value.strip()).packed))
    if rtype == "CNAME":
        return CNAME(_dns_name(value.strip()))
    if rtype == "SRV":
        priority, weight, port, target = value.split()
        _dns_name(target)
        numbers = [int(priority), int(weight), int(port)]
        if not all(0 <= n < 65536 for n in numbers):
            raise ValueError("priority, weight and port are 0..65535")
        return SRV(*numbers, target=target)
    if rtype == "SOA":
        mname, rname, *numbers = value.split()
        times = tuple(int(number) for number in numbers)
        if len(times) != 5 or not all(0 <= n < 2**32 for n in times):
            raise ValueError("an SOA is 'mname rname serial refresh retry expire minimum', numbers 0..4294967295")
        return SOA(_dns_name(mname), _dns_name(rname), times)
    # TXT: one string per record; a strings longer than 255 bytes is split, as RFC 1035 3.3.14 requires
    raw = value.encode()
    return TXT([raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""])


class Zone:
    """The records by name and type, checked once at load."""

    def __init__(self, records: list[DnsRecordConfig]):
        self._by_name: dict[Key, dict[int, list[RR]]] = {}
        # The zones the records' SOAs start (apex -> the SOA a negative answer carries).
        self._soa_at: dict[Key, RR] = {}
        for record in records:
            rr = record.to_rr()
            key = name_key(rr.rname)
            self._by_name.setdefault(key, {}).setdefault(rr.rtype, []).append(rr)
            if rr.rtype == QTYPE.SOA:
                if key in self._soa_at:
                    raise ValueError(f"{record.name}: a zone has one SOA")
                self._soa_at[key] = _negative_soa(rr)
        for key, by_type in self._by_name.items():
            # RFC 1034 3.6.2: a name with a CNAME has no other data.
            if QTYPE.CNAME in by_type and (len(by_type) > 1 or len(by_type[QTYPE.CNAME]) > 1):
                raise ValueError(f"{'.'.join(l.decode() for l in key)}: a CNAME cannot sit beside other records")

    def __contains__(self, key: Key) -> bool:
        return key in self._by_name

    def lookup(self, key: Key, qtype: int) -> list[RR]:
        by_type = self._by_name.get(key, {})
        if qtype == QTYPE_ANY:
            return [rr for rrs in by_type.values() for rr in rrs]
        return by_type.get(qtype, [])

    def resolve(self, qname: DNSLabel, qtype: int) -> tuple[int, list[RR]]:
        """(rcode, answer RRs), following CNAMEs inside the zone."""
        rcode, answers, _ = self.answer(qname, qtype)
        return rcode, answers

    def answer(self, qname: DNSLabel, qtype: int) -> tuple[int, list[RR], list[RR]]:
        """(rcode, answer RRs, authority RRs): ``resolve``'s answer, and for a negative
        one (no such name, or the name without that type) the SOA of the zone the name
        is in, if the records have one: what lets a resolver keep the negative answer
        (RFC 2308 3)."""
        key = name_key(qname)
        if key not in self:
            return RCODE.NXDOMAIN, [], self._authority(key)
        answers: list[RR] = []
        seen = {key}
        for _ in range(MAX_CNAME_HOPS):
            direct = self.lookup(key, qtype)
            if direct or qtype in (QTYPE.CNAME, QTYPE_ANY):
                found = answers + direct  # none: the name without a CNAME asked for (NODATA)
                return RCODE.NOERROR, found, [] if found else self._authority(key)
            alias = self.lookup(key, QTYPE.CNAME)
            if not alias:
                # the name exists, not with this type (NODATA)
                return RCODE.NOERROR, answers, self._authority(key)
            answers.append(alias[0])
            key = name_key(alias[0].rdata.label)
            if key in seen or key not in self:
                # a loop, or a target outside our records: the CNAME alone is the answer
                return RCODE.NOERROR, answers, []
            seen.add(key)
        return RCODE.NOERROR, answers, []

    def _authority(self, key: Key) -> list[RR]:
        """The SOA of the closest zone holding ``key`` (none: the name is in no zone)."""
        for start in range(len(key) + 1):
            soa = self._soa_at.get(key[start:])
            if soa is not None:
                return [soa]
        return []


def _negative_soa(soa: RR) -> RR:
    """The SOA as a negative answer carries it: its TTL the smaller of its own and its
    MINIMUM field, which together say how long the answer may be kept (RFC 2308 3, 5)."""
    return RR(soa.rname, QTYPE.SOA, rdata=soa.rdata, ttl=min(soa.ttl, soa.rdata.times[4]))


@dataclass
class DnsStats:
    queries: int = 0  # messages received, UDP and TCP
    malformed: int = 0  # dropped: not a DNS query we could even reply to
    cache_hits: int = 0
    truncated: int = 0  # UDP replies sent with TC set (the client should retry over TCP)
    tcp_connections: int = 0  # TCP connections accepted
    tcp_queries: int = 0  # of ``queries``, those that came over TCP
    tcp_idle_closed: int = 0  # TCP connections we closed after the idle timeout
    tcp_over_limit: int = 0  # TCP connections closed at once: the server had its maximum open
    tcp_address_over_limit: int = 0  # TCP connections closed at once: their address had its maximum open
    rcodes: dict[str, int] = field(default_factory=dict)  # replies sent, by rcode name


class DnsAnswerer:
    """The server: ``handle(message, over_tcp=) -> reply bytes or None`` (None: drop). Never raises.

    One function for both transports; they differ only in the reply size limit: over UDP
    512 bytes or the client's EDNS0 size (RFC 6891), over TCP 65535. A reply that does
    not fit is cut and marked TC."""

    def __init__(self, zone: Zone):
        self.zone = zone
        self.stats = DnsStats()
        # One cache per transport: the same question can have a truncated UDP reply and a
        # full TCP one.
        self._caches: tuple[dict[bytes, bytes], dict[bytes, bytes]] = ({}, {})
        # An observer of every answer (labsim serve's live log): on_answer(query, reply,
        # over_tcp). None: no work.
        self.on_answer = None

    def handle(self, data: bytes, *, over_tcp: bool = False) -> bytes | None:
        self.stats.queries += 1
        if over_tcp:
            self.stats.tcp_queries += 1
        cache = self._caches[over_tcp]
        cached = cache.get(data[2:])
        if cached is not None:
            self.stats.cache_hits += 1
            self._count(cached)
            reply = data[:2] + cached
            if self.on_answer is not None:
                self.on_answer(data, reply, over_tcp)
            return reply
        try:
            reply = self._answer(data, over_tcp)
        except Exception:  # noqa: BLE001 - a message from the network must never crash the server
            reply = None
        if reply is None:
            self.stats.malformed += 1
            return None
        if len(data) <= PLAIN_UDP_LIMIT:  # a real question is small; huge junk is not worth keeping
            if len(cache) >= ANSWER_CACHE_SIZE:
                cache.clear()
            cache[data[2:]] = reply[2:]
        self._count(reply[2:])
        if self.on_answer is not None:
            self.on_answer(data, reply, over_tcp)
        return reply

    def _count(self, reply_after_id: bytes) -> None:
        if reply_after_id[0] & TC_BIT:
            self.stats.truncated += 1
        name = RCODE.get(reply_after_id[1] & 0x0F)
        self.stats.rcodes[name] = self.stats.rcodes.get(name, 0) + 1

    def _answer(self, data: bytes, over_tcp: bool) -> bytes | None:
        if len(data) < 12:
            return None
        header = DNSHeader.parse(Buffer(data))
        if header.qr:
            return None  # a response: answering it could start a loop between two servers
        try:
            query = DNSRecord.parse(data)
        except Exception:  # noqa: BLE001 - header fine, body not: tell the client so
            return _bare_reply(header, RCODE.FORMERR)
        if header.opcode != OPCODE_QUERY:
            return _bare_reply(header, RCODE.NOTIMP, query.questions)
        if len(query.questions) != 1:
            return _bare_reply(header, RCODE.FORMERR, query.questions)
        question = query.q
        if question.qclass != CLASS_IN:
            return _bare_reply(header, RCODE.REFUSED, query.questions)

        options = [rr for rr in query.ar if rr.rtype == QTYPE.OPT]
        if len(options) > 1:  # RFC 6891 6.1.1: more than one OPT record is a format error
            return _bare_reply(header, RCODE.FORMERR, query.questions)
        edns = options[0] if options else None
        # RFC 3225 3: the DO bit of the query is copied into the response (we sign nothing:
        # it only says the client may take DNSSEC records).
        flags = "do" if edns is not None and edns.ttl & EDNS_DO_BIT else ""
        if edns is not None and (edns.ttl >> 16) & 0xFF != EDNS_VERSION:
            # RFC 6891 6.1.3: a version we do not implement gets BADVERS (16: the OPT's
            # extended rcode 1, the header's 0) and our own version, and no answer.
            reply = DNSRecord(_reply_header(header, BADVERS & 0x0F), q=question)
            reply.add_ar(EDNS0(udp_len=EDNS_UDP_LIMIT, ext_rcode=BADVERS >> 4, version=EDNS_VERSION, flags=flags))
            return bytes(reply.pack())
        rcode, answers, authority = self.zone.answer(question.qname, question.qtype)
        reply = DNSRecord(_reply_header(header, rcode, aa=1), q=question)
        for rr in answers:
            reply.add_answer(rr)
        for rr in authority:
            reply.add_auth(rr)
        limit = TCP_LIMIT if over_tcp else PLAIN_UDP_LIMIT
        if edns is not None:
            if not over_tcp:
                # RFC 6891 6.2.5: a size below 512 counts as 512. Above, we honour it up to our own.
                limit = min(max(edns.rclass, PLAIN_UDP_LIMIT), EDNS_UDP_LIMIT)
            reply.add_ar(EDNS0(udp_len=EDNS_UDP_LIMIT, flags=flags))
        return bytes(_fit(reply, limit))


def _fit(reply: DNSRecord, limit: int) -> bytes:
    """``reply`` packed into at most ``limit`` bytes.

    RFC 2181 9 / RFC 1035 4.1.1: when the answer does not fit, set TC and send what does
    fit: here the longest run of whole answer records (never part of one), with the
    question and the OPT record kept (RFC 6891 7). The client retries over TCP."""
    packed = reply.pack()
    if len(packed) <= limit:
        return packed
    answers = reply.rr
    reply.header.tc = 1
    # Adding a record never shrinks the message, so "fits" is monotonic in the count:
    # a binary search packs log2(n) times. Zero records always fit: header, one question
    # (a name is at most 255 bytes) and OPT stay far below 512.
    fits, too_many = 0, len(answers)
    while too_many - fits > 1:
        middle = (fits + too_many) // 2
        reply.rr = answers[:middle]
        if len(reply.pack()) <= limit:
            fits = middle
        else:
            too_many = middle
    reply.rr = answers[:fits]
    return reply.pack()


def _reply_header(query: DNSHeader, rcode: int, aa: int = 0) -> DNSHeader:
    # A fresh header, not a copy of the query's: a client's AD bit (dig sets it) must not
    # come back as a claim that we validated DNSSEC. RD and CD are echoed (RFC 1035, 4035).
    return DNSHeader(id=query.id, qr=1, opcode=query.opcode, aa=aa, rd=query.rd, cd=query.cd, rcode=rcode)


def _bare_reply(header: DNSHeader, rcode: int, questions: list[DNSQuestion] = ()) -> bytes:
    return bytes(DNSRecord(_reply_header(header, rcode), questions=list(questions)).pack())


# --- DNS over TCP, without I/O ---------------------------------------------------------


def frame_tcp(message: bytes) -> bytes:
    """One message as sent on a TCP stream: its length in 2 bytes, big-endian (RFC 1035 4.2.2)."""
    if len(message) > TCP_LIMIT:
        raise ValueError(f"a DNS message over TCP is at most {TCP_LIMIT} bytes, not {len(message)}")
    return len(message).to_bytes(2, "big") + message


class DnsTcpDecoder:
    """Splits a TCP byte stream into DNS messages, however TCP cut or joined the segments.

    Holds at most one incomplete message (< 65,537 bytes) between calls."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The messages completed by ``data``, in stream order."""
        buffer = self._buffer
        buffer += data
        messages = []
        start = 0
        while len(buffer) - start >= 2:
            end = start + 2 + ((buffer[start] << 8) | buffer[start + 1])
            if end > len(buffer):
                break
            messages.append(bytes(buffer[start + 2 : end]))
            start = end
        del buffer[:start]
        return messages

    @property
    def pending(self) -> int:
        """Bytes received of a message not yet complete (0 at a message boundary)."""
        return len(self._buffer)


class DnsTcpSession:
    """One TCP connection of the server, without the socket: bytes in, (bytes out, close?).

    RFC 7766: queries may be pipelined and are answered in the order they came (the
    answering is synchronous, so order is free); the connection stays open for more.
    A message we cannot even reply to (shorter than a header, or a response) ends the
    session: after garbage the stream's framing cannot be trusted. A query whose body
    does not parse still gets FORMERR from the answerer, and the session goes on."""

    def __init__(self, answerer: DnsAnswerer):
        self.answerer = answerer
        self.decoder = DnsTcpDecoder()
        self.closed = False
        answerer.stats.tcp_connections += 1

    def received(self, data: bytes) -> tuple[bytes, bool]:
        """(framed replies to write, in order; whether to close the connection after them)."""
        if self.closed:
            return b"", True
        out = []
        for message in self.decoder.feed(data):
            reply = self.answerer.handle(message, over_tcp=True)
            if reply is None:
                self.closed = True
                break
            out.append(frame_tcp(reply))
        return b"".join(out), self.closed


# --- the phone side ----------------------------------------------------------------


class DnsLookupError(ValueError):
    """The lookup failed: ``rcode`` is the server's (None when the reply was unusable);
    ``negative_ttl``, for a name the server says does not exist, how long that answer
    may be kept (RFC 2308), None when it may not."""

    def __init__(self, message: str, rcode: int | None = None, negative_ttl: int | None = None):
        super().__init__(message)
        self.rcode = rcode
        self.negative_ttl = negative_ttl


class SrvTarget(NamedTuple):
    priority: int
    weight: int
    port: int
    target: str


def query_bytes(name: str, qtype: int, qid: int) -> bytes:
    """A recursive query for ``name`` (RD set), as a stub resolver sends it. DnsLookupError
    when ``name`` cannot be asked for at all (``dns_name_problem``)."""
    try:
        return bytes(DNSRecord(DNSHeader(id=qid, rd=1), q=DNSQuestion(name, qtype)).pack())
    except (UnicodeError, DNSLabelError) as exc:
        raise DnsLookupError(f"no DNS name ({_name_error(exc)}): nothing asked") from None


def dns_name_problem(name: str) -> str | None:
    """Why no query can be made for ``name``, or None. A host name from a URL a scenario
    gives (DHCP option 66, a PnP URL ...) may hold a character IDNA refuses, an empty
    label (``a..b``) or one over 63 bytes, or be over 255 bytes: a phone's stub resolver
    refuses such a name without sending anything, so the lookup fails at once."""
    try:
        DNSRecord(DNSHeader(id=0, rd=1), q=DNSQuestion(name, QTYPE.A)).pack()
    except (UnicodeError, DNSLabelError) as exc:
        return _name_error(exc)
    return None


def _name_error(exc: Exception) -> str:
    """The reason in words: IDNA's own ("Invalid character ..."), not the codec's wrapping."""
    return str(exc.__cause__ or exc) if isinstance(exc, UnicodeError) else str(exc).split(":")[0]


class DnsResolver:
    """Builds queries and reads answers for a phone; it remembers what it asked.

    ``parse_answer`` returns, following any CNAMEs in the answer: IP address strings for
    A/AAAA, strings for TXT and CNAME, ``SrvTarget``s (by priority, then weight
    descending) for SRV. An empty list means the name exists without that type.
    """

    def __init__(self) -> None:
        self._pending: dict[int, tuple[DNSLabel, int]] = {}

    def build_query(self, name: str, qtype: str | int, qid: int) -> bytes:
        """The query's bytes, remembered so that ``parse_answer`` takes only its reply."""
        qtype_num = getattr(QTYPE, qtype.upper()) if isinstance(qtype, str) else qtype
        message = query_bytes(name, qtype_num, qid)  # DnsLookupError: no DNS name
        self._pending[qid] = (DNSLabel(name), qtype_num)
        return message

    def parse_answer(self, data: bytes) -> list:
        return self.parse_answer_and_ttl(data)[0]

    def parse_answer_and_ttl(self, data: bytes) -> tuple[list, int]:
        """``parse_answer``'s list, and how long it may be kept: the smallest TTL of the
        records it came from, the CNAMEs followed included (RFC 1035 3.2.1, RFC 2181 5.2);
        0 when there are none."""
        try:
            reply = DNSRecord.parse(data)
        except Exception as exc:  # noqa: BLE001 - any undecodable reply is one error for the caller
            raise DnsLookupError(f"undecodable DNS reply: {exc}") from None
        asked = self._pending.get(reply.header.id)
        if not reply.header.qr or asked is None:
            raise DnsLookupError(f"not a reply to a query we sent (id {reply.header.id})")
        qname, qtype = asked
        if len(reply.questions) != 1 or name_key(reply.q.qname) != name_key(qname) or reply.q.qtype != qtype:
            raise DnsLookupError("reply is for a different question")
        del self._pending[reply.header.id]
        if reply.header.rcode != RCODE.NOERROR:
            rcode = reply.header.rcode
            kept = negative_ttl(reply, name_key(qname)) if rcode == RCODE.NXDOMAIN else None
            raise DnsLookupError(f"{qname}: {RCODE.get(rcode)}", rcode, kept)
        if reply.header.tc:
            raise DnsLookupError(f"{qname}: truncated reply", RCODE.NOERROR)
        found, ttl = _collect(reply.rr, name_key(qname), qtype)
        if not found:  # NODATA: kept as a negative answer is, or not at all
            ttl = negative_ttl(reply, name_key(qname)) or 0
        return found, ttl


def negative_ttl(reply: DNSRecord, key: Key) -> int | None:
    """How long a negative answer (no such name, or no record of the type) may be kept:
    the smaller of the TTL and the MINIMUM of the SOA in its authority section, for a
    zone the name is in (RFC 2308 5). None without one: such an answer is not kept."""
    for rr in reply.auth:
        if rr.rtype == QTYPE.SOA and key[len(key) - len(name_key(rr.rname)):] == name_key(rr.rname):
            return min(rr.ttl, rr.rdata.times[4])
    return None


def _collect(rrs: list[RR], key: Key, qtype: int) -> tuple[list, int]:
    names = {key}
    for _ in range(MAX_CNAME_HOPS):  # walk the chain however the server ordered it
        grown = names | {name_key(rr.rdata.label) for rr in rrs if rr.rtype == QTYPE.CNAME and name_key(rr.rname) in names}
        if grown == names:
            break
        names = grown
    if qtype == QTYPE.CNAME:
        names = {key}
    mine = [rr for rr in rrs if rr.rtype == qtype and name_key(rr.rname) in names]
    chain = [rr for rr in rrs if rr.rtype == QTYPE.CNAME and name_key(rr.rname) in names]
    ttl = min(rr.ttl for rr in mine + chain) if mine else 0
    if qtype == QTYPE.SRV:
        targets = [SrvTarget(rr.rdata.priority, rr.rdata.weight, rr.rdata.port, str(rr.rdata.target).rstrip(".")) for rr in mine]
        return sorted(targets, key=lambda t: (t.priority, -t.weight)), ttl
    if qtype == QTYPE.TXT:
        return [b"".join(rr.rdata.data).decode(errors="replace") for rr in mine], ttl
    if qtype == QTYPE.CNAME:
        return [str(rr.rdata.label).rstrip(".") for rr in mine], ttl
    return [str(ipaddress.ip_address(bytes(rr.rdata.data))) for rr in mine], ttl

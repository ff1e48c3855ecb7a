"""labsim's DNS server, the part without I/O: its configuration and the zone file format.

The answerer itself is ``labsim.wire.dns_records.DnsAnswerer`` (bytes in, bytes out) and
``DnsTcpSession`` (a TCP stream's framing and pipelining); ``labsim.services.dns_net``
puts them on a Twisted UDP port and a TCP port with the same number (RFC 7766: TCP is
required; a client whose UDP answer came back truncated retries over TCP).

The zone file has one record a line, ``NAME [TTL] TYPE VALUE`` (``#`` or ``;``
comments), e.g.::

    provisioning.lab.        A     127.0.0.1
    phones.lab.         60   CNAME provisioning.lab.
    _http._tcp.lab.          SRV   10 5 8080 provisioning.lab.
    provisioning.lab.        TXT   "labsim provisioning"
    lab.                3600 SOA   ns.lab. hostmaster.lab. 1 3600 600 86400 60

With an SOA, the server's negative answers for names at or below it carry it (RFC 2308),
and a resolver may keep them for min(its TTL, MINIMUM): 60 s here.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from labsim.wire.dns_records import (  # re-exported: the public DNS API lives here
    DnsLookupError,
    DnsRecordConfig,
    DnsResolver,
    SrvTarget,
)
from labsim.wire.numbers import is_number

__all__ = [
    "DnsLookupError",
    "DnsRecordConfig",
    "DnsResolver",
    "DnsServerConfig",
    "SrvTarget",
    "parse_zone",
]


# RFC 7766 6.2.3 leaves the idle timeout to the server and suggests seconds, not minutes.
TCP_IDLE_TIMEOUT_S = 10.0
# Open TCP connections at most; more are closed at once (the client falls back or
# retries). Each costs a descriptor, shared with the phones of the same process.
TCP_MAX_CONNECTIONS = 1000
# Of those, at most this many from one client address, so one client holding connections
# open cannot lock the others out (they are still served while it holds its maximum).
TCP_MAX_CONNECTIONS_PER_ADDRESS = 100
# As for HTTP (services/http_web.py): a boot storm must not overflow the accept queue
# (Twisted's default is 50; the kernel caps this at net.core.somaxconn).
TCP_LISTEN_BACKLOG = 4096
# With port 0 the UDP port is picked first and TCP must get the same number; when that
# number is taken for TCP, pick again.
PORT_ATTEMPTS = 20


@dataclass
class DnsServerConfig:
    records: list[DnsRecordConfig]
    # A TCP connection with nothing received for this long is closed (None: never).
    tcp_idle_timeout_s: float | None = TCP_IDLE_TIMEOUT_S
    tcp_max_connections: int = TCP_MAX_CONNECTIONS
    tcp_max_connections_per_address: int = TCP_MAX_CONNECTIONS_PER_ADDRESS  # 0: no per-address limit


def parse_zone(text: str) -> list[DnsRecordConfig]:
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        lexer = shlex.shlex(line, posix=True)  # quotes keep a TXT value's spaces
        lexer.whitespace_split = True
        lexer.commenters = "#;"
        try:
            fields = list(lexer)
            if not fields:
                continue
            name, rest = fields[0], fields[1:]
            ttl = 300
            if rest and is_number(rest[0]):
                ttl, rest = int(rest[0]), rest[1:]
            rtype, value = rest[0].upper(), " ".join(rest[1:])
            if not value:
                raise IndexError
        except (IndexError, ValueError):  # too few fields, or an unclosed quote
            raise ValueError(f"zone line {lineno}: expected NAME [TTL] TYPE VALUE, got {line!r}") from None
        records.append(DnsRecordConfig(name, rtype, value, ttl))
    return records

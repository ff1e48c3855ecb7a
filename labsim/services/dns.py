"""labsim's DNS server: the I/O-free ``DnsAnswerer`` on a Twisted UDP port.

Run alone: ``python -m labsim.services.dns --zone FILE [--host H] [--port P]``. The zone
file has one record a line, ``NAME [TTL] TYPE VALUE`` (``#`` or ``;`` comments), e.g.::

    provisioning.lab.        A     127.0.0.1
    phones.lab.         60   CNAME provisioning.lab.
    _http._tcp.lab.          SRV   10 5 8080 provisioning.lab.
    provisioning.lab.        TXT   "labsim provisioning"
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol

from labsim.services.udp import bind_udp
from labsim.wire.dns_records import (  # re-exported: the public DNS API lives here
    DnsAnswerer,
    DnsLookupError,
    DnsRecordConfig,
    DnsResolver,
    DnsStats,
    SrvTarget,
    Zone,
)

__all__ = [
    "DnsLookupError",
    "DnsRecordConfig",
    "DnsResolver",
    "DnsServerConfig",
    "DnsServerHandle",
    "SrvTarget",
    "load_zone_file",
    "parse_zone",
    "start_dns_server",
]


@dataclass
class DnsServerConfig:
    records: list[DnsRecordConfig]


class DnsServerProtocol(DatagramProtocol):
    def __init__(self, answerer: DnsAnswerer):
        self.answerer = answerer

    def datagramReceived(self, data: bytes, addr) -> None:
        reply = self.answerer.handle(data)
        if reply is not None:
            self.transport.write(reply, addr)


@dataclass
class DnsServerHandle:
    port: int
    stats: DnsStats
    _listening: object

    def stop(self) -> defer.Deferred:
        return defer.maybeDeferred(self._listening.stopListening)


def start_dns_server(reactor, config: DnsServerConfig, host: str = "127.0.0.1", port: int = 5353) -> DnsServerHandle:
    """Listen on ``host:port`` (0: any free port; the handle says which)."""
    answerer = DnsAnswerer(Zone(config.records))  # raises ValueError on a bad record, before binding
    listening = bind_udp(reactor, DnsServerProtocol(answerer), host, port)
    return DnsServerHandle(listening.getHost().port, answerer.stats, listening)


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
            if rest and rest[0].isdigit():
                ttl, rest = int(rest[0]), rest[1:]
            rtype, value = rest[0].upper(), " ".join(rest[1:])
            if not value:
                raise IndexError
        except (IndexError, ValueError):  # too few fields, or an unclosed quote
            raise ValueError(f"zone line {lineno}: expected NAME [TTL] TYPE VALUE, got {line!r}") from None
        records.append(DnsRecordConfig(name, rtype, value, ttl))
    return records


def load_zone_file(path: str) -> list[DnsRecordConfig]:
    with open(path, encoding="utf-8") as f:
        return parse_zone(f.read())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labsim.services.dns")
    parser.add_argument("--zone", required=True, help="zone file: NAME [TTL] TYPE VALUE per line")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5353, help="0 picks a free port")
    args = parser.parse_args(argv)

    from twisted.internet import reactor

    handle = start_dns_server(reactor, DnsServerConfig(load_zone_file(args.zone)), args.host, args.port)
    # One line a test or a script can wait for (and read the port from, with --port 0).
    print(f"labsim dns listening on {args.host}:{handle.port}", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

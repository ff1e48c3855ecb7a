"""The Twisted edge of the DHCP server: a UDP socket around :class:`DhcpServer`.

Datagrams are decoded, handed to the I/O-free server with the reactor's time, and the
replies encoded and sent. Nothing a client sends can raise out of here: malformed
datagrams are counted and dropped.

Run standalone (used by the perfdhcp interop test and the benchmark)::

    python -m labsim.services.dhcp_udp --host 127.0.0.1 --port 6767

prints ``READY <host> <port>`` once bound and, when stopped with SIGTERM/SIGINT, one
JSON line of counters (plus ``leases_held``).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys

from twisted.internet import error as twisted_error
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.python import log

from labsim.services.dhcp import DhcpServer, DhcpServerConfig
from labsim.services.udp import bind_udp
from labsim.wire.dhcp import DhcpDecodeError, decode, encode

# Counters the edge adds to the server's own (one dict, so a report sees them together).
EDGE_COUNTERS = ("received", "malformed", "sent", "send_errors", "unroutable", "internal_errors")


class DhcpServerProtocol(DatagramProtocol):
    def __init__(self, server: DhcpServer, clock: IReactorTime, *, loopback_only: bool = True):
        self.server = server
        self.clock = clock
        # Project rule and a safety net: a server bound to loopback never sends anywhere
        # else, whatever giaddr/ciaddr a datagram claims.
        self.loopback_only = loopback_only
        self.stats = server.stats
        for key in EDGE_COUNTERS:
            self.stats.setdefault(key, 0)
        self.server_port: int | None = None
        self._logged_internal_error = False

    def startProtocol(self) -> None:
        # Replies to a relay go to giaddr on the port this server listens on.
        self.server_port = self.transport.getHost().port

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        stats = self.stats
        stats["received"] += 1
        try:
            msg = decode(data)
        except DhcpDecodeError:
            stats["malformed"] += 1
            return
        try:
            replies = self.server.handle(msg, self.clock.seconds())
            for reply in replies:
                to_addr = reply.to_addr
                if self.loopback_only and not to_addr.startswith("127."):
                    stats["unroutable"] += 1
                    continue
                to_port = self.server_port if reply.to_port is None else reply.to_port
                try:
                    self.transport.write(encode(reply.message), (to_addr, to_port))
                    stats["sent"] += 1
                except (OSError, twisted_error.MessageLengthError):
                    stats["send_errors"] += 1
        except Exception:
            # A bug must not take the listener down; count it and log the first one.
            stats["internal_errors"] += 1
            if not self._logged_internal_error:
                self._logged_internal_error = True
                log.err(None, "DHCP server failed on a datagram (further failures only counted)")


def start_dhcp_server(
    reactor,
    config: DhcpServerConfig,
    host: str = "127.0.0.1",
    port: int = 6767,
    **bind_options,
) -> tuple[DhcpServerProtocol, IListeningPort]:
    """Bind a DHCP server on ``host:port``; ``bind_options`` go to :func:`bind_udp`."""
    protocol = DhcpServerProtocol(
        DhcpServer(config), reactor, loopback_only=ipaddress.IPv4Address(host).is_loopback
    )
    listening = bind_udp(reactor, protocol, host, port, **bind_options)
    return protocol, listening


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m labsim.services.dhcp_udp", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6767)
    parser.add_argument("--server-id", help="option 54 (default: --host)")
    parser.add_argument("--subnet", default=DhcpServerConfig.subnet)
    parser.add_argument("--pool-start", default=DhcpServerConfig.pool_start)
    parser.add_argument("--pool-end", default=DhcpServerConfig.pool_end)
    parser.add_argument("--lease-time", type=int, default=DhcpServerConfig.lease_time_s)
    parser.add_argument("--offer-hold", type=float, default=DhcpServerConfig.offer_hold_s)
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option by number or name; VALUE is YAML (e.g. 6=[10.1.0.1,10.1.0.2])",
    )
    parser.add_argument("--recv-buffer", type=int, default=4 * 1024 * 1024, help="SO_RCVBUF bytes")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import yaml
    from twisted.internet import reactor

    from labsim.wire.dhcp_options import encode_options

    args = _parse_args(argv)
    raw_options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--option {item!r}: expected KEY=VALUE")
        raw_options[key] = yaml.safe_load(value)
    config = DhcpServerConfig(
        server_id=args.server_id or args.host,
        subnet=args.subnet,
        pool_start=args.pool_start,
        pool_end=args.pool_end,
        lease_time_s=args.lease_time,
        offer_hold_s=args.offer_hold,
        options=encode_options(raw_options),
    )
    protocol, listening = start_dhcp_server(reactor, config, args.host, args.port, recv_buffer=args.recv_buffer)
    host = listening.getHost()
    print(f"READY {host.host} {host.port}", flush=True)
    reactor.run()  # SIGTERM/SIGINT stop it
    summary = {**protocol.stats, "leases_held": len(protocol.server.leases)}
    print(json.dumps(summary, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

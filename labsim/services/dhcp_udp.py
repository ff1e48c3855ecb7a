"""The Twisted edge of the DHCP server: UDP sockets and a lease file around :class:`DhcpServer`.

Datagrams are decoded, handed to the I/O-free server with the reactor's time, and the
replies encoded and sent. Nothing a client sends can raise out of here: malformed
datagrams are counted and dropped.

One server can listen twice: on ``host:port`` for relayed requests (the fleet is a relay
agent on loopback), and, given an ``interface``, on 0.0.0.0:67 pinned to that interface
for real broadcast clients (a namespace lab). Both sockets share one lease table.

Run standalone (used by the perfdhcp interop test and the benchmark)::

    python -m labsim.services.dhcp_udp --host 127.0.0.1 --port 6767

prints ``READY <host> <port>`` once bound and, when stopped with SIGTERM/SIGINT, one
JSON line of counters (plus ``leases_held``).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import sys
from collections.abc import Callable

from twisted.internet import defer
from twisted.internet import error as twisted_error
from twisted.internet.interfaces import IListeningPort, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.python import log

from labsim.services.dhcp import BROADCAST, DhcpServer, DhcpServerConfig, Reply
from labsim.services.lease_file import read_lease_file, write_lease_file
from labsim.net.udp import add_arp_entry, bind_udp
from labsim.wire.dhcp import DhcpDecodeError, DhcpMessage, decode, encode

# Counters the edge adds to the server's own (one dict, so a report sees them together).
EDGE_COUNTERS = (
    "received", "malformed", "sent", "send_errors", "unroutable", "internal_errors",
    # unicasts to a client with no address yet: neighbour entries made / refused
    "arp_entries", "arp_errors",
)  # fmt: skip
STANDARD_SERVER_PORT = 67
# A storm's DHCP datagrams arrive in bursts: with the default 208 KB receive buffer the
# server socket dropped ~2,400 of 11,000 relayed datagrams from 2,000 phones (and each
# drop costs that phone a 4 s+ retransmission). 4 MiB (~6,500 datagrams: each costs ~1.3 KB
# of the buffer on loopback) absorbs the burst. Not more: 32 MiB (~52,000) was tried, and
# at 50,000 phones the queue then held more than the 4 s a client waits before it
# retransmits, the server answered stale requests while the retransmissions overflowed it
# (491,646 drops by 200 s, against 261,823 in a whole run with 4 MiB).
DEFAULT_RECV_BUFFER = 4 << 20

# What a live observer is told after each datagram: the protocol that took it, the
# request, the replies, and a note when nothing could be offered ("pool exhausted").
DhcpObserver = Callable[["DhcpServerProtocol", DhcpMessage, list[Reply], "str | None"], None]


class DhcpServerProtocol(DatagramProtocol):
    noisy = False

    def __init__(
        self,
        server: DhcpServer,
        clock: IReactorTime,
        *,
        loopback_only: bool = True,
        device: str | None = None,
    ):
        self.server = server
        self.clock = clock
        # Project rule and a safety net: a server bound to loopback never sends anywhere
        # else, whatever giaddr/ciaddr a datagram claims.
        self.loopback_only = loopback_only
        # The interface a device-bound socket serves broadcast clients on (None: relays).
        self.device = device
        self.stats = server.stats
        for key in EDGE_COUNTERS:
            self.stats.setdefault(key, 0)
        self.server_port: int | None = None
        # Optional live observer (labsim serve's log). None costs one check per datagram:
        # nothing is formatted unless someone listens.
        self.on_event: DhcpObserver | None = None
        self._logged_internal_error = False
        self._logged_exhaustion = False
        self._logged_arp_error = False

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
            exhausted_before = stats["pool_exhausted"]
            replies = self.server.handle(msg, self.clock.seconds())
            for reply in replies:
                self._send(reply)
            exhausted = stats["pool_exhausted"] != exhausted_before
            if exhausted and not self._logged_exhaustion:
                self._logged_exhaustion = True
                log.msg(f"DHCP pool exhausted ({self.server.pool.size} addresses): clients go unanswered "
                        "(counted in pool_exhausted)")
            if self.on_event is not None:
                self.on_event(self, msg, replies, "pool exhausted" if exhausted else None)
        except Exception:
            # A bug must not take the listener down; count it and log the first one.
            stats["internal_errors"] += 1
            if not self._logged_internal_error:
                self._logged_internal_error = True
                log.err(None, "DHCP server failed on a datagram (further failures only counted)")

    def _send(self, reply: Reply) -> None:
        stats = self.stats
        to_addr = reply.to_addr
        if reply.to_hardware is not None:
            to_addr = self._unicast_or_broadcast(to_addr, reply.to_hardware)
        if self.loopback_only and not to_addr.startswith("127."):
            stats["unroutable"] += 1
            return
        to_port = self.server_port if reply.to_port is None else reply.to_port
        try:
            self.transport.write(encode(reply.message), (to_addr, to_port))
            stats["sent"] += 1
        except (OSError, twisted_error.MessageLengthError):
            stats["send_errors"] += 1

    def _unicast_or_broadcast(self, ip: str, mac: bytes) -> str:
        """RFC 2131 §4.1 unicast to a client that has no address yet: only on an
        interface, after telling the kernel where ``ip`` is; otherwise broadcast."""
        if self.device is None:
            return BROADCAST
        try:
            add_arp_entry(self.transport.getHandle(), ip, mac, self.device)
        except OSError as exc:
            self.stats["arp_errors"] += 1
            if not self._logged_arp_error:
                self._logged_arp_error = True
                log.msg(f"DHCP on {self.device}: cannot add a neighbour entry ({exc.strerror}); broadcasting instead")
            return BROADCAST
        self.stats["arp_entries"] += 1
        return ip


class LeaseFileKeeper:
    """Keeps the lease file in step with the server: loaded at start, rewritten at most
    once per ``interval_s`` when the leases changed (never per packet), and at stop.

    Its ticks fall on a grid of ``interval_s`` from ``start()``, but only where there is
    something to do: the first tick (which writes the file whatever it holds), the tick
    after a change (the server tells it: ``on_leases_changed``), the tick at which the
    next lease runs out (to save it as free though nobody sent anything), and, after a
    failed write, every tick until one succeeds. A timer firing every second for nothing
    was half the CPU of a simulated week (docs/performance.md)."""

    def __init__(self, server: DhcpServer, path: str, clock: IReactorTime, interval_s: float = 1.0):
        self.server = server
        self.path = path
        self.clock = clock
        self.interval_s = interval_s
        self.stats = server.stats
        self.stats.setdefault("lease_file_writes", 0)
        self.stats.setdefault("lease_file_errors", 0)
        self._written_version: int | None = None  # None: write once even if nothing changes
        self._origin: float | None = None  # start(): where the grid of ticks begins; None: stopped
        self._tick_call = None
        self._tick_at = 0.0
        self._logged_error = False

    def load(self) -> None:
        """Restore the saved leases (LeaseFileError, naming file and line, if corrupt)."""
        self.server.restore(read_lease_file(self.path), self.clock.seconds())

    def start(self) -> None:
        self._origin = self.clock.seconds()
        self.server.on_leases_changed = self._changed
        self._arm(self._origin + self.interval_s)

    def _changed(self) -> None:
        if self._origin is not None:
            self._arm(self._next_tick(self.clock.seconds(), strictly_after=True))

    def _next_tick(self, moment: float, strictly_after: bool = False) -> float:
        """The first tick of the grid at ``moment`` or after it (``strictly_after``: after it)."""
        steps = math.ceil((moment - self._origin) / self.interval_s)
        tick = self._origin + max(steps, 1) * self.interval_s
        return tick + self.interval_s if strictly_after and tick <= moment else tick

    def _arm(self, at: float) -> None:
        """Tick at ``at`` unless a tick is due sooner."""
        call = self._tick_call
        if call is not None and call.active():
            if self._tick_at <= at:
                return
            call.cancel()
        self._tick_at = at
        self._tick_call = self.clock.callLater(max(0.0, at - self.clock.seconds()), self._tick)

    def _tick(self) -> None:
        self._tick_call = None
        self.save_if_changed()
        now = self.clock.seconds()
        if self.server.lease_version != self._written_version:  # the write failed: try again next tick
            self._arm(self._next_tick(now, strictly_after=True))
            return
        expiry = self.server.leases.next_expiry()
        if expiry is not None:
            self._arm(self._next_tick(max(expiry, now), strictly_after=expiry <= now))

    def save_if_changed(self) -> None:
        # Leases that ran out while nobody sent anything are freed first, so the file
        # does not keep listing them as bound.
        self.server.expire(self.clock.seconds())
        if self.server.lease_version != self._written_version:
            self.save()

    def save(self) -> None:
        version = self.server.lease_version
        try:
            write_lease_file(self.path, self.server.lease_records())
        except OSError as exc:
            self.stats["lease_file_errors"] += 1
            if not self._logged_error:
                self._logged_error = True
                log.msg(f"DHCP lease file {self.path}: cannot write it ({exc.strerror}); retrying every "
                        f"{self.interval_s:g}s")
            return
        self._written_version = version
        self.stats["lease_file_writes"] += 1

    def stop(self) -> None:
        self._origin = None
        if self.server.on_leases_changed == self._changed:
            self.server.on_leases_changed = None
        if self._tick_call is not None and self._tick_call.active():
            self._tick_call.cancel()
        self._tick_call = None
        self.save_if_changed()


class DhcpListening:
    """The sockets of one DHCP server and its lease file, stopped together.

    Behaves like the IListeningPort of the first (relay) socket for ``getHost``, so
    callers that bound one socket before see no difference."""

    def __init__(self, ports: list[IListeningPort], protocols: list[DhcpServerProtocol],
                 keeper: LeaseFileKeeper | None = None):
        self.ports = ports
        self.protocols = protocols
        self.keeper = keeper

    def getHost(self):
        return self.ports[0].getHost()

    def set_observer(self, observer: DhcpObserver | None) -> None:
        for protocol in self.protocols:
            protocol.on_event = observer

    def stopListening(self) -> defer.Deferred:
        """Close every socket, then write the lease file a last time."""
        stopping = [defer.maybeDeferred(port.stopListening) for port in self.ports]
        self.ports = self.ports[:1]  # getHost stays answerable; a second stop is harmless

        def save(_):
            if self.keeper is not None:
                self.keeper.stop()

        return defer.DeferredList(stopping).addCallback(save)


def start_dhcp_server(
    reactor,
    config: DhcpServerConfig,
    host: str = "127.0.0.1",
    port: int = 6767,
    *,
    interface: str | None = None,
    interface_port: int = STANDARD_SERVER_PORT,
    lease_file: str | None = None,
    recv_buffer: int | None = DEFAULT_RECV_BUFFER,
    clock: IReactorTime | None = None,
    **bind_options,
) -> tuple[DhcpServerProtocol, DhcpListening]:
    """Start a DHCP server on ``host:port`` (relayed requests); ``bind_options`` go to
    :func:`bind_udp`.

    ``interface``: also serve broadcast clients on that interface, from a socket bound
    to 0.0.0.0:``interface_port`` pinned to it (SO_BINDTODEVICE + SO_BROADCAST; root).
    ``lease_file``: restore leases from it first (a corrupt file raises LeaseFileError
    before anything is bound) and keep it up to date.
    """
    clock = clock if clock is not None else reactor
    server = DhcpServer(config)
    keeper = None
    if lease_file:
        keeper = LeaseFileKeeper(server, lease_file, clock)
        keeper.load()
    protocol = DhcpServerProtocol(server, clock, loopback_only=ipaddress.IPv4Address(host).is_loopback)
    listening = bind_udp(reactor, protocol, host, port, recv_buffer=recv_buffer, **bind_options, exclusive=True)
    ports, protocols = [listening], [protocol]
    if interface:
        on_link = DhcpServerProtocol(server, clock, loopback_only=False, device=interface)
        try:
            ports.append(bind_udp(reactor, on_link, "0.0.0.0", interface_port, reuse_addr=True, broadcast=True,
                                  device=interface, recv_buffer=recv_buffer))
        except Exception:
            listening.stopListening()
            raise
        protocols.append(on_link)
    if keeper is not None:
        keeper.start()
    return protocol, DhcpListening(ports, protocols, keeper)


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
    parser.add_argument("--recv-buffer", type=int, default=DEFAULT_RECV_BUFFER, help="receive buffer bytes")
    parser.add_argument("--interface", help="also serve broadcast clients on this interface (root)")
    parser.add_argument("--interface-port", type=int, default=STANDARD_SERVER_PORT)
    parser.add_argument("--lease-file", help="keep leases in this file across restarts")
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
    protocol, listening = start_dhcp_server(
        reactor, config, args.host, args.port, recv_buffer=args.recv_buffer,
        interface=args.interface, interface_port=args.interface_port, lease_file=args.lease_file,
    )  # fmt: skip
    reactor.addSystemEventTrigger("before", "shutdown", listening.stopListening)
    host = listening.getHost()
    print(f"READY {host.host} {host.port}", flush=True)
    reactor.run()  # SIGTERM/SIGINT stop it
    summary = {**protocol.stats, "leases_held": len(protocol.server.leases)}
    print(json.dumps(summary, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

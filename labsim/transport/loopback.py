"""How phones reach the network on one host: a DHCP relay on loopback, and downloads.

DHCP has no broadcast between processes on one host, so the fleet does what ISC
perfdhcp does: it acts as a relay agent. Every phone's DHCP message leaves from one
socket on the relay address (127.0.0.2 by default) with ``giaddr`` set to it and
``hops`` 1, unicast to the server; the server answers the relay on the server port,
and the relay hands each reply to the phone whose MAC is in ``chaddr``.
"""

from __future__ import annotations

import errno
import socket
import time
from urllib.parse import unquote, urlsplit

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.python import log

from labsim.phones.dns_client import PhoneDns
from labsim.phones.events import Credentials, Fetch, FetchResult
from labsim.net.udp import bind_udp
from labsim.transport.ftp_fetch import ftp_get, ftp_put
from labsim.transport.dns_lookup import LabResolver, LookupFailed, lookup_counters
from labsim.transport.guard import LOCAL_NAMES, NotLoopback, loopback_address, parse_ip
from labsim.transport.http_fetch import HttpFetcher, keep_alive_for
from labsim.transport.tftp_client import TftpNotFound, TftpTimeout, TftpError, tftp_get, tftp_put
from labsim.transport.transfer_gate import TransferGate
from labsim.wire import dhcp, sip_pnp


# The relay's receive buffer: 4 MiB holds ~6,500 replies (a loopback datagram costs ~1.3 KB
# of it); the kernel's 208 KB default dropped ~20 % of a 2,000-phone storm's. A deeper queue
# holds replies longer than the phones wait for them (see dhcp_udp.DEFAULT_RECV_BUFFER).
RELAY_BUFFER = 4 << 20

# How long (CPU seconds) the relay hands out replies in one go before the reactor runs its due
# timers (the power-on pacer's tick, the boot timers of the phones it released). Twisted
# reads up to 256 KB a readiness event, ~800 Kea replies at ~25 us of CPU each: a 20 ms
# turn in which the schedule stands still, and a late tick releases a burst. Bounded by
# time, not bytes; replies left waiting are read in the next turn (the socket stays
# readable). While replies keep arriving faster than they are read (each read stopped by
# its budget, not by an empty socket), the budget doubles, up to about Twisted's 256 KB:
# the fleet is then behind, and its replies come first, as they did, rather than new
# phones powering on into a queue of unread answers (measured on a saturated machine: a
# fixed 1 ms budget let a 5,000/s storm finish a tenth of its exchanges in time).
RELAY_READ_BUDGET_S = 0.001
RELAY_READ_BUDGET_MAX_S = 0.032


class DhcpRelay(DatagramProtocol):
    def __init__(self, server: tuple[str, int], relay_address: str, link=None):
        self.server = server
        self.relay_address = relay_address
        self._giaddr = socket.inet_aton(relay_address)
        self.link = link  # a FaultyLink for the "dhcp" service, or None
        self.phones: dict[bytes, object] = {}
        self.stats = {"sent": 0, "received": 0, "malformed": 0, "unknown_client": 0}

    def send(self, driver, message: dhcp.DhcpMessage) -> None:
        data = dhcp.relayed(dhcp.encode(message), self._giaddr)
        self.stats["sent"] += 1
        if self.link is None:
            self._write(data)
        else:
            self.link.carry("in", data, self._write)

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            # The socket's own sendto: Twisted's port.write re-validates the address on
            # every call (~15 us per message in a profile of a 5,000 DORA/s fleet), and
            # ours was checked once (a loopback address) when the network was made.
            try:
                self.transport.getHandle().sendto(data, self.server)
            except OSError:  # a full socket buffer: as lost on the wire, the phone retransmits
                self.stats["send_errors"] = self.stats.get("send_errors", 0) + 1

    def datagramReceived(self, data: bytes, addr) -> None:
        if self.link is None:
            self._received(data)
        else:
            self.link.carry("out", data, self._received)

    def _received(self, data: bytes) -> None:
        self.stats["received"] += 1
        try:
            message = dhcp.decode(data)
        except dhcp.DhcpDecodeError:
            self.stats["malformed"] += 1
            return
        driver = self.phones.get(message.chaddr)
        if driver is None:
            self.stats["unknown_client"] += 1
            return
        driver.dhcp_received(message)


def read_datagrams(port, budget_s: float, clock=time.thread_time, every: int = 4) -> bool:
    """Hand the protocol of UDP ``port`` (a Twisted ``udp.Port``) the datagrams waiting at
    its socket until none is left or ``budget_s`` seconds of ``clock`` have passed, looked
    at after every ``every`` datagrams (it reads at least that many, if they wait); the rest
    wait for the next readiness event. True when it read everything that waited.

    The clock is this thread's CPU time: on a loaded machine a wall-clock budget would be
    spent by other processes while this one waits for a core, and the reads would shrink
    to a few replies each exactly when the fleet is most behind. (Reading it costs ~1 us,
    hence not after every ~25 us reply.)"""
    sock = getattr(port, "socket", None)
    if sock is None:  # the port has stopped listening
        return True
    receive, deliver, size = sock.recvfrom, port.protocol.datagramReceived, port.maxPacketSize
    deadline = clock() + budget_s
    count = 0
    while True:
        try:
            data, addr = receive(size)
        except OSError:  # nothing more waiting (EAGAIN), or an ICMP error: nothing to hand over
            return True
        try:
            deliver(data, addr)
        except Exception:  # one bad reply must not stop the others being read
            log.err(None, "labsim: handling a DHCP reply failed")
        count += 1
        if count % every == 0 and clock() >= deadline:
            return False


class BoundedReads:
    """A UDP port's ``doRead`` that reads for ``budget_s`` a readiness event, twice as long
    after each read its budget cut short, up to ``max_s``; back to ``budget_s`` once a read
    empties the socket (RELAY_READ_BUDGET_S)."""

    def __init__(self, port, budget_s: float, max_s: float, clock=time.thread_time, every: int = 4):
        self.port, self.first, self.max_s, self.clock, self.every = port, budget_s, max_s, clock, every
        self.budget_s = budget_s

    def __call__(self) -> None:
        # None: anything else returned from doRead the reactor takes as the port being lost.
        if read_datagrams(self.port, self.budget_s, self.clock, self.every):
            self.budget_s = self.first
        else:
            self.budget_s = min(self.budget_s * 2, self.max_s)


class SipPort(DatagramProtocol):
    """The fleet's one SIP socket for PnP. Loopback has no multicast, so a SUBSCRIBE for
    224.0.1.75:5060 goes unicast to the fleet's PnP server instead; answers come back
    here and go to the phone whose MAC is the user part of the dialog's phone URI."""

    def __init__(self, pnp_server: tuple[str, int], phones: dict[bytes, object], stats: dict):
        self.pnp_server = pnp_server
        self.phones = phones  # MAC bytes -> driver, shared with the DHCP relay
        self.stats = stats

    def send(self, message: sip_pnp.SipMessage, to: tuple[str, int] | None) -> None:
        target = to or self.pnp_server
        try:
            target = (loopback_address(target[0]), target[1])
        except NotLoopback:
            self.stats["sip_refused"] += 1
            return
        self.stats["sip_sent"] += 1
        if self.transport is not None:
            self.transport.write(message.encode(), target)

    def datagramReceived(self, data: bytes, addr) -> None:
        self.stats["sip_received"] += 1
        try:
            message = sip_pnp.parse(data)
            # A request (the NOTIFY) names the phone in To, a response (to its SUBSCRIBE) in From.
            user = sip_pnp.uri_user(sip_pnp.parse_name_addr(message.header("to" if message.is_request else "from"))[0])
            mac = bytes.fromhex(user) if len(user) == 12 else b""
        except (sip_pnp.SipParseError, ValueError):
            self.stats["sip_malformed"] += 1
            return
        driver = self.phones.get(mac)
        if driver is None:
            self.stats["sip_unknown_phone"] += 1
            return
        driver.sip_received(message, (addr[0], addr[1]), data)  # data: for a capture, if any


# Any loopback address other than a relay's: a probe there tells a wildcard holder of
# the port (which the relay may share) from one bound to the relay's own address.
_OTHER_LOOPBACK = ("127.0.0.254", "127.0.0.253")


def _bind_fails(address: str, port: int) -> int | None:
    """The errno of binding ``address:port`` without SO_REUSEADDR (None: it is free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, port))
        except OSError as exc:
            return exc.errno
    return None


def refuse_a_taken_relay_address(relay_address: str, port: int) -> None:
    """ValueError when another socket is bound to exactly ``relay_address:port``: another
    fleet's relay (a second labsim run against the same server), which would get part of
    this fleet's DHCP replies and give it part of its own. A holder of the port on every
    address (0.0.0.0, as dnsmasq binds without bind-interfaces) is fine: the relay shares
    the port with it, and its replies go to the relay's own address."""
    if _bind_fails(relay_address, port) != errno.EADDRINUSE:
        return  # free, or not ours to probe (a privileged port without the privilege)
    other = next(address for address in _OTHER_LOOPBACK if address != relay_address)
    if _bind_fails(other, port) == errno.EADDRINUSE:
        return  # held on every address: a wildcard server, which the relay can share
    raise ValueError(
        f"the DHCP relay address {relay_address}:{port} is already in use by another process "
        f"(another labsim run against the same server?): the two would share each other's "
        f"DHCP replies; give this run another network.relay_address (any 127.x.y.z)")


class LoopbackNetwork:
    """The ``PhoneNetwork`` for a loopback lab."""

    # Where a download may go: loopback only here (a real network checks its allow-list).
    destination = staticmethod(loopback_address)

    def __init__(self, reactor, *, dhcp_server: tuple[str, int], relay_address: str = "127.0.0.2",
                 http_timeout_s: float = 30.0, dhcp_link=None, pnp_server: tuple[str, int] | None = None,
                 dns_server: tuple[str, int] | None = None, http_connections: str = "per_request"):
        loopback_address(dhcp_server[0])
        loopback_address(relay_address)
        self.reactor = reactor
        self.relay = DhcpRelay(dhcp_server, relay_address, dhcp_link)
        # The server answers a relay on the server port, so the relay listens on it too.
        # Replies arrive in bursts in a storm (RELAY_BUFFER).
        # SO_REUSEADDR stays on: dnsmasq without bind-interfaces holds 0.0.0.0:67 and the
        # relay must share the port. The price would be two fleets on one relay address
        # silently sharing each other's replies: refused here instead.
        refuse_a_taken_relay_address(relay_address, dhcp_server[1])
        self.relay_port = bind_udp(reactor, self.relay, relay_address, dhcp_server[1], recv_buffer=RELAY_BUFFER)
        self.relay_port.doRead = BoundedReads(self.relay_port, RELAY_READ_BUDGET_S, RELAY_READ_BUDGET_MAX_S)
        # A phone fetches each file on a connection of its own, unless the scenario pools
        # keep-alive connections for the fleet (network.http_connections).
        self.http = HttpFetcher(reactor, timeout_s=http_timeout_s, keep_alive=keep_alive_for(http_connections))
        self.tftp_gates: dict[tuple[str, int], TransferGate] = {}  # per server: its transfers in flight
        self.stats = {"fetch_refused": 0, "dns_failures": 0, "dns_lookups": lookup_counters()}
        # PnP: a SIP socket only when the fleet has a PnP server to send to.
        self.sip = self.sip_port = None
        if pnp_server is not None:
            loopback_address(pnp_server[0])
            self.stats.update(sip_sent=0, sip_received=0, sip_malformed=0, sip_unknown_phone=0, sip_refused=0)
            self.sip = SipPort(pnp_server, self.relay.phones, self.stats)
            self.sip_port = bind_udp(reactor, self.sip, relay_address, 0)
        # Host names in URLs: only through the lab's DNS server, never the system's.
        self.resolver = None
        if dns_server is not None:
            loopback_address(dns_server[0])
            self.resolver = LabResolver(reactor, dns_server, stats=self.stats["dns_lookups"])

    @property
    def pnp_reachable(self) -> bool:
        return self.sip is not None

    def send_sip(self, driver, message, to) -> None:
        if self.sip is not None:
            self.sip.send(message, to)

    def attach(self, driver) -> None:
        self.relay.phones[driver.phone.mac_bytes] = driver

    def phone_view(self, phone):
        """What one phone is given as its network (a real network gives each its own view)."""
        return self

    def send_dhcp(self, driver, message) -> None:
        self.relay.send(driver, message)

    def read_waiting(self) -> None:
        """Hand out every DHCP reply already waiting at the relay socket (PhoneDriver calls
        this before a late timer fires, so it does not miss a reply that waits unread)."""
        # As Twisted reads a readiness event (up to the port's maxThroughput, 256 KB), not
        # the relay's time budget: a reply left unread here makes the timer stale.
        port = self.relay_port
        if port is not None:
            try:
                type(port).doRead(port)
            except Exception:  # nothing to read, or a socket error: the timer goes ahead
                pass

    def fetch(self, request: Fetch, source: str | None = None, connecting=None) -> defer.Deferred:
        """Download; ``source``: the address to send from (None: the kernel's choice);
        ``connecting(address)``: called when the request leaves for the server (after the
        lab's DNS and the guard; never for one that did not leave), for the capture."""
        return self._at_server(request, lambda address, parts: self._fetch_from(request, address, parts, source),
                               connecting)

    def upload(self, request, source: str | None = None, connecting=None) -> defer.Deferred:
        """Uploads (Polycom's logs): HTTP(S) PUT, TFTP WRQ or FTP STOR, by the URL's scheme;
        the same loopback guard and DNS as downloads."""
        return self._at_server(request, lambda address, parts: self._upload_to(request, address, parts, source),
                               connecting)

    def _http_from(self, source: str | None) -> HttpFetcher:
        return self.http

    def _at_server(self, request, then, connecting=None) -> defer.Deferred:
        """Find the loopback address of the request URL's host (through the lab's DNS for
        a name, as the phone's lease lets it ask: ``LabResolver.resolve_with``), then call
        ``connecting(address)`` (if given) and ``then(address, parts)``; a refusal or a
        failed lookup becomes the result instead."""
        parts = urlsplit(request.url)
        host = parts.hostname or ""
        if is_host_name(host):
            looked_up = self._look_up(host, request.name_servers, request.dns)
            if looked_up is None:
                self.stats["fetch_refused"] += 1
                return defer.succeed(FetchResult("refused", detail=f"{host}: a host name, and the lab has no DNS "
                                                                   "server (services.dns or network.dns_server)"))
        else:
            looked_up = defer.succeed(host)

        def reached(address):
            try:
                address = self.destination(address)
            except NotLoopback as exc:
                self.stats["fetch_refused"] += 1
                return FetchResult("refused", detail=str(exc))
            if connecting is not None:
                connecting(address)
            return then(address, parts)

        def lookup_failed(failure):
            failure.trap(LookupFailed)
            self.stats["dns_failures"] += 1
            return FetchResult("dns", detail=failure.getErrorMessage())

        return looked_up.addCallbacks(reached, lookup_failed)

    def _look_up(self, host: str, name_servers: tuple[str, ...] | None,
                 dns: PhoneDns | None = None) -> defer.Deferred | None:
        """The address of ``host`` as a phone whose lease named ``name_servers`` finds it,
        with its own DNS client (LabResolver.resolve_with), or None: the lab has no DNS to
        ask."""
        if self.resolver is None:
            return None
        return self.resolver.resolve_with(host, name_servers, dns)

    def set_dns_capture(self, capture) -> None:
        """--pcap: the lookups' datagrams go to ``capture`` too."""
        if self.resolver is not None:
            self.resolver.capture = capture

    def _fetch_from(self, request: Fetch, address: str, parts, source: str | None = None) -> defer.Deferred:
        scheme = parts.scheme
        if scheme in ("http", "https"):
            target, host = _by_address(request.url, parts, address)
            return self._http_from(source).get(target, request.user_agent, request.credentials, host=host)
        if scheme == "tftp":
            port, path = parts.port or 69, unquote(parts.path.lstrip("/"))
            return self._tftp_gate(address, port).run(lambda: _tftp(self.reactor, address, port, path, source))
        if scheme == "ftp":  # credentials travel in the request; none: anonymous
            return ftp_get(self.reactor, address, parts.port or 21, unquote(parts.path.lstrip("/")), request.credentials,
                           bind_host=source)
        return defer.succeed(FetchResult("error", detail=f"{scheme}:// downloads are not supported: {parts.geturl()}"))

    def _upload_to(self, request, address: str, parts, source: str | None = None) -> defer.Deferred:
        scheme = parts.scheme
        if scheme in ("http", "https"):
            target, host = _by_address(request.url, parts, address)
            return self._http_from(source).put(target, request.body, request.user_agent, request.credentials, host=host)
        path = unquote(parts.path.lstrip("/"))
        if scheme == "tftp":
            port = parts.port or 69
            return self._tftp_gate(address, port).run(lambda: _tftp_outcome(tftp_put(
                self.reactor, address, port, path, request.body, blksize=1428, tsize=True, linger_s=TFTP_LINGER_S,
                bind_host=source, **TFTP_TIMING)))
        if scheme == "ftp":  # credentials: the URL's user:password, else the request's, else anonymous
            return ftp_put(self.reactor, address, parts.port or 21, path, request.body,
                           _url_credentials(parts) or request.credentials, bind_host=source)
        return defer.succeed(FetchResult("error", detail=f"{scheme}:// uploads are not supported"))

    def _tftp_gate(self, address: str, port: int) -> TransferGate:
        gate = self.tftp_gates.get((address, port))
        if gate is None:
            gate = self.tftp_gates[(address, port)] = TransferGate()
        return gate

    # --- end uploads

    @defer.inlineCallbacks
    def close(self):
        yield self.http.close()
        yield self.relay_port.stopListening()
        if self.sip_port is not None:
            yield self.sip_port.stopListening()
        if self.resolver is not None:
            yield self.resolver.close()


def is_host_name(host: str) -> bool:
    """A name to look up (not an address literal, not localhost)."""
    if not host or host.lower() in LOCAL_NAMES:
        return False
    return parse_ip(host.strip("[]")) is None


def _by_address(url: str, parts, address: str) -> tuple[str, str | None]:
    """The URL (``parts``: it split) with its host replaced by ``address`` (so no system
    resolver is ever asked), and the Host header to send when the URL named the server
    by name. A URL that names an address is sent as it is (the fetcher splits it again;
    rebuilding it from ``parts`` cost ~4 % of a storm's CPU)."""
    if not is_host_name(parts.hostname or ""):
        return url, None
    netloc_host = f"[{address}]" if ":" in address else address
    port = f":{parts.port}" if parts.port else ""
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    target = parts._replace(netloc=f"{userinfo}{netloc_host}{port}").geturl()
    return target, parts.hostname + port


# A finished transfer's port is held until nothing has arrived at it for this long:
# longer than any server waits between two retransmissions (labsim's: 1 s; tftpd-hpa's
# back off to 8 s and more), so no late packet can reach the port's next transfer.
TFTP_LINGER_S = 10.0
# How a phone's TFTP client retransmits: 1 s, then twice as long each time up to 8 s (RFC
# 1123 4.2.3.2's exponential backoff), 5 times: 31 s without an answer before it gives
# up. In a storm that saturates the server (or the simulator's own process) the backoff
# thins the phones' retransmissions instead of piling duplicates into its queue.
TFTP_TIMING = {"timeout_s": 1.0, "max_retransmits": 5, "backoff": 2.0, "max_timeout_s": 8.0}


def _tftp(reactor, host: str, port: int, filename: str, source: str | None = None) -> defer.Deferred:
    # Linger: a thousand phones finishing at once must not hand a just-closed port,
    # with a late packet still on its way to it, to the next phone's download.
    return _tftp_outcome(tftp_get(reactor, host, port, filename, blksize=1428, tsize=True, linger_s=TFTP_LINGER_S,
                                  bind_host=source, **TFTP_TIMING))


def _tftp_outcome(transfer: defer.Deferred) -> defer.Deferred:
    """A TFTP download's bytes (or an upload's byte count) as a FetchResult."""

    def failed(failure):
        failure.trap(TftpError, TftpTimeout)
        return tftp_outcome(None, failure.value)

    return transfer.addCallbacks(lambda outcome: tftp_outcome(outcome, None), failed)


def tftp_outcome(outcome, error: Exception | None) -> FetchResult:
    """How a phone reads a finished TFTP session: its bytes (an upload: its byte count)
    or its error (also the in-memory lab's, labsim.virtual.tftp)."""
    if error is None:
        return FetchResult("ok", outcome if isinstance(outcome, bytes) else None)
    if isinstance(error, TftpNotFound):
        return FetchResult("not_found", detail=f"TFTP: {error}")
    if isinstance(error, TftpTimeout):
        return FetchResult("timeout", detail="TFTP: no answer")
    status = "denied" if getattr(error, "code", None) == 2 else "error"
    return FetchResult(status, detail=f"TFTP: {error}")


def _url_credentials(parts):
    """Credentials written in the URL (``ftp://user:pass@host/``), or None."""
    if parts.username is None:
        return None
    return Credentials(unquote(parts.username), unquote(parts.password or ""))

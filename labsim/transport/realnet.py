"""Phones on a real interface, against the user's own servers (README: Testing your own servers).

A scenario asks for this by name: ``network: {interface: eth1, allow: [10.20.0.0/24]}``.
Then

- each phone broadcasts its own DHCP on the interface: its own MAC in the Ethernet source
  and in ``chaddr``, through ONE packet socket for the whole fleet (labsim/net/packet.py),
  whose kernel filter passes only UDP to port 68 and ARP requests. Replies are handed to
  the phone whose MAC is in ``chaddr``; ARP requests for a leased address are answered
  with the phone's MAC. No option 82 (phones do not add one).
  ``dhcp_mode: relay`` instead relays to ``dhcp_server`` on another subnet from the
  interface's address (``giaddr``), as the loopback lab does on 127.0.0.2;
- downloads (TFTP, HTTP(S), FTP, DNS) leave from the interface's address, or with
  ``source: leased`` from each phone's leased address, which is put on the interface
  for the run (rtnetlink) and taken off at the end;
- nothing is sent to an address outside ``allow``, whatever a provisioning file says:
  the phone fails that download with the reason (guard.AllowList);
- a host name is looked up with the DNS servers the phone's lease names (option 6), as
  a real phone does: ``network.dns_server`` when it is one of them, else the first
  inside ``allow``, on port 53 (RealNetwork._look_up);
- DHCP leaves at most ``dhcp_rate`` messages a second (a token bucket), and at the end
  every lease the fleet holds is released (DHCPRELEASE), unless ``release: false``.

Needs root (or CAP_NET_RAW for the packet socket, CAP_NET_ADMIN for promiscuous mode
and ``source: leased``).
"""

from __future__ import annotations

import random
from collections import deque

from twisted.internet import defer
from twisted.python import log

from labsim.net.addresses import AddressTable
from labsim.net.packet import PacketReader, interface_info, open_packet_socket
from labsim.net.udp import bind_udp
from labsim.phones.dns_client import PhoneDns
from labsim.transport.dns_lookup import LabResolver, LookupFailed, lookup_counters, no_name_servers
from labsim.transport.guard import AllowList, NotAllowed
from labsim.transport.http_fetch import HttpFetcher, keep_alive_for
from labsim.transport.loopback import DhcpRelay, LoopbackNetwork
from labsim.wire import dhcp
from labsim.wire.ethernet import BROADCAST_MAC, arp_reply, parse_arp_request, udp_frame, udp_payload_to

CLIENT_PORT, SERVER_PORT = 68, 67
_UNSPECIFIED, _LIMITED_BROADCAST = "0.0.0.0", "255.255.255.255"


class RefusedToStart(ValueError):
    """The interface is not fit for a real-network run; nothing was sent."""


def check_interface(spec):
    """The interface's facts, or RefusedToStart naming the key and the reason."""
    info = interface_info(spec.interface) if spec.interface else None
    if info is None:
        raise RefusedToStart("network.interface is not set")
    if not info.up:
        raise RefusedToStart(f"network.interface {spec.interface!r} is down: refused, nothing sent")
    if info.address is None:
        raise RefusedToStart(f"network.interface {spec.interface!r} has no IPv4 address: refused, nothing sent")
    allow = AllowList(spec.allow or [])
    if info.loopback:
        outside = [str(net) for net in allow.networks if not (net.version == 4 and net.is_loopback)]
        if outside:
            raise RefusedToStart(f"network.allow: {', '.join(outside)} is not on loopback interface "
                                 f"{spec.interface!r}: refused, nothing sent")
    return info


class Pacer:
    """A token bucket: at most ``rate`` sends a second, the rest queued in order;
    ``drained()`` fires when the queue is empty. Bursts are at most 5 ms worth (rate/200,
    at least one): a server's socket queue overflows on bursts, not on rates (measured
    against Kea in bench_dhcp --broadcast: unpaced, 2-17 % of the requests went unanswered at
    2,500-3,000 DORA/s; paced in bursts of 8, Kea answered every one)."""

    def __init__(self, clock, rate: float, burst: float | None = None):
        self.clock = clock
        self.rate = float(rate)
        self.burst = max(1.0, self.rate / 200 if burst is None else burst)
        self.tokens = self.burst
        self.last = clock.seconds()
        self.queue: deque = deque()
        self.call = None
        self._waiting: list[defer.Deferred] = []
        self.stats = {"sent": 0, "delayed": 0, "queue_max": 0}

    def submit(self, send) -> None:
        if not self.queue and self._take():
            self.stats["sent"] += 1
            send()
            return
        self.queue.append(send)
        self.stats["delayed"] += 1
        self.stats["queue_max"] = max(self.stats["queue_max"], len(self.queue))
        self._schedule()

    def clear(self) -> None:
        self.queue.clear()

    def drained(self) -> defer.Deferred:
        if not self.queue:
            return defer.succeed(None)
        waiting = defer.Deferred()
        self._waiting.append(waiting)
        return waiting

    def _take(self) -> bool:
        now = self.clock.seconds()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def _schedule(self) -> None:
        if self.call is None or not self.call.active():
            self.call = self.clock.callLater(max((1.0 - self.tokens) / self.rate, 0.0005), self._drain)

    def _drain(self) -> None:
        self.call = None
        while self.queue and self._take():
            self.stats["sent"] += 1
            self.queue.popleft()()
        if self.queue:
            self._schedule()
        else:
            waiting, self._waiting = self._waiting, []
            for deferred in waiting:
                deferred.callback(None)

    def stop(self) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.queue.clear()


class BroadcastDhcp:
    """The fleet's DHCP on the segment: every phone's own frames through one packet socket."""

    def __init__(self, writer, *, arp: bool = True, on_ack=None, link=None):
        self.writer = writer  # write_frame(bytes) -> bool
        # The scenario's faults on "dhcp" (a FaultyLink), applied to the DHCP message only:
        # a corrupted byte lands in the DHCP payload, never in the Ethernet or IP header
        # (which would send a frame somewhere on the user's network it was never meant for).
        self.link = link
        self.arp = arp  # answer ARP for leased addresses (not when the kernel holds them)
        self.on_ack = on_ack  # called with (mac, address) before the phone hears its ACK
        self.phones: dict[bytes, object] = {}
        self.server_mac: dict[bytes, bytes] = {}  # phone MAC -> the MAC its ACK came from
        self.holder: dict[str, bytes] = {}  # leased address -> phone MAC (for ARP)
        self._ident = random.getrandbits(16)
        self.stats = {"sent": 0, "received": 0, "malformed": 0, "unknown_client": 0, "arp_replies": 0,
                      "released": 0, "send_errors": 0}

    def send(self, driver, message: dhcp.DhcpMessage) -> None:
        mac = message.chaddr
        if message.ciaddr == _UNSPECIFIED:  # DISCOVER, REQUEST (SELECTING, INIT-REBOOT)
            route = (mac, BROADCAST_MAC, _UNSPECIFIED, _LIMITED_BROADCAST)
        else:
            server = self._unicast_server(driver, message)
            if server and mac in self.server_mac:
                # RENEWING: unicast from the leased address to the server that gave it (RFC 2131 4.4.5).
                route = (mac, self.server_mac[mac], message.ciaddr, server)
            else:  # REBINDING: broadcast, from the leased address
                route = (mac, BROADCAST_MAC, message.ciaddr, _LIMITED_BROADCAST)
        self.stats["sent"] += 1
        payload = dhcp.encode(message)
        if self.link is None:
            self._write(route, payload)
        else:
            self.link.carry("in", payload, lambda data: self._write(route, data))

    def _write(self, route, payload: bytes) -> None:
        if not self.writer(self._frame_bytes(*route, payload)):
            self.stats["send_errors"] += 1

    @staticmethod
    def _unicast_server(driver, message: dhcp.DhcpMessage) -> str | None:
        """The server a message with ciaddr goes to: option 54 (RELEASE), or, for a
        renewal (which carries no option 54), the server that gave the lease."""
        server = message.option_ip(54)
        if server is not None:
            return server
        phone = getattr(driver, "phone", None)
        client = getattr(phone, "dhcp", None)
        if getattr(client, "state", None) == "RENEWING" and phone.lease is not None:
            return phone.lease.server_id
        return None

    def _frame(self, mac: bytes, to_mac: bytes, src: str, dst: str, message: dhcp.DhcpMessage) -> bytes:
        return self._frame_bytes(mac, to_mac, src, dst, dhcp.encode(message))

    def _frame_bytes(self, mac: bytes, to_mac: bytes, src: str, dst: str, payload: bytes) -> bytes:
        self._ident = (self._ident + 1) & 0xFFFF
        return udp_frame(mac, to_mac, src, dst, CLIENT_PORT, SERVER_PORT, payload, self._ident)

    def frame_received(self, frame: bytes) -> None:
        if frame[12:14] == b"\x08\x06":
            self._arp(frame)
            return
        payload = udp_payload_to(frame, CLIENT_PORT)
        if payload is None:
            return
        if self.link is None:
            self._reply(payload, frame[6:12])
        else:
            self.link.carry("out", payload, lambda data: self._reply(data, frame[6:12]))

    def _reply(self, payload: bytes, from_mac: bytes) -> None:
        self.stats["received"] += 1
        try:
            message = dhcp.decode(payload)
        except dhcp.DhcpDecodeError:
            self.stats["malformed"] += 1
            return
        if message.op != dhcp.BOOTREPLY:
            return
        driver = self.phones.get(message.chaddr)
        if driver is None:
            self.stats["unknown_client"] += 1  # another host's client on the segment
            return
        if message.message_type == dhcp.ACK and message.yiaddr != _UNSPECIFIED:
            self.server_mac[message.chaddr] = from_mac  # the Ethernet source: the server (or its router)
            self.holder[message.yiaddr] = message.chaddr
            if self.on_ack is not None:
                self.on_ack(message.chaddr, message.yiaddr)
        driver.dhcp_received(message)

    def _arp(self, frame: bytes) -> None:
        if not self.arp:
            return
        request = parse_arp_request(frame)
        if request is None:
            return
        mac = self.holder.get(request.target_ip)
        if mac is None:
            return
        lease = getattr(self.phones[mac].phone, "lease", None)
        if lease is None or lease.address != request.target_ip:
            return  # no longer this phone's address
        if self.writer(arp_reply(request, mac, request.target_ip)):
            self.stats["arp_replies"] += 1

    def release(self, phone) -> bool:
        """Send DHCPRELEASE for ``phone``'s lease (unicast to the server that granted it).
        Not through the scenario's faults: giving the leases back is the run's own duty."""
        lease = phone.lease
        if lease is None or not lease.server_id:
            return False
        message = release_message(phone.mac_bytes, lease.address, lease.server_id)
        to_mac = self.server_mac.get(phone.mac_bytes, BROADCAST_MAC)
        self.stats["released"] += 1
        return self.writer(self._frame(phone.mac_bytes, to_mac, lease.address, lease.server_id, message))


def release_message(mac: bytes, address: str, server_id: str) -> dhcp.DhcpMessage:
    """DHCPRELEASE (RFC 2131 4.4.6): ciaddr the address, option 54 the server, 61 the client."""
    return dhcp.DhcpMessage(
        op=dhcp.BOOTREQUEST, xid=random.getrandbits(32), chaddr=mac, ciaddr=address,
        options={53: bytes([dhcp.RELEASE]), 54: dhcp.encode_ip_list([server_id]), 61: b"\x01" + mac},
    )  # fmt: skip


class RealNetwork(LoopbackNetwork):
    """The ``PhoneNetwork`` for phones on a real interface (module docstring)."""

    def __init__(self, reactor, spec, *, http_timeout_s: float = 30.0, dns_server: tuple[str, int] | None = None,
                 dhcp_link=None):
        # LoopbackNetwork's download code is reused; its loopback sockets are not made.
        self.reactor = reactor
        self.spec = spec
        self.info = check_interface(spec)
        self.allow = AllowList(spec.allow)
        self.destination = self.allow.check
        self.source_mode = spec.source
        self.pacer = Pacer(reactor, spec.dhcp_rate)
        self.stats = {"fetch_refused": 0, "dns_failures": 0, "address_errors": 0, "dns_lookups": lookup_counters()}
        self.sip = self.sip_port = None  # PnP multicast on a real segment: not carried (yet)
        self.addresses = AddressTable(spec.interface) if spec.source == "leased" else None
        self._http_timeout_s = http_timeout_s
        self._keep_alive = keep_alive_for(spec.http_connections)
        self.http = HttpFetcher(reactor, timeout_s=http_timeout_s, bind_host=self.info.address,
                                keep_alive=self._keep_alive)
        self._fetchers: dict[str, HttpFetcher] = {}
        self.tftp_gates = {}  # as LoopbackNetwork's: a fleet's TFTP transfers in flight, per server
        self._drivers: list = []
        self.packet_reader = self.relay_port = None
        if spec.dhcp_mode == "relay":
            server = (self.allow.check(spec.dhcp_server), spec.dhcp_port or SERVER_PORT)
            self.relay = DhcpRelay(server, self.info.address, dhcp_link)
            self.relay_port = bind_udp(reactor, self.relay, self.info.address, server[1], device=spec.interface,
                                       recv_buffer=4 << 20)
        else:
            try:
                sock = open_packet_socket(spec.interface)
            except PermissionError:
                raise RefusedToStart(f"network.interface {spec.interface!r}: the phones' packet socket needs root "
                                     "or CAP_NET_RAW + CAP_NET_ADMIN (README: Testing your own servers)") from None
            self.packet_reader = PacketReader(reactor, sock, None)
            # ``relay`` is the name the run reads the fleet's DHCP counters under.
            self.relay = BroadcastDhcp(self.packet_reader.write_frame, arp=spec.source != "leased",
                                       on_ack=self._leased if self.addresses is not None else None, link=dhcp_link)
            self.packet_reader.on_frame = self.relay.frame_received
            self.packet_reader.start()
        self.resolver = None
        if dns_server is not None:
            self.resolver = LabResolver(reactor, dns_server, guard=self.allow.check, bind_host=self.info.address,
                                        stats=self.stats["dns_lookups"])
        # The DNS servers the phones' leases name (option 6), each asked on port 53 by a
        # resolver of its own, made the first time a phone asks it (_look_up).
        self._resolvers: dict[str, LabResolver] = {}
        self._dns_capture = None

    def _look_up(self, host: str, name_servers: tuple[str, ...] | None, dns: PhoneDns | None = None):
        """On a real network a phone asks the DNS servers its lease names (option 6), as
        real phones do: ``network.dns_server`` when it is one of them (on its port), else
        the first of them inside ``network.allow``, on port 53. One outside ``allow`` is
        never sent to; with none inside, the lookup fails saying so. A phone whose lease
        names none has no one to ask (LabResolver.resolve_with)."""
        if self.resolver is not None and (name_servers is None or self.resolver.server[0] in name_servers):
            return self.resolver.resolve(host, dns)
        if name_servers is None:  # not said, and no network.dns_server: no DNS to ask
            return None
        if not name_servers:
            return no_name_servers(host)
        for address in name_servers:
            try:
                self.allow.check(address)
            except NotAllowed:
                continue
            resolver = self._resolvers.get(address)
            if resolver is None:
                resolver = self._resolvers[address] = LabResolver(self.reactor, (address, 53), guard=self.allow.check,
                                                                  bind_host=self.info.address,
                                                                  stats=self.stats["dns_lookups"])
                resolver.capture = self._dns_capture
            return resolver.resolve(host, dns)
        return defer.fail(LookupFailed(f"{host}: the lease's DNS servers ({', '.join(name_servers)}, DHCP option 6) "
                                       f"are outside network.allow ({self.allow.describe()}): nothing sent"))

    def set_dns_capture(self, capture) -> None:
        self._dns_capture = capture
        for resolver in (self.resolver, *self._resolvers.values()):
            if resolver is not None:
                resolver.capture = capture

    def describe(self, phones: int) -> str:
        dhcp_way = (f"DHCP broadcast from each phone's MAC" if self.spec.dhcp_mode == "broadcast"
                    else f"DHCP relayed to {self.relay.server[0]} (giaddr {self.info.address})")
        source = "each phone's leased address" if self.source_mode == "leased" else self.info.address
        release = "DHCPRELEASE at the end" if self.spec.release else "no DHCPRELEASE at the end"
        return (f"real network on {self.spec.interface} ({self.info.address}); allow {self.allow.describe()}; "
                f"{phones} phones; {dhcp_way}, at most {self.spec.dhcp_rate:g}/s; downloads from {source}; {release}")

    # --- the phones' side

    def attach(self, driver) -> None:
        self.relay.phones[driver.phone.mac_bytes] = driver
        self._drivers.append(driver)

    def phone_view(self, phone):
        return _PhoneOnLink(self, phone)

    def send_dhcp(self, driver, message) -> None:
        self.pacer.submit(lambda: self.relay.send(driver, message))

    def source_for(self, phone) -> str:
        if self.source_mode == "leased" and phone.lease is not None and phone.lease.address in self.addresses.added:
            return phone.lease.address
        return self.info.address

    def _leased(self, mac: bytes, address: str) -> None:
        try:
            self.addresses.add(address)
        except OSError as exc:
            self.stats["address_errors"] += 1
            if self.stats["address_errors"] == 1:
                log.msg(f"network.source leased: {exc.strerror}; downloads leave from {self.info.address}")

    def _http_from(self, source: str | None) -> HttpFetcher:
        if source is None or source == self.info.address:
            return self.http
        fetcher = self._fetchers.get(source)
        if fetcher is None:
            fetcher = self._fetchers[source] = HttpFetcher(self.reactor, timeout_s=self._http_timeout_s,
                                                           bind_host=source, keep_alive=self._keep_alive)
        return fetcher

    # --- the end of the run

    def release_all(self) -> defer.Deferred:
        """DHCPRELEASE for every lease the fleet holds, at the DHCP rate; fires when sent."""
        self.pacer.clear()  # DISCOVERs and REQUESTs still waiting: never sent
        if not self.spec.release:
            return defer.succeed(0)
        count = 0
        for driver in self._drivers:
            phone = driver.phone
            lease = phone.lease
            if lease is None or not lease.server_id:
                continue
            count += 1
            if self.packet_reader is not None:
                self.pacer.submit(lambda phone=phone: self.relay.release(phone))
            else:
                message = release_message(phone.mac_bytes, lease.address, lease.server_id)
                self.pacer.submit(lambda message=message, driver=driver: self.relay.send(driver, message))
        self.stats["releases"] = count
        return self.pacer.drained().addCallback(lambda _: count)

    @defer.inlineCallbacks
    def close(self):
        self.pacer.stop()
        yield self.http.close()
        for fetcher in self._fetchers.values():
            yield fetcher.close()
        if self.packet_reader is not None:
            self.packet_reader.close()
        if self.relay_port is not None:
            yield self.relay_port.stopListening()
        if self.resolver is not None:
            yield self.resolver.close()
        for resolver in self._resolvers.values():
            yield resolver.close()
        if self.addresses is not None:
            self.stats["addresses_removed"] = self.addresses.remove_all()
            self.addresses.close()


class _PhoneOnLink:
    """One phone's view of a real network: its downloads leave from its source address."""

    __slots__ = ("network", "phone")
    pnp_reachable = False

    def __init__(self, network: RealNetwork, phone):
        self.network = network
        self.phone = phone

    def attach(self, driver) -> None:
        self.network.attach(driver)

    def send_dhcp(self, driver, message) -> None:
        self.network.send_dhcp(driver, message)

    def send_sip(self, driver, message, to) -> None:
        pass

    def fetch(self, request, connecting=None):
        return self.network.fetch(request, self.network.source_for(self.phone), connecting)

    def upload(self, request, connecting=None):
        return self.network.upload(request, self.network.source_for(self.phone), connecting)

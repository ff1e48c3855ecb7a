"""An I/O-free DHCPv4 server (RFC 2131): messages and a clock reading in, replies out.

:class:`DhcpServer` keeps one pool and its leases. ``handle(msg, now)`` returns the
replies to send and where to send them; it never touches a socket or reads a clock, so
every path of the state machine is testable with a made-up ``now``. The Twisted edge
is :mod:`labsim.services.dhcp_udp`.

Clients are identified by ``chaddr`` (the MAC). RFC 2131 prefers option 61 when
present, but the phones put their MAC there anyway and a fleet is addressed by MAC.

Cost per packet is a handful of dict lookups: addresses are handed out from a cursor
that walks the pool once plus a queue of returned addresses (never a scan of the pool),
and lease expiry is a heap consulted lazily at the start of each ``handle``.

Client classes (:mod:`labsim.services.dhcp_classes`) pick per-vendor options by option
60. Leases can be saved and restored (``lease_records`` / ``restore``; the file format is
:mod:`labsim.services.lease_file`); ``lease_version`` changes whenever they do, so the
edge knows when a save is due without comparing anything.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from socket import inet_aton, inet_ntoa

from labsim.services.dhcp_classes import ClientClass, ClientClassifier
from labsim.services.dhcp_leases import (  # noqa: F401  (re-exported: the DHCP server's API)
    BOUND,
    DECLINED,
    FREE,
    OFFERED,
    AddressPool,
    Lease,
    LeaseRecord,
    LeaseTable,
    ip_int,
    normalise_mac,
)
from labsim.wire import dhcp_options
from labsim.wire.dhcp import (
    ACK,
    BOOTREPLY,
    BOOTREQUEST,
    DECLINE,
    DISCOVER,
    INFORM,
    NAK,
    OFFER,
    RELEASE,
    REQUEST,
    DhcpMessage,
)

CLIENT_PORT = 68
BROADCAST = "255.255.255.255"
BROADCAST_FLAG = 0x8000
ZERO_IP = "0.0.0.0"

OPT_SUBNET_MASK = 1
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAMETER_LIST = 55
OPT_MESSAGE = 56
OPT_RENEWAL_T1 = 58
OPT_REBINDING_T2 = 59
OPT_VENDOR_CLASS = 60
OPT_RELAY_AGENT_INFO = 82

# Options the server itself decides (or that only clients send); a configured value for
# one of them would contradict the server's own, so the config rejects them.
SERVER_MANAGED_OPTIONS = dhcp_options.SERVER_MANAGED_OPTIONS


@dataclass
class DhcpServerConfig:
    server_id: str  # the server's address (option 54)
    subnet: str = "10.1.0.0/16"  # ipaddress.IPv4Network syntax
    pool_start: str = "10.1.0.10"
    pool_end: str = "10.1.255.250"
    lease_time_s: int = 3600
    # Payloads already encoded (labsim.wire.dhcp_options). All are sent in every OFFER/ACK,
    # the ones the client lists in option 55 first, in its order. 58/59 here override the
    # default T1/T2 (1/2 and 7/8 of the lease). Option 1 defaults to the subnet's mask.
    options: dict[int, bytes] = field(default_factory=dict)
    reservations: dict[bytes, str] = field(default_factory=dict)  # MAC -> IP (MAC as bytes or "aa:bb:..")
    offer_hold_s: float = 60.0  # how long an OFFERed address is held for the client
    decline_hold_s: float = 86400.0  # how long a DECLINEd address is kept out of the pool
    next_server: str = ZERO_IP  # siaddr in replies: the TFTP "next server" some boot ROMs use
    # Per-vendor options by option 60, first match wins; a class's options are added to
    # the global ones and override them code by code (58/59 included).
    classes: list[ClientClass] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Reply:
    message: DhcpMessage
    to_addr: str
    to_port: int | None  # None: the port the server listens on (replies to a relay); else 68
    # Set when RFC 2131 §4.1 wants a unicast to an address the client does not hold yet
    # (yiaddr, broadcast bit clear): deliver to this hardware address. An edge that cannot
    # (no ARP entry can be made) broadcasts instead, which the client accepts as well.
    to_hardware: bytes | None = None


def _new_stats() -> dict[str, int]:
    keys = (
        # received
        "discover", "request", "decline", "release", "inform",
        # sent
        "offer", "ack", "nak",
        # why something was not answered, or what happened to the pool
        "pool_exhausted", "ignored", "request_other_server", "request_unknown_client",
        "expired", "declined",
        # leases read back from a lease file at start, and ones dropped as no longer valid
        "leases_restored", "leases_dropped",
    )  # fmt: skip
    return dict.fromkeys(keys, 0)


class DhcpServer:
    def __init__(self, config: DhcpServerConfig):
        self.config = config
        self.stats = _new_stats()
        self.leases = LeaseTable()

        try:
            net = ipaddress.IPv4Network(config.subnet)
        except ValueError as exc:
            raise ValueError(f"subnet {config.subnet!r}: {exc}") from None
        self._net = int(net.network_address)
        self._mask = int(net.netmask)
        self.server_id = str(_address("server_id", config.server_id))
        self._server_id_bytes = inet_aton(self.server_id)
        self._next_server = str(_address("next_server", config.next_server))

        start = _address("pool_start", config.pool_start)
        end = _address("pool_end", config.pool_end)
        for name, addr in (("pool_start", start), ("pool_end", end)):
            if addr not in net:
                raise ValueError(f"{name} {addr} is outside the subnet {net}")
            if net.prefixlen < 31 and addr in (net.network_address, net.broadcast_address):
                raise ValueError(f"{name} {addr} is the subnet's network or broadcast address")
        if int(start) > int(end):
            raise ValueError(f"pool_start {start} is after pool_end {end}")

        self._reservations: dict[bytes, str] = {}
        reserved_owner: dict[str, bytes] = {}
        for mac, ip in config.reservations.items():
            raw = normalise_mac(mac)
            addr = _address(f"reservation for {raw.hex(':')}", ip)
            if addr not in net:
                raise ValueError(f"reservation {raw.hex(':')} -> {addr} is outside the subnet {net}")
            if str(addr) in reserved_owner:
                raise ValueError(f"{addr} is reserved for both {reserved_owner[str(addr)].hex(':')} and {raw.hex(':')}")
            self._reservations[raw] = str(addr)
            reserved_owner[str(addr)] = raw
        # Never hand out a reserved address dynamically, nor the server's own.
        excluded = set(reserved_owner) | {self.server_id}
        self.pool = AddressPool(int(start), int(end), excluded, self.leases.is_free)

        if config.lease_time_s <= 0 or config.lease_time_s >= 2**32:
            raise ValueError(f"lease_time_s must be 1..2^32-1 seconds, not {config.lease_time_s}")
        if config.offer_hold_s <= 0:
            raise ValueError(f"offer_hold_s must be positive, not {config.offer_hold_s}")

        self._classifier = ClientClassifier(config.classes) if config.classes else None
        self._build_profiles()
        for client_class in config.classes:
            self.stats[f"class_{client_class.name}"] = 0  # ACKs sent with the class's options
        # Bumped on every change to the leases: the lease file is rewritten when it moved.
        self.lease_version = 0
        self.on_leases_changed: Callable[[], None] | None = None  # the lease file's keeper, told of each change

        self._handlers: dict[int, Callable[[DhcpMessage, float], list[Reply]]] = {
            DISCOVER: self._discover,
            REQUEST: self._request,
            DECLINE: self._decline,
            RELEASE: self._release,
            INFORM: self._inform,
        }

    def _build_profiles(self) -> None:
        global_options = _checked_options(self.config.options, "options")
        self._default_profile = self._profile(global_options)
        # One precomputed profile per class: the global options with the class's on top.
        self._class_profiles: dict[str, _Profile] = {}
        for client_class in self.config.classes:
            own = _checked_options(client_class.options, f"class {client_class.name!r}")
            self._class_profiles[client_class.name] = self._profile({**global_options, **own})

    def reconfigure_options(self, options: dict[int, bytes]) -> None:
        """Replace the global options while serving (a scenario's timeline changes a DHCP
        option); leases are kept, the next reply carries the new options."""
        previous = self.config.options
        self.config.options = options if isinstance(options, dhcp_options.EncodedOptions) else dict(options)
        try:
            self._build_profiles()
        except ValueError:
            self.config.options = previous
            raise

    def set_options(self, options) -> list[int]:
        """The timeline's ``set_dhcp_option``: ``options`` (as the scenario loader encoded
        them, or a scenario mapping) on top of the current ones; the codes set."""
        encoded = dhcp_options.encode_options(options)
        # Both sides were checked already (on load, or when the server was configured).
        self.reconfigure_options(dhcp_options.EncodedOptions({**self.config.options, **encoded}))
        return list(encoded)

    def remove_options(self, keys) -> list[int]:
        """The timeline's ``remove_dhcp_option``: the options named (numbers or names) go; the codes."""
        codes = sorted({dhcp_options.option_code(key) for key in keys})
        self.reconfigure_options(dhcp_options.EncodedOptions(
            {code: payload for code, payload in self.config.options.items() if code not in codes}))
        return codes

    def _profile(self, configured: dict[int, bytes]) -> "_Profile":
        lease = self.config.lease_time_s
        configured = dict(configured)
        lease_options = {
            OPT_LEASE_TIME: lease.to_bytes(4, "big"),
            OPT_RENEWAL_T1: configured.pop(OPT_RENEWAL_T1, (lease // 2).to_bytes(4, "big")),
            OPT_REBINDING_T2: configured.pop(OPT_REBINDING_T2, (lease * 7 // 8).to_bytes(4, "big")),
        }
        configured.setdefault(OPT_SUBNET_MASK, self._mask.to_bytes(4, "big"))
        return _Profile(lease_options, configured)

    # -- the entry point --

    def handle(self, msg: DhcpMessage, now: float) -> list[Reply]:
        """Process one client message received at time ``now`` (seconds, any epoch)."""
        self.expire(now)
        handler = self._handlers.get(msg.message_type) if msg.op == BOOTREQUEST else None
        if handler is None:  # a reply, plain BOOTP, or a type a server does not receive
            self.stats["ignored"] += 1
            return []
        return handler(msg, now)

    def _leases_changed(self) -> None:
        self.lease_version += 1
        if self.on_leases_changed is not None:
            self.on_leases_changed()

    def expire(self, now: float) -> int:
        """Free the leases and offers that ran out by ``now``; returns how many."""
        count = 0
        for lease in self.leases.pop_expired(now):
            self.pool.give_back(lease.ip)
            count += 1
        if count:
            self.stats["expired"] += count
            self._leases_changed()
        return count

    def classify(self, msg: DhcpMessage) -> ClientClass | None:
        """The client class a message falls in by its option 60, if any."""
        if self._classifier is None:
            return None
        return self._classifier.classify(msg.options.get(OPT_VENDOR_CLASS))

    # -- saving and restoring leases --

    def lease_records(self) -> list[LeaseRecord]:
        """Everything worth keeping across a restart: bound leases, each client's last
        address (offers count as that: an offer does not outlive a restart), and
        declined addresses."""
        records = []
        for lease in self.leases.clients():
            if lease.state == BOUND:
                records.append(LeaseRecord("bound", lease.mac, lease.ip, lease.expires))
            else:
                records.append(LeaseRecord("free", lease.mac, lease.ip, 0.0))
        for marker in self.leases.declined():
            records.append(LeaseRecord("declined", None, marker.ip, marker.expires))
        return records

    def restore(self, records: list[LeaseRecord], now: float) -> None:
        """Take back saved leases at start (before any message). A record this
        configuration no longer allows (an address outside the pool, a reservation that
        moved, an address already taken by an earlier record) is dropped and counted."""
        restored = dropped = 0
        for record in records:
            if record.state == "declined":
                if record.expires > now and record.ip in self.pool and self.leases.is_free(record.ip):
                    self.leases.set_aside(record.ip, record.expires)
                    restored += 1
                elif record.expires > now:
                    dropped += 1
                continue
            mac = record.mac
            if not self._acceptable(mac, record.ip) or self.leases.record(mac) is not None:
                dropped += 1
                continue
            if record.state == "bound" and record.expires > now:
                self.leases.hold(mac, record.ip, BOUND, record.expires)
            else:  # free, or bound but run out while the server was down
                self.leases.remember(mac, record.ip)
            restored += 1
        self.stats["leases_restored"] += restored
        self.stats["leases_dropped"] += dropped
        self._leases_changed()

    # -- one method per message type --

    def _discover(self, msg: DhcpMessage, now: float) -> list[Reply]:
        self.stats["discover"] += 1
        mac = msg.chaddr
        ip = self._choose_address(mac, msg)
        if ip is None:
            self.stats["pool_exhausted"] += 1
            return []
        lease = self.leases.record(mac)
        if not (lease is not None and lease.state == BOUND and lease.ip == ip):
            # A bound client that starts over keeps its binding; anyone else gets the
            # address held for offer_hold_s.
            self._hold(mac, ip, OFFERED, now + self.config.offer_hold_s)
        return [self._reply(msg, OFFER, ip, ZERO_IP, with_lease=True)]

    def _request(self, msg: DhcpMessage, now: float) -> list[Reply]:
        self.stats["request"] += 1
        mac = msg.chaddr
        options = msg.options
        server_id = options.get(OPT_SERVER_ID)
        requested = _requested_ip(msg)
        lease = self.leases.record(mac)

        if server_id is not None:  # SELECTING: the answer to an OFFER
            if server_id != self._server_id_bytes:
                # The client took another server's offer: ours can go back to the pool.
                if lease is not None and lease.state == OFFERED:
                    self._free(lease)
                self.stats["request_other_server"] += 1
                return []
            if lease is None or lease.state == FREE or requested != lease.ip:
                return [self._nak(msg, "no offer of that address is outstanding")]
            return self._commit(msg, mac, lease.ip, now)

        if requested is not None and msg.ciaddr == ZERO_IP:  # INIT-REBOOT: "can I keep my address?"
            if not self._in_subnet(requested):
                return [self._nak(msg, "requested address is on another network")]
            if lease is None and mac not in self._reservations:
                # RFC 2131 §4.3.2: no record of this client -> remain silent.
                self.stats["request_unknown_client"] += 1
                return []
            if (lease is not None and lease.ip != requested) or not self._acceptable(mac, requested):
                return [self._nak(msg, "requested address is not this client's")]
            return self._commit(msg, mac, requested, now)

        if msg.ciaddr != ZERO_IP:  # RENEWING (unicast) or REBINDING (broadcast): ciaddr is the lease
            ip = msg.ciaddr
            if not self._in_subnet(ip):
                return [self._nak(msg, "address is on another network")]
            held = lease is not None and lease.state != FREE
            if (held and lease.ip != ip) or not self._acceptable(mac, ip):
                return [self._nak(msg, "address is not this client's")]
            # Also when this server has no record (it restarted, or the lease ran out
            # here first): the address is free and valid, so the binding is recreated.
            return self._commit(msg, mac, ip, now)

        self.stats["ignored"] += 1  # no server id, no requested address, no ciaddr: malformed
        return []

    def _decline(self, msg: DhcpMessage, now: float) -> list[Reply]:
        self.stats["decline"] += 1
        if not self._for_us(msg):
            return []
        lease = self.leases.record(msg.chaddr)
        requested = _requested_ip(msg)
        if lease is None or lease.state == FREE or lease.ip != requested:
            self.stats["ignored"] += 1
            return []
        self.leases.decline(lease, now + self.config.decline_hold_s)
        self._leases_changed()
        self.stats["declined"] += 1
        return []

    def _release(self, msg: DhcpMessage, now: float) -> list[Reply]:
        self.stats["release"] += 1
        if not self._for_us(msg):
            return []
        lease = self.leases.record(msg.chaddr)
        if lease is None or lease.state == FREE or lease.ip != msg.ciaddr:
            self.stats["ignored"] += 1
            return []
        self._free(lease)
        return []

    def _inform(self, msg: DhcpMessage, now: float) -> list[Reply]:
        # The client has an address already and only wants the options: no lease, no yiaddr.
        self.stats["inform"] += 1
        return [self._reply(msg, ACK, ZERO_IP, msg.ciaddr, with_lease=False)]

    # -- helpers --

    def _choose_address(self, mac: bytes, msg: DhcpMessage) -> str | None:
        """RFC 2131 §4.3.1: the reservation, else the client's current or previous
        address if still free, else the one it asks for if free, else a new one."""
        reserved = self._reservations.get(mac)
        if reserved is not None:
            holder = self.leases.by_ip(reserved)
            return reserved if holder is None or holder.mac == mac else None
        lease = self.leases.record(mac)
        if lease is not None:
            if lease.state != FREE:
                return lease.ip
            if self.leases.is_free(lease.ip) and lease.ip in self.pool:
                return lease.ip
        requested = _requested_ip(msg)
        if requested is not None and self.leases.is_free(requested) and requested in self.pool:
            return requested
        return self.pool.take()

    def _acceptable(self, mac: bytes, ip: str) -> bool:
        """May this client have this address? Its reservation, or a pool address that is
        free or already its own."""
        reserved = self._reservations.get(mac)
        if reserved is not None:
            if ip != reserved:
                return False
        elif ip not in self.pool:
            return False
        holder = self.leases.by_ip(ip)
        return holder is None or holder.mac == mac

    def _in_subnet(self, ip: str) -> bool:
        return ip_int(ip) & self._mask == self._net

    def _for_us(self, msg: DhcpMessage) -> bool:
        server_id = msg.options.get(OPT_SERVER_ID)
        if server_id is not None and server_id != self._server_id_bytes:
            self.stats["ignored"] += 1
            return False
        return True

    def _hold(self, mac: bytes, ip: str, state: str, expires: float) -> Lease:
        self._leases_changed()
        lease, moved_from = self.leases.hold(mac, ip, state, expires)
        if moved_from is not None:
            self.pool.give_back(moved_from.ip)
        return lease

    def _free(self, lease: Lease) -> None:
        self._leases_changed()
        self.leases.free(lease)
        self.pool.give_back(lease.ip)

    def _commit(self, msg: DhcpMessage, mac: bytes, ip: str, now: float) -> list[Reply]:
        self._hold(mac, ip, BOUND, now + self.config.lease_time_s)
        return [self._reply(msg, ACK, ip, msg.ciaddr, with_lease=True)]

    def _reply(self, msg: DhcpMessage, mtype: int, yiaddr: str, ciaddr: str, *, with_lease: bool) -> Reply:
        profile = self._default_profile
        if self._classifier is not None:
            client_class = self._classifier.classify(msg.options.get(OPT_VENDOR_CLASS))
            if client_class is not None:
                profile = self._class_profiles[client_class.name]
                if mtype == ACK:
                    self.stats["class_" + client_class.name] += 1
        options = {OPT_MESSAGE_TYPE: bytes((mtype,)), OPT_SERVER_ID: self._server_id_bytes}
        if with_lease:
            options.update(profile.lease_options)
        configured = profile.options
        wanted = msg.options.get(OPT_PARAMETER_LIST)
        if wanted:
            # The client's order first; then everything else configured, because phones
            # do not always list the options they read (66, 43, 160 ...).
            for code in wanted:
                payload = configured.get(code)
                if payload is not None:
                    options[code] = payload
            for code, payload in configured.items():
                if code not in options:
                    options[code] = payload
        else:
            options.update(configured)
        self._echo_relay_info(msg, options)
        reply = DhcpMessage(
            BOOTREPLY, msg.xid, msg.chaddr, options,
            ciaddr, yiaddr, self._next_server, msg.giaddr,
            msg.hops, 0, msg.flags, msg.htype, msg.hlen,
        )  # fmt: skip
        self.stats["offer" if mtype == OFFER else "ack"] += 1
        return self._addressed(reply, msg)

    def _nak(self, msg: DhcpMessage, why: str) -> Reply:
        self.stats["nak"] += 1
        options = {
            OPT_MESSAGE_TYPE: bytes((NAK,)),
            OPT_SERVER_ID: self._server_id_bytes,
            OPT_MESSAGE: why.encode("ascii"),
        }
        self._echo_relay_info(msg, options)
        # RFC 2131 §4.3.2: a NAK through a relay has the broadcast bit set, because the
        # client may not be able to receive unicast any more.
        flags = msg.flags | BROADCAST_FLAG if msg.giaddr != ZERO_IP else msg.flags
        reply = DhcpMessage(
            BOOTREPLY, msg.xid, msg.chaddr, options,
            ZERO_IP, ZERO_IP, ZERO_IP, msg.giaddr,
            msg.hops, 0, flags, msg.htype, msg.hlen,
        )  # fmt: skip
        return self._addressed(reply, msg)

    @staticmethod
    def _echo_relay_info(msg: DhcpMessage, options: dict[int, bytes]) -> None:
        # RFC 3046 §2.2: the server echoes option 82 unchanged, as the last option.
        relay_info = msg.options.get(OPT_RELAY_AGENT_INFO)
        if relay_info is not None:
            options[OPT_RELAY_AGENT_INFO] = relay_info

    @staticmethod
    def _addressed(reply: DhcpMessage, request: DhcpMessage) -> Reply:
        """Where a reply goes (RFC 2131 §4.1)."""
        if request.giaddr != ZERO_IP:
            return Reply(reply, request.giaddr, None)  # to the relay, on the server port
        is_nak = reply.options[OPT_MESSAGE_TYPE][0] == NAK
        if request.ciaddr != ZERO_IP and not is_nak:
            return Reply(reply, request.ciaddr, CLIENT_PORT)
        if not is_nak and not request.flags & BROADCAST_FLAG and reply.yiaddr != ZERO_IP and request.hlen == 6:
            # Broadcast bit clear: unicast to yiaddr at chaddr. The client has no address
            # yet, so the edge must put chaddr in the neighbour table itself.
            return Reply(reply, reply.yiaddr, CLIENT_PORT, request.chaddr)
        return Reply(reply, BROADCAST, CLIENT_PORT)


@dataclass(frozen=True, slots=True)
class _Profile:
    """What one kind of client is sent: lease times (51/58/59) and the other options."""

    lease_options: dict[int, bytes]
    options: dict[int, bytes]


def _checked_options(options: dict[int, bytes], where: str) -> dict[int, bytes]:
    """Options given to the server directly (its API): the same rules the scenario's
    loader applied. Options the loader encoded (``EncodedOptions``) are taken as they are."""
    if isinstance(options, dhcp_options.EncodedOptions):
        return options
    checked: dict[int, bytes] = {}
    for code, payload in options.items():
        if isinstance(code, bool) or not isinstance(code, int) or not 1 <= code <= 254:
            raise ValueError(f"{where}: option code {code!r} must be an int 1..254")
        if code in SERVER_MANAGED_OPTIONS:
            raise ValueError(
                f"{where}: option {code} is set by the server itself (use server_id / lease_time_s), not by options"
            )
        if not isinstance(payload, bytes):
            raise ValueError(
                f"{where}: option {code}: payload must be bytes (encode it with dhcp_options), not {payload!r}"
            )
        checked[code] = payload
    return checked


def _address(name: str, value: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not an IPv4 address") from None


def _requested_ip(msg: DhcpMessage) -> str | None:
    raw = msg.options.get(OPT_REQUESTED_IP)
    return inet_ntoa(raw) if raw is not None and len(raw) == 4 else None

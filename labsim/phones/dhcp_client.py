"""A phone's DHCP client (RFC 2131 section 4.4), without I/O.

    INIT --DISCOVER--> SELECTING --OFFER/REQUEST--> REQUESTING --ACK--> BOUND
    INIT-REBOOT (a reboot with an address remembered) --REQUEST(50)--> ACK: BOUND, NAK: INIT
    BOUND --T1--> RENEWING (REQUEST, ciaddr, unicast to the server that gave the lease)
    RENEWING --T2--> REBINDING (REQUEST, ciaddr, broadcast: any server)
    RENEWING | REBINDING --ACK--> BOUND;  --NAK or lease expiry--> INIT (the address is lost)

Retransmissions while acquiring back off as RFC 2131 4.1 says: 4 s, then 8, 16, 32,
capped at 64 s, each randomised by +-1 s. While renewing or rebinding a REQUEST is sent
again after half the time left until T2 (or until expiry), but no sooner than 60 s
(4.4.5). T1 and T2 are the server's options 58 and 59, else 0.5 and 0.875 of the lease
time (option 51). A vendor may collect OFFERs for a window and take the longest lease
(Avaya); with no window the first OFFER wins.

One timer, ``LEASE_TIMER``, carries the bound phases (T1, each renewal retransmission,
T2, expiry); what it means when it fires is decided when it is set (``_due``), so a
clock reading a hair before T1 cannot make it mean something else.
"""

from __future__ import annotations

import random
from array import array
from dataclasses import dataclass, field
from types import MappingProxyType

from labsim.phones.events import SendDhcp, StartTimer, CancelTimer
from labsim.phones.packed import SharedValues
from labsim.wire import dhcp
from labsim.wire.dhcp import DhcpMessage

RETRANSMIT_TIMER = "dhcp"
OFFER_WINDOW_TIMER = "dhcp_offers"
LEASE_TIMER = "dhcp_lease"
# The timers a DHCP reply that has arrived but is not read yet can make stale (the
# driver reads waiting replies before one of these fires; other timers need no read).
REPLY_TIMERS = frozenset({RETRANSMIT_TIMER, OFFER_WINDOW_TIMER, LEASE_TIMER})
FIRST_TIMEOUT_S = 4.0
MAX_TIMEOUT_S = 64.0
REQUEST_ATTEMPTS = 4  # then start again from DISCOVER
INIT_REBOOT_ATTEMPTS = 2  # REQUESTs for the remembered address before DISCOVER (4 s + 8 s)
MIN_LEASE_RETRANSMIT_S = 60.0  # RFC 2131 4.4.5
INFINITE_LEASE = 0xFFFFFFFF
MESSAGE_TYPE = 53

INIT, SELECTING, REQUESTING, INIT_REBOOT = "INIT", "SELECTING", "REQUESTING", "INIT-REBOOT"
BOUND, RENEWING, REBINDING = "BOUND", "RENEWING", "REBINDING"
HOLDING_AN_ADDRESS = (BOUND, RENEWING, REBINDING)


@dataclass(frozen=True)
class DhcpIdentity:
    """What a vendor's phone says about itself in DHCP."""

    vendor_class: bytes | None  # option 60
    parameter_request_list: bytes  # option 55
    hostname: bytes | None = None  # option 12
    send_client_id: bool = True  # option 61: hardware type 1 + MAC
    offer_window_s: float = 0.0


@dataclass(slots=True)
class Lease:
    address: str
    server_id: str | None
    lease_time_s: int | None  # None (no option 51) or INFINITE_LEASE: never runs out
    options: dict[int, bytes] = field(default_factory=dict)  # read-only: shared (see _shared_options)
    acquired_at: float = 0.0
    renew_s: float | None = None  # T1, from acquired_at
    rebind_s: float | None = None  # T2
    name_servers: tuple[str, ...] = ()  # option 6: the DNS servers the phone asks (shared)

    @property
    def expires(self) -> bool:
        return self.lease_time_s is not None and self.lease_time_s != INFINITE_LEASE

    def times(self) -> tuple[float, float, float]:
        """(T1, T2, expiry) as moments, in the clock the lease was acquired on."""
        return (self.acquired_at + self.renew_s, self.acquired_at + self.rebind_s,
                self.acquired_at + self.lease_time_s)


def lease_from_ack(ack: DhcpMessage, now: float) -> Lease:
    """The lease an ACK grants, with T1/T2 from options 58/59 or the RFC 2131 defaults
    (kept in order: T1 <= T2 <= the lease time, whatever the server sent)."""
    lease = Lease(address=ack.yiaddr, server_id=ack.option_ip(54), lease_time_s=ack.option_u32(51),
                  options=_shared_options(ack.options), acquired_at=now,
                  name_servers=_name_servers_of(ack.options.get(dhcp.OPTION_DNS_SERVERS)))
    if lease.expires:
        total = float(lease.lease_time_s)
        rebind = ack.option_u32(59)
        rebind = total * 0.875 if rebind is None else min(float(rebind), total)
        renew = ack.option_u32(58)
        renew = min(total * 0.5, rebind) if renew is None else min(float(renew), rebind)
        lease.renew_s, lease.rebind_s = renew, rebind
    return lease


def _work_out_name_servers(payload: bytes | None) -> tuple[str, ...]:
    """Option 6's addresses; none for a missing or malformed option (as cisco.py reads 150)."""
    return tuple(dhcp.ip_list(payload)) if payload and not len(payload) % 4 else ()


_name_servers_of = SharedValues(1024, _work_out_name_servers).one  # option 6's payload -> its addresses, shared


# A fleet's phones of one model say the same things: one identity each, not one a phone
# (identities that name the phone, a MAC in option 12, do not recur).
shared_identity = SharedValues(4096).one

# A server sends the same options to every phone of a class: each set is kept once, read-only,
# for every lease that has it (a dict and its bytes a phone were ~0.6 KB of each phone).
_option_sets = SharedValues(4096, make=lambda items: MappingProxyType(dict(items)))


def _shared_options(options: dict[int, bytes]) -> MappingProxyType:
    return _option_sets.one(tuple(options.items()))


# What a client counts (``DhcpClient.stats``), kept as one small array of numbers a phone.
COUNTS = ("discover", "request", "offer", "ack", "nak", "retransmit", "init_reboot", "renew", "rebind", "expired")
(_DISCOVER, _REQUEST, _OFFER, _ACK, _NAK, _RETRANSMIT, _INIT_REBOOT, _RENEW, _REBIND,
 _EXPIRED) = range(len(COUNTS))


class DhcpClient:
    # No per-instance __dict__: every phone has one for the whole run.
    __slots__ = ("mac", "identity", "rng", "state", "xid", "started_at", "attempt", "offers", "chosen", "lease",
                 "remembered", "lost_reason", "_due", "counts")

    def __init__(self, mac: bytes, identity: DhcpIdentity, rng: random.Random):
        self.mac = mac
        self.identity = identity
        self.rng = rng
        self.state = INIT
        self.xid = 0
        self.started_at = 0.0
        self.attempt = 0
        self.offers: list[DhcpMessage] = []
        self.chosen: DhcpMessage | None = None
        self.lease: Lease | None = None
        # The address of the last lease, kept over a reboot for INIT-REBOOT; forgotten on
        # a NAK, on expiry and on a factory reset.
        self.remembered: str | None = None
        self.lost_reason = ""  # why the last lease was lost (set when state goes back to INIT)
        self._due = ""  # what LEASE_TIMER means: "renew", "rebind" or "expire"
        self.counts = array("I", bytes(4 * len(COUNTS)))  # by COUNTS

    @property
    def stats(self) -> dict[str, int]:
        """What this client has sent, received and done, by name (COUNTS)."""
        return dict(zip(COUNTS, self.counts))

    # --- entry points -------------------------------------------------------------

    def boot(self, now: float) -> list:
        """What the phone does at every boot: INIT-REBOOT when it remembers an address
        (RFC 2131 4.4.2), else INIT."""
        if self.remembered is None:
            return [CancelTimer(LEASE_TIMER)] + self.start(now)
        self._new_transaction(INIT_REBOOT, now)
        self.counts[_INIT_REBOOT] += 1
        return [CancelTimer(LEASE_TIMER)] + self._send_init_reboot(now)

    def start(self, now: float) -> list:
        """Begin (or begin again) from INIT: a fresh transaction and a DISCOVER."""
        self._new_transaction(SELECTING, now)
        return self._send_discover(now)

    def forget(self) -> None:
        """A factory reset: no address is remembered for the next boot."""
        self.remembered = None

    def on_message(self, message: DhcpMessage, now: float) -> list:
        if message.xid != self.xid or message.chaddr != self.mac or message.op != dhcp.BOOTREPLY:
            return []
        handler = _ON_MESSAGE.get((self.state, message.message_type))
        return handler(self, message, now) if handler is not None else []

    def on_timer(self, name: str, now: float) -> list:
        if name == LEASE_TIMER:
            return self._lease_timer(now)
        if name == OFFER_WINDOW_TIMER and self.state == SELECTING and self.offers:
            return self._request(self._longest_lease(), now)
        if name != RETRANSMIT_TIMER:
            return []
        self.counts[_RETRANSMIT] += 1
        if self.state == SELECTING:
            self.attempt += 1
            return self._send_discover(now)
        if self.state == REQUESTING:
            self.attempt += 1
            if self.attempt >= REQUEST_ATTEMPTS:
                return self.start(now)
            return self._send_request(now)
        if self.state == INIT_REBOOT:
            self.attempt += 1
            if self.attempt >= INIT_REBOOT_ATTEMPTS:
                return self.start(now)
            return self._send_init_reboot(now)
        return []

    # --- acquiring ----------------------------------------------------------------

    def _on_offer(self, offer: DhcpMessage, now: float) -> list:
        self.counts[_OFFER] += 1
        if self.identity.offer_window_s <= 0:
            return self._request(offer, now)
        self.offers.append(offer)
        if len(self.offers) == 1:
            return [StartTimer(OFFER_WINDOW_TIMER, self.identity.offer_window_s)]
        return []

    def _longest_lease(self) -> DhcpMessage:
        # max() keeps the first of equals: on a tie the first OFFER wins.
        return max(self.offers, key=lambda offer: offer.option_u32(51) or 0)

    def _request(self, offer: DhcpMessage, now: float) -> list:
        self.state = REQUESTING
        self.chosen = offer
        self.attempt = 0
        return [CancelTimer(RETRANSMIT_TIMER)] + self._send_request(now)

    def _on_ack(self, ack: DhcpMessage, now: float) -> list:
        self.counts[_ACK] += 1
        self.state = BOUND
        self.chosen = None  # the OFFER answered: not needed once bound
        self.offers.clear()
        self.lease = lease_from_ack(ack, now)
        self.remembered = self.lease.address
        actions = [CancelTimer(RETRANSMIT_TIMER)]
        if self.lease.expires:
            actions.append(self._lease_timer_at(self.lease.times()[0], "renew", now))
        else:
            actions.append(CancelTimer(LEASE_TIMER))
        return actions

    def _on_nak(self, nak: DhcpMessage, now: float) -> list:
        """REQUESTING or INIT-REBOOT: that address is not to be had; start over."""
        self.counts[_NAK] += 1
        self.remembered = None
        return [CancelTimer(RETRANSMIT_TIMER)] + self.start(now)

    # --- holding an address ---------------------------------------------------------

    def _lease_timer(self, now: float) -> list:
        due = self._due
        if self.state not in HOLDING_AN_ADDRESS or not due:
            return []
        renew_at, rebind_at, expires_at = self.lease.times()
        if due == "expire":
            self.counts[_EXPIRED] += 1
            return self._lose(f"lease of {self.lease.address} expired", now)
        if due == "rebind" or self.state == REBINDING:
            if self.state != REBINDING:
                self._new_transaction(REBINDING, now)
            self.counts[_REBIND] += 1
            return [self._send_lease_request(now, to=None), self._next_lease_retransmit(now, expires_at, "expire")]
        if self.state != RENEWING:
            self._new_transaction(RENEWING, now)
        self.counts[_RENEW] += 1
        to = self.lease.server_id
        return [self._send_lease_request(now, to=to), self._next_lease_retransmit(now, rebind_at, "rebind")]

    def _next_lease_retransmit(self, now: float, deadline: float, then: str) -> StartTimer:
        """Half the time left to ``deadline``, at least 60 s; at ``deadline`` itself when
        that comes first (then the timer means ``then``)."""
        wait = max(MIN_LEASE_RETRANSMIT_S, (deadline - now) / 2)
        if now + wait >= deadline:
            return self._lease_timer_at(deadline, then, now)
        return self._lease_timer_at(now + wait, "renew" if then == "rebind" else "rebind", now)

    def _lease_timer_at(self, moment: float, due: str, now: float) -> StartTimer:
        self._due = due
        return StartTimer(LEASE_TIMER, max(0.0, moment - now))

    def _on_lease_nak(self, nak: DhcpMessage, now: float) -> list:
        self.counts[_NAK] += 1
        return self._lose(f"lease of {self.lease.address} refused (NAK) while {self.state.lower()}", now)

    def _lose(self, why: str, now: float) -> list:
        """Back to INIT without an address: the caller (the phone) starts over."""
        self.state = INIT
        self.lease = None
        self.remembered = None
        self.lost_reason = why
        self._due = ""
        return [CancelTimer(LEASE_TIMER), CancelTimer(RETRANSMIT_TIMER)]

    # --- messages -----------------------------------------------------------------

    def _new_transaction(self, state: str, now: float) -> None:
        self.state = state
        self.xid = self.rng.getrandbits(32)
        self.started_at = now
        self.attempt = 0
        if state in (SELECTING, INIT_REBOOT):
            self.offers = []
            self.chosen = None
            self.lease = None
            self._due = ""

    def _send_discover(self, now: float) -> list:
        self.counts[_DISCOVER] += 1
        options = {MESSAGE_TYPE: bytes([dhcp.DISCOVER])}
        self._identity_options(options)
        return [SendDhcp(self._message(options, now)), StartTimer(RETRANSMIT_TIMER, self._timeout())]

    def _send_request(self, now: float) -> list:
        self.counts[_REQUEST] += 1
        offer = self.chosen
        options = {MESSAGE_TYPE: bytes([dhcp.REQUEST])}
        options[50] = dhcp.encode_ip_list([offer.yiaddr])
        if 54 in offer.options:
            options[54] = offer.options[54]
        self._identity_options(options)
        return [SendDhcp(self._message(options, now)), StartTimer(RETRANSMIT_TIMER, self._timeout())]

    def _send_init_reboot(self, now: float) -> list:
        """RFC 2131 4.3.2: option 50 the remembered address, no server id, ciaddr zero."""
        self.counts[_REQUEST] += 1
        options = {MESSAGE_TYPE: bytes([dhcp.REQUEST]), 50: dhcp.encode_ip_list([self.remembered])}
        self._identity_options(options)
        return [SendDhcp(self._message(options, now)), StartTimer(RETRANSMIT_TIMER, self._timeout())]

    def _send_lease_request(self, now: float, *, to: str | None) -> SendDhcp:
        """RENEWING (``to`` the server) or REBINDING (broadcast): ciaddr is the lease,
        neither option 50 nor 54 (RFC 2131 4.3.2, table 5)."""
        self.counts[_REQUEST] += 1
        options = {MESSAGE_TYPE: bytes([dhcp.REQUEST])}
        self._identity_options(options)
        message = self._message(options, now)
        message.ciaddr = self.lease.address
        return SendDhcp(message, to)

    def _identity_options(self, options: dict[int, bytes]) -> None:
        identity = self.identity
        if identity.send_client_id:
            options[61] = b"\x01" + self.mac
        if identity.hostname:
            options[12] = identity.hostname
        if identity.vendor_class is not None:
            options[60] = identity.vendor_class
        options[55] = identity.parameter_request_list

    def _message(self, options: dict[int, bytes], now: float) -> DhcpMessage:
        return DhcpMessage(
            op=dhcp.BOOTREQUEST,
            xid=self.xid,
            chaddr=self.mac,
            options=options,
            secs=min(int(now - self.started_at), 0xFFFF),
        )

    def _timeout(self) -> float:
        # The exponent is capped too: a phone left without a server for a day makes
        # thousands of attempts, and 2.0 ** 1024 does not fit a float.
        base = min(FIRST_TIMEOUT_S * (2 ** min(self.attempt, 8)), MAX_TIMEOUT_S)
        return base + self.rng.uniform(-1.0, 1.0)


# (client state, message type) -> handler; anything else is ignored (a stray or late reply).
_ON_MESSAGE = {
    (SELECTING, dhcp.OFFER): DhcpClient._on_offer,
    (REQUESTING, dhcp.ACK): DhcpClient._on_ack,
    (REQUESTING, dhcp.NAK): DhcpClient._on_nak,
    (INIT_REBOOT, dhcp.ACK): DhcpClient._on_ack,
    (INIT_REBOOT, dhcp.NAK): DhcpClient._on_nak,
    (RENEWING, dhcp.ACK): DhcpClient._on_ack,
    (RENEWING, dhcp.NAK): DhcpClient._on_lease_nak,
    (REBINDING, dhcp.ACK): DhcpClient._on_ack,
    (REBINDING, dhcp.NAK): DhcpClient._on_lease_nak,
}

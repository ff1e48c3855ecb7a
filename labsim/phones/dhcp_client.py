"""A phone's DHCP client (RFC 2131 section 4.4), without I/O.

States: INIT -> SELECTING -> REQUESTING -> BOUND. Retransmissions back off as RFC 2131
4.1 says: 4 s, then 8, 16, 32, capped at 64 s, each randomised by +-1 s. A vendor may
collect OFFERs for a window and take the longest lease (Avaya); with no window the
first OFFER wins.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from labsim.phones.events import SendDhcp, StartTimer, CancelTimer
from labsim.wire import dhcp
from labsim.wire.dhcp import DhcpMessage

RETRANSMIT_TIMER = "dhcp"
OFFER_WINDOW_TIMER = "dhcp_offers"
FIRST_TIMEOUT_S = 4.0
MAX_TIMEOUT_S = 64.0
REQUEST_ATTEMPTS = 4  # then start again from DISCOVER
MESSAGE_TYPE = 53


@dataclass(frozen=True)
class DhcpIdentity:
    """What a vendor's phone says about itself in DHCP."""

    vendor_class: bytes | None  # option 60
    parameter_request_list: bytes  # option 55
    hostname: bytes | None = None  # option 12
    send_client_id: bool = True  # option 61: hardware type 1 + MAC
    offer_window_s: float = 0.0


@dataclass
class Lease:
    address: str
    server_id: str | None
    lease_time_s: int | None
    options: dict[int, bytes] = field(default_factory=dict)


class DhcpClient:
    def __init__(self, mac: bytes, identity: DhcpIdentity, rng: random.Random):
        self.mac = mac
        self.identity = identity
        self.rng = rng
        self.state = "INIT"
        self.xid = 0
        self.started_at = 0.0
        self.attempt = 0
        self.offers: list[DhcpMessage] = []
        self.chosen: DhcpMessage | None = None
        self.lease: Lease | None = None
        self.stats = {"discover": 0, "request": 0, "offer": 0, "ack": 0, "nak": 0, "retransmit": 0}

    # --- entry points -------------------------------------------------------------

    def start(self, now: float) -> list:
        """Begin (or begin again) from INIT: a fresh transaction and a DISCOVER."""
        self.state = "SELECTING"
        self.xid = self.rng.getrandbits(32)
        self.started_at = now
        self.attempt = 0
        self.offers = []
        self.chosen = None
        self.lease = None
        return self._send_discover(now)

    def on_message(self, message: DhcpMessage, now: float) -> list:
        if message.xid != self.xid or message.chaddr != self.mac or message.op != dhcp.BOOTREPLY:
            return []
        kind = message.message_type
        if self.state == "SELECTING" and kind == dhcp.OFFER:
            return self._on_offer(message, now)
        if self.state == "REQUESTING" and kind == dhcp.ACK:
            return self._on_ack(message)
        if self.state == "REQUESTING" and kind == dhcp.NAK:
            self.stats["nak"] += 1
            return [CancelTimer(RETRANSMIT_TIMER)] + self.start(now)
        return []

    def on_timer(self, name: str, now: float) -> list:
        if name == OFFER_WINDOW_TIMER and self.state == "SELECTING" and self.offers:
            return self._request(self._longest_lease(), now)
        if name != RETRANSMIT_TIMER:
            return []
        self.stats["retransmit"] += 1
        if self.state == "SELECTING":
            self.attempt += 1
            return self._send_discover(now)
        if self.state == "REQUESTING":
            self.attempt += 1
            if self.attempt >= REQUEST_ATTEMPTS:
                return self.start(now)
            return self._send_request(now)
        return []

    # --- steps --------------------------------------------------------------------

    def _on_offer(self, offer: DhcpMessage, now: float) -> list:
        self.stats["offer"] += 1
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
        self.state = "REQUESTING"
        self.chosen = offer
        self.attempt = 0
        return [CancelTimer(RETRANSMIT_TIMER)] + self._send_request(now)

    def _on_ack(self, ack: DhcpMessage) -> list:
        self.stats["ack"] += 1
        self.state = "BOUND"
        self.lease = Lease(
            address=ack.yiaddr,
            server_id=ack.option_ip(54),
            lease_time_s=ack.option_u32(51),
            options=dict(ack.options),
        )
        return [CancelTimer(RETRANSMIT_TIMER)]

    # --- messages -----------------------------------------------------------------

    def _send_discover(self, now: float) -> list:
        self.stats["discover"] += 1
        options = {MESSAGE_TYPE: bytes([dhcp.DISCOVER])}
        self._identity_options(options)
        return [SendDhcp(self._message(options, now)), StartTimer(RETRANSMIT_TIMER, self._timeout())]

    def _send_request(self, now: float) -> list:
        self.stats["request"] += 1
        offer = self.chosen
        options = {MESSAGE_TYPE: bytes([dhcp.REQUEST])}
        options[50] = dhcp.encode_ip_list([offer.yiaddr])
        if 54 in offer.options:
            options[54] = offer.options[54]
        self._identity_options(options)
        return [SendDhcp(self._message(options, now)), StartTimer(RETRANSMIT_TIMER, self._timeout())]

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
        base = min(FIRST_TIMEOUT_S * (2 ** self.attempt), MAX_TIMEOUT_S)
        return base + self.rng.uniform(-1.0, 1.0)

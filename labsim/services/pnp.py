"""The PnP responder: answers a phone's ``ua-profile`` SUBSCRIBE with 200 OK and a NOTIFY
whose body is the provisioning URL for that phone (RFC 6080; Yealink's "PnP").

``PnpResponder`` is I/O-free: datagram and source in, datagrams to send out. A thin
``DatagramProtocol`` (``labsim.services.pnp_udp``) puts it on a UDP socket.

Choices, and why:

- Replies (the 200 OK and the NOTIFY) go to the datagram's **source address**, as
  RFC 3581 ``rport`` asks for responses, not to the Contact host. A phone's Contact names
  its lease address (10.x in a loopback lab), which must never receive a packet here.
- The URL: ``per_model`` (model -> URL) before ``per_vendor`` (vendor -> URL) before
  ``url``; ``{mac}``, ``{MAC}``, ``{model}`` and ``{vendor}`` in it are filled in. A phone
  with no URL gets no answer at all: on a multicast group other responders may serve it.
- A retransmitted SUBSCRIBE (same Call-ID and CSeq) gets the same 200 OK again, and the
  NOTIFY again if the phone has not acknowledged it yet: the phone's retransmissions
  drive recovery from a lost NOTIFY, so the responder needs no clock of its own.
- Malformed datagrams are counted and dropped; nothing a peer sends makes it raise.

Where it listens: always on a unicast socket (``host:port``; in a loopback lab the phones
send their SUBSCRIBE there, as loopback has no multicast), and, given an ``interface``,
also on the real group 224.0.1.75 on that interface (a namespace lab), from a socket bound
to 0.0.0.0:5060 and pinned to the interface (SO_BINDTODEVICE), like the DHCP server's
broadcast socket. Bound to 0.0.0.0 rather than to the group, that socket also receives the
phones' unicast 200 OK to our NOTIFY, which they send to where the NOTIFY came from.

Faults (labsim.faults): with ``PnpServerHandle.link`` set, every datagram in and every
reply out, on each socket, passes through ``link.carry`` (loss, delay, jitter, duplicate,
reorder, corrupt, bandwidth, down), as TFTP's do; None (the default) costs one check per
datagram. A down responder is silent: the phones wait out their PnP time and fall back
to their DHCP options.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from labsim.wire import sip_pnp
from labsim.wire.sip_pnp import SipParseError

DEFAULT_PORT = 5070  # unprivileged, for the unicast socket of a loopback lab
PNP_GROUP, STANDARD_PORT = sip_pnp.PNP_MULTICAST  # 224.0.1.75:5060, where phones multicast
REMEMBERED_SUBSCRIPTIONS = 4096  # for answering retransmissions; oldest forgotten first


@dataclass
class PnpResponderConfig:
    url: str | None = None
    per_vendor: dict[str, str] = field(default_factory=dict)  # lowercase vendor -> URL
    per_model: dict[str, str] = field(default_factory=dict)  # model (any case) -> URL
    local: tuple[str, int] = ("127.0.0.1", DEFAULT_PORT)  # for our Via and Contact

    def url_for(self, request: sip_pnp.ProfileRequest) -> str | None:
        models = {model.upper(): url for model, url in self.per_model.items()}
        vendors = {vendor.lower(): url for vendor, url in self.per_vendor.items()}
        url = models.get(request.model.upper()) or vendors.get(request.vendor.lower()) or self.url
        if not url:
            return None
        return (url.replace("{mac}", request.mac).replace("{MAC}", request.mac.upper())
                .replace("{model}", request.model).replace("{vendor}", request.vendor))


@dataclass
class _Answered:
    ok: bytes
    notify: bytes
    branch: str  # of our NOTIFY: the phone's 200 OK carries it back
    acked: bool = False


class PnpResponder:
    def __init__(self, config: PnpResponderConfig):
        self.config = config
        self.stats = {"received": 0, "subscribes": 0, "notifies_sent": 0, "retransmissions": 0,
                      "notify_acked": 0, "no_url": 0, "malformed": 0, "ignored": 0}
        self._answered: OrderedDict[tuple[str, int], _Answered] = OrderedDict()
        self._by_notify: dict[str, tuple[str, int]] = {}  # our NOTIFY branch -> subscription key
        self._serial = 0

    def handle(self, data: bytes, source: tuple[str, int],
               local: tuple[str, int] | None = None) -> list[tuple[bytes, tuple[str, int]]]:
        """The datagrams to send for one received datagram. ``local``: the address the
        datagram came in on, for our Via and Contact (default ``config.local``); a
        responder on two sockets answers each phone from the one it reached."""
        try:
            return self._handle(data, source, local or self.config.local)
        except SipParseError:  # a header that only fails when the answer is built (Contact, Via ...)
            self.stats["malformed"] += 1
            return []

    def _handle(self, data: bytes, source: tuple[str, int],
                local: tuple[str, int]) -> list[tuple[bytes, tuple[str, int]]]:
        self.stats["received"] += 1
        try:
            message = sip_pnp.parse(data)
            if not message.is_request:
                self._response(message)
                return []
            request = sip_pnp.profile_request(message)
        except SipParseError:
            self.stats["malformed"] += 1
            return []
        if request is None:
            self.stats["ignored"] += 1
            return []
        self.stats["subscribes"] += 1
        key = (message.call_id, message.cseq[0])
        known = self._answered.get(key)
        if known is not None:
            self.stats["retransmissions"] += 1
            replies = [(known.ok, source)]
            if not known.acked:
                self.stats["notifies_sent"] += 1
                replies.append((known.notify, source))
            return replies
        url = self.config.url_for(request)
        if url is None:
            self.stats["no_url"] += 1
            return []
        self._serial += 1
        tag, branch = f"pnp{self._serial:x}", f"{sip_pnp.BRANCH_MAGIC}pnp{self._serial:x}"
        ok = sip_pnp.build_response(message, 200, "OK", to_tag=tag)
        notify = sip_pnp.build_notify(message, url, local=local, to_tag=tag, branch=branch)
        answered = _Answered(ok.encode(), notify.encode(), branch)
        self._remember(key, answered)
        self.stats["notifies_sent"] += 1
        return [(answered.ok, source), (answered.notify, source)]

    def _response(self, message: sip_pnp.SipMessage) -> None:
        """A phone's 200 OK to our NOTIFY: stop resending it."""
        if message.cseq[1] != "NOTIFY":
            self.stats["ignored"] += 1
            return
        branch = sip_pnp.via_params(message.header("via", "")).get("branch", "")
        key = self._by_notify.get(branch)
        answered = self._answered.get(key) if key else None
        if answered is None or not 200 <= message.status < 300:
            self.stats["ignored"] += 1
            return
        if not answered.acked:
            answered.acked = True
            self.stats["notify_acked"] += 1

    def _remember(self, key: tuple[str, int], answered: _Answered) -> None:
        self._answered[key] = answered
        self._by_notify[answered.branch] = key
        while len(self._answered) > REMEMBERED_SUBSCRIPTIONS:
            _, forgotten = self._answered.popitem(last=False)
            self._by_notify.pop(forgotten.branch, None)

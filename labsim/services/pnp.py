"""The PnP responder: answers a phone's ``ua-profile`` SUBSCRIBE with 200 OK and a NOTIFY
whose body is the provisioning URL for that phone (RFC 6080; Yealink's "PnP").

``PnpResponder`` is I/O-free: datagram and source in, datagrams to send out. A thin
``DatagramProtocol`` puts it on a UDP socket.

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

import ipaddress
import socket
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol

from labsim.net.udp import bind_udp, interface_ipv4
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


# --- joining the group (the one thing bind_udp does not do) --------------------------------

# Linux values; Python exposes IP_MULTICAST_ALL only on some builds.
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)


def membership_request(group: str, ifindex: int) -> bytes:
    """``struct ip_mreqn`` for IP_ADD_MEMBERSHIP: ``group`` on the interface with index
    ``ifindex``. By index rather than by address (``ip_mreq``): an interface can carry
    several addresses, or share one with another interface; its index names it alone."""
    if not ipaddress.IPv4Address(group).is_multicast:
        raise ValueError(f"{group} is not an IPv4 multicast group")
    # imr_multiaddr, imr_address (0.0.0.0: chosen by index), int imr_ifindex (host order)
    return socket.inet_aton(group) + bytes(4) + struct.pack("=i", ifindex)


def join_group(sock: socket.socket, group: str, interface: str) -> None:
    """Receive ``group`` on ``interface`` (and no other group) on ``sock``."""
    try:
        ifindex = socket.if_nametoindex(interface)
    except OSError:
        raise ValueError(f"interface {interface!r}: no such network interface") from None
    # A socket bound to 0.0.0.0 otherwise gets every group anyone on the host joined on
    # that interface: with this off it gets only its own (and unicast).
    sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership_request(group, ifindex))
    # No IP_MULTICAST_TTL/LOOP/IF: every reply is unicast to the SUBSCRIBE's source, and
    # nothing is ever sent to the group.


# --- the Twisted edge -----------------------------------------------------------------

# What a live observer is told after each datagram: the protocol that took it (``device``
# None: the unicast socket), the datagram, its source and the replies sent.
PnpObserver = Callable[["_PnpProtocol", bytes, tuple[str, int], list[tuple[bytes, tuple[str, int]]]], None]


class _PnpProtocol(DatagramProtocol):
    noisy = False

    def __init__(self, responder: PnpResponder, *, device: str | None = None,
                 local: tuple[str, int] | None = None):
        self.responder = responder
        self.device = device  # the interface of a group socket; None for the unicast one
        self.local = local  # our Via/Contact address for phones reaching this socket
        self.on_event: PnpObserver | None = None  # None costs one check per datagram
        self.link = None  # a labsim.faults.FaultyLink, or None: datagrams go straight through
        self._received_key = "interface_received" if device else None
        self._stopped = False

    def datagramReceived(self, data: bytes, addr) -> None:
        link = self.link
        if link is None:
            self._handle(data, addr)
        else:
            link.carry("in", data, lambda datagram: self._handle(datagram, addr))

    def _handle(self, data: bytes, addr) -> None:
        if self._stopped:  # a datagram the fault link delayed past the stop
            return
        stats = self.responder.stats
        if self._received_key:
            stats[self._received_key] += 1
        source = (addr[0], addr[1])
        replies = self.responder.handle(data, source, self.local)
        link = self.link
        for reply, target in replies:
            if link is None:
                self._send(reply, target)
            else:
                link.carry("out", reply, lambda datagram, target=target: self._send(datagram, target))
        if self.on_event is not None:
            self.on_event(self, data, source, replies)

    def _send(self, reply: bytes, target: tuple[str, int]) -> None:
        if self._stopped:  # a reply the fault link delayed past the stop
            return
        try:
            self.transport.write(reply, target)
        except OSError:
            self.responder.stats["send_errors"] += 1

    def stopProtocol(self) -> None:
        self._stopped = True


class PnpServerHandle:
    """The sockets of one responder, stopped together. ``port``: the unicast socket's;
    ``interface_port`` and ``interface_address``: the group socket's (None without one)."""

    def __init__(self, responder: PnpResponder, ports: list, protocols: list[_PnpProtocol]):
        self.responder = responder
        self._ports = ports
        self.protocols = protocols
        self.port = ports[0].getHost().port
        self.interface_port = ports[1].getHost().port if len(ports) > 1 else None
        self.interface_address = protocols[1].local[0] if len(protocols) > 1 else None

    @property
    def stats(self) -> dict:
        return self.responder.stats

    @property
    def link(self):
        """The fault link (labsim.faults.FaultyLink) on every socket of the responder."""
        return self.protocols[0].link

    @link.setter
    def link(self, link) -> None:
        for protocol in self.protocols:
            protocol.link = link

    def set_observer(self, observer: PnpObserver | None) -> None:
        for protocol in self.protocols:
            protocol.on_event = observer

    def stop(self) -> defer.Deferred:
        """Close every socket (closing the group socket leaves the group)."""
        ports, self._ports = self._ports, []  # a second stop is harmless
        return defer.DeferredList([defer.maybeDeferred(port.stopListening) for port in ports])


def start_pnp_server(reactor, config: PnpResponderConfig, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                     *, interface: str | None = None, interface_port: int = STANDARD_PORT) -> PnpServerHandle:
    """Answer PnP SUBSCRIBEs on UDP ``host:port`` (0: any free port; see ``.port``).

    ``interface``: also on the group 224.0.1.75, port ``interface_port``, on that
    interface only (SO_BINDTODEVICE: root or CAP_NET_RAW), answering from the interface's
    address. ValueError when the interface does not exist or has no IPv4 address;
    OSError when a socket cannot be bound."""
    responder = PnpResponder(config)
    for key in ("send_errors",) + (("interface_received",) if interface else ()):
        responder.stats.setdefault(key, 0)
    # Known before anything is bound, so a bad interface leaves nothing to clean up.
    interface_address = interface_ipv4(interface) if interface else None
    unicast = _PnpProtocol(responder)
    listening = bind_udp(reactor, unicast, host, port, exclusive=True)
    unicast.local = config.local = (host, listening.getHost().port)
    ports, protocols = [listening], [unicast]
    if interface:
        on_link = _PnpProtocol(responder, device=interface, local=(interface_address, interface_port))
        try:
            group_port = bind_udp(reactor, on_link, "0.0.0.0", interface_port, reuse_addr=True, device=interface)
            ports.append(group_port)
            join_group(group_port.getHandle(), PNP_GROUP, interface)
        except Exception:
            for opened in ports:
                opened.stopListening()
            raise
        protocols.append(on_link)
        on_link.local = (interface_address, group_port.getHost().port)
    return PnpServerHandle(responder, ports, protocols)

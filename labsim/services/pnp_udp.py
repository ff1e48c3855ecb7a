"""The PnP responder on UDP: a unicast socket, and on a namespace lab also the group
224.0.1.75 on an interface (see ``labsim.services.pnp`` for what it answers and why)."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol

from labsim.net.udp import bind_udp, interface_ipv4, join_group
from labsim.services.pnp import DEFAULT_PORT, PNP_GROUP, STANDARD_PORT, PnpResponder, PnpResponderConfig

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

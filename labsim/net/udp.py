"""Binding UDP sockets for Twisted with the options ``listenUDP`` cannot set.

``reactor.listenUDP`` sets no SO_REUSEADDR, SO_BROADCAST or SO_BINDTODEVICE and caps
datagrams at 8192 bytes (a large TFTP blksize is silently truncated). So the socket is
built here and handed to ``reactor.adoptDatagramPort`` with a raised ``maxPacketSize``.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import socket
import struct

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol
from twisted.python import log

# Linux values; Python exposes the names only on some builds.
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SIOCGIFADDR = 0x8915
SIOCSARP = 0x8955
ATF_COM = 0x02  # the ARP entry is complete (has a hardware address)
ARPHRD_ETHER = 1


def bind_udp(
    reactor,
    protocol: DatagramProtocol,
    host: str,
    port: int,
    *,
    reuse_addr: bool | None = None,
    broadcast: bool = False,
    device: str | None = None,
    max_packet: int = 65535,
    recv_buffer: int | None = None,
    exclusive: bool = False,
) -> IListeningPort:
    """Bind ``host:port`` (IPv4) and start ``protocol`` on it in ``reactor``.

    ``reuse_addr`` defaults to on for a fixed port (a restarted server rebinds at once,
    and several device-bound sockets can share one port) and OFF for port 0: Linux can
    hand the same ephemeral port to two sockets that both set SO_REUSEADDR (measured:
    408 duplicates in 5,000 binds).

    ``device`` pins the socket to one interface (SO_BINDTODEVICE, needs root or
    CAP_NET_RAW): with ``broadcast`` that is how a DHCP socket bound to 0.0.0.0 talks on
    one interface without a raw socket. ``recv_buffer`` asks for a receive buffer of
    that many bytes for bursts (see :func:`set_receive_buffer`).

    ``exclusive``: a service's listening port, which no other process may share
    (see :func:`refuse_a_shared_port`).
    """
    if reuse_addr is None:
        reuse_addr = port != 0
    if exclusive and reuse_addr and not device:
        refuse_a_shared_port(host, port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if reuse_addr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if broadcast:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if device:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, device.encode() + b"\0")
        if recv_buffer:
            set_receive_buffer(sock, recv_buffer)
        sock.setblocking(False)
        sock.bind((host, port))
        # adoptDatagramPort duplicates the descriptor; ours is closed in any case below.
        return reactor.adoptDatagramPort(sock.fileno(), socket.AF_INET, protocol, maxPacketSize=max_packet)
    finally:
        sock.close()


class ClientPort:
    """A UDP socket on an ephemeral port for one short exchange (a phone's TFTP transfer),
    read by the reactor: what ``bind_udp`` returns, without a Twisted ``udp.Port``.

    A phone's TFTP download opens and closes a port each; Twisted's port logs a line
    when it starts and another when it stops, and adopting a socket duplicates it. In a
    10,000-phone storm those two log lines and the duplicate were ~8 % of the run's CPU.
    This offers what the transfer uses: ``getHandle()`` (the socket, to ``sendto``),
    ``write``, ``getHost``, ``doRead`` and ``stopListening``; the protocol's
    ``datagramReceived`` is called for each datagram, up to ``READS_PER_TURN`` a turn.
    """

    READS_PER_TURN = 64

    def __init__(self, reactor, sock: socket.socket, protocol: DatagramProtocol, max_packet: int):
        self.reactor = reactor
        self.socket = sock
        self.protocol = protocol
        self.max_packet = max_packet
        self._fileno = sock.fileno()
        protocol.makeConnection(self)
        reactor.addReader(self)

    def fileno(self) -> int:
        return self._fileno

    def logPrefix(self) -> str:
        return self.protocol.__class__.__name__

    def getHandle(self) -> socket.socket:
        return self.socket

    def getHost(self) -> IPv4Address:
        host, port = self.socket.getsockname()
        return IPv4Address("UDP", host, port)

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.socket.sendto(data, addr)

    def doRead(self) -> None:
        if self._fileno < 0:
            return
        receive, deliver = self.socket.recvfrom, self.protocol.datagramReceived
        for _ in range(self.READS_PER_TURN):
            try:
                data, addr = receive(self.max_packet)
            except OSError:  # nothing more waiting (EAGAIN), or an ICMP error: nothing to hand over
                return
            try:
                deliver(data, addr)
            except Exception:  # as Twisted's ports do: a protocol's bug is logged, the port lives on
                log.err(None, f"{self.logPrefix()}: failed on a datagram")
            if self._fileno < 0:  # the protocol closed the port on that datagram
                return

    def stopListening(self) -> defer.Deferred:
        self._close()
        return defer.succeed(None)

    def connectionLost(self, reason=None) -> None:
        """The reactor's own shutdown (or an exception out of ``doRead``)."""
        self._close()

    def _close(self) -> None:
        if self._fileno < 0:
            return
        self.reactor.removeReader(self)
        self._fileno = -1
        self.socket.close()
        self.protocol.doStop()


def bind_client(reactor, protocol: DatagramProtocol, host: str, max_packet: int = 65535) -> ClientPort:
    """Bind an ephemeral port on ``host`` (IPv4) for ``protocol``, as ``bind_udp(reactor,
    protocol, host, 0, reuse_addr=False)`` does, as a quiet :class:`ClientPort`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host, 0))
    except BaseException:
        sock.close()
        raise
    return ClientPort(reactor, sock, protocol, max_packet)


def refuse_a_shared_port(host: str, port: int) -> None:
    """OSError(EADDRINUSE) when another socket already holds UDP ``host:port``.

    A service's socket sets SO_REUSEADDR so a restarted server rebinds at once; but on
    Linux two UDP sockets that both set it share the port without a word, and the newer
    one takes the unicast datagrams: a second ``labsim serve`` on 6767 would silently
    steal a running one's DHCP. A probe bind without the option tells."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OSError(errno.EADDRINUSE, "address already in use") from None
            # Anything else (a privileged port without the privilege): the real bind says.


def set_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for a ``size``-byte receive buffer; returns what the kernel granted.

    SO_RCVBUFFORCE (root / CAP_NET_ADMIN) may exceed net.core.rmem_max; without the
    privilege it fails and plain SO_RCVBUF gets at most rmem_max. Linux reports back
    twice the size asked for (it counts its bookkeeping overhead)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def interface_ipv4(name: str) -> str:
    """The primary IPv4 address of interface ``name``; ValueError if it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            answer = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError as exc:
            raise ValueError(f"interface {name!r}: no IPv4 address ({exc.strerror})") from None
    return socket.inet_ntoa(answer[20:24])


def add_arp_entry(sock: socket.socket, ip: str, mac: bytes, device: str) -> None:
    """Tell the kernel that ``ip`` is at ``mac`` on ``device`` (SIOCSARP; root).

    This is how a DHCP server without a raw socket unicasts to a client that has no
    address yet (RFC 2131 4.1, broadcast bit clear): the kernel cannot ARP for an
    address nobody holds, so the server fills the neighbour table itself. The entry is
    not permanent: it ages out like a learnt one. OSError when not allowed."""
    # struct arpreq: sockaddr arp_pa, sockaddr arp_ha, int arp_flags, sockaddr
    # arp_netmask, char arp_dev[16]; sa_family is in host byte order.
    protocol_addr = struct.pack("=H", socket.AF_INET) + bytes(2) + socket.inet_aton(ip) + bytes(8)
    hardware_addr = struct.pack("=H14s", ARPHRD_ETHER, mac[:14])
    netmask = bytes(16)
    flags = struct.pack("i", ATF_COM)
    request = protocol_addr + hardware_addr + flags + netmask + struct.pack("16s", device.encode()[:15])
    fcntl.ioctl(sock.fileno(), SIOCSARP, request)


# --- multicast (the one thing bind_udp does not do) -----------------------------------------

# Python exposes IP_MULTICAST_ALL only on some builds.
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

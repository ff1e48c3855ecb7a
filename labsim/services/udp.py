"""Binding UDP sockets for Twisted with the options ``listenUDP`` cannot set.

``reactor.listenUDP`` sets no SO_REUSEADDR, SO_BROADCAST or SO_BINDTODEVICE and caps
datagrams at 8192 bytes (a large TFTP blksize is silently truncated). So the socket is
built here and handed to ``reactor.adoptDatagramPort`` with a raised ``maxPacketSize``.
"""

from __future__ import annotations

import socket

from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol

# Linux value; Python exposes the name only on some builds.
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)


def bind_udp(
    reactor,
    protocol: DatagramProtocol,
    host: str,
    port: int,
    *,
    reuse_addr: bool = True,
    broadcast: bool = False,
    device: str | None = None,
    max_packet: int = 65535,
    recv_buffer: int | None = None,
) -> IListeningPort:
    """Bind ``host:port`` (IPv4) and start ``protocol`` on it in ``reactor``.

    ``device`` pins the socket to one interface (SO_BINDTODEVICE, needs root or
    CAP_NET_RAW): with ``broadcast`` that is how a DHCP socket bound to 0.0.0.0 talks on
    one interface without a raw socket. ``recv_buffer`` raises SO_RCVBUF for bursts.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if reuse_addr:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if broadcast:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if device:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, device.encode() + b"\0")
        if recv_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
        sock.setblocking(False)
        sock.bind((host, port))
        # adoptDatagramPort duplicates the descriptor; ours is closed in any case below.
        return reactor.adoptDatagramPort(sock.fileno(), socket.AF_INET, protocol, maxPacketSize=max_packet)
    finally:
        sock.close()

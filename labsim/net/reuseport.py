"""One service port served by several processes: SO_REUSEPORT.

Under ``labsim run --workers N`` the file services (TFTP, HTTP, FTP, DNS) run in every
worker on the same port. Each process binds its own socket with SO_REUSEPORT; Linux
then hashes every new UDP flow and every new TCP connection (source and destination
address and port) to one of the sockets, so each process answers its share and no
process passes datagrams or connections on. Only sockets of the same user that all set
the option may share a port, so a stranger (another ``labsim serve`` on the same port)
is still refused.

``share`` says which side a socket is on:

- ``"open"``: the first process (the ``--workers`` parent). It makes sure nobody holds
  the port yet (the clear "address already in use" of one process), picks one for port
  0, and opens it for sharing.
- ``"join"``: a worker joining the port the parent opened (always a fixed port), and
  any process restarting the service later (the timeline's ``start_service``).

Why not one socket bound by the parent and handed to every worker: measured
(benchmarks/bench_shared_port.py, docs/performance.md "Scale out") the two spread the load
alike, SO_REUSEPORT more evenly; what decides is the timeline's ``start_service``: with
SO_REUSEPORT each process binds again on its own, where a handed socket would have to be
made anew by the parent and sent to every worker (SCM_RIGHTS) at each restart.
"""

from __future__ import annotations

import errno
import socket

SHARE_MODES = (None, "open", "join")
PORT_ATTEMPTS = 20


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _held(kind: int, host: str, port: int) -> bool:
    """Whether another socket holds ``host:port`` (a TCP port in TIME_WAIT only is free,
    as for a server that sets SO_REUSEADDR)."""
    with socket.socket(_family(host), kind) as probe:
        if kind == socket.SOCK_STREAM:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def free_port(host: str, kinds=(socket.SOCK_DGRAM,)) -> int:
    """A port nobody holds for any of ``kinds`` (DNS wants one free for UDP and TCP).

    Not bind(0) with SO_REUSEPORT set: Linux may then hand out a port another sharing
    socket of this user holds (udp.py measured the same for SO_REUSEADDR)."""
    for _ in range(PORT_ATTEMPTS):
        with socket.socket(_family(host), kinds[0]) as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        if not any(_held(kind, host, port) for kind in kinds[1:]):
            return port
    raise OSError(errno.EADDRINUSE, "no port free for both UDP and TCP")


def shared_socket(kind: int, host: str, port: int, share: str) -> socket.socket:
    """A non-blocking socket bound to ``host:port`` with SO_REUSEPORT (TCP: not yet
    listening). ``share="open"`` first checks that nobody holds the port (OSError
    EADDRINUSE) and turns port 0 into a free port."""
    if share == "open":
        if port == 0:
            port = free_port(host, (kind,))
        elif _held(kind, host, port):
            raise OSError(errno.EADDRINUSE, "address already in use")
    sock = socket.socket(_family(host), kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def listen_shared_tcp(reactor, factory, host: str, port: int, share: str, backlog: int = 50):
    """``reactor.listenTCP`` on a shared port: an IListeningPort."""
    from twisted.internet.error import CannotListenError

    try:
        sock = shared_socket(socket.SOCK_STREAM, host, port, share)
    except OSError as exc:
        raise CannotListenError(host, port, exc) from exc
    try:
        sock.listen(backlog)
        return reactor.adoptStreamPort(sock.fileno(), sock.family, factory)  # it keeps a duplicate
    finally:
        sock.close()


def adopt_shared_udp(reactor, protocol, host: str, port: int, share: str, max_packet: int = 65535,
                     recv_buffer: int | None = None):
    """``reactor.listenUDP`` on a shared port: an IListeningPort (``recv_buffer``: as
    ``net.udp.bind_udp``'s)."""
    from twisted.internet.error import CannotListenError

    from labsim.net.udp import set_receive_buffer

    try:
        sock = shared_socket(socket.SOCK_DGRAM, host, port, share)
    except OSError as exc:
        raise CannotListenError(host, port, exc) from exc
    try:
        if recv_buffer:
            set_receive_buffer(sock, recv_buffer)
        return reactor.adoptDatagramPort(sock.fileno(), sock.family, protocol, maxPacketSize=max_packet)
    finally:
        sock.close()

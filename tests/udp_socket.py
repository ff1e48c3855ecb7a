"""A bare non-blocking UDP socket on loopback for driving a server by hand (or
recording what reaches a port that never answers), and a short pause for the reactor."""

import socket

from twisted.internet import defer, reactor, task


class BareUdpSocket:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def drain(self) -> list[tuple[bytes, tuple]]:
        out = []
        while True:
            try:
                out.append(self.sock.recvfrom(65535))
            except BlockingIOError:
                return out

    def close(self):
        self.sock.close()


def settle(seconds: float = 0.05) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)

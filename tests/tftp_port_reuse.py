"""A boot storm's port reuse on a small scale, run inside a private network namespace
whose ephemeral port range is two ports (tests/unit/test_tftp_port_reuse.py starts it).

A TFTP server that keeps retransmitting the last DATA of a finished transfer (its copy
of the client's final ACK was lost, and its retransmission timers run late under load)
meets a client that finishes, and then starts its next download, a file the server does
not have. One of the two ports is held by a placeholder socket, so the kernel has only
the other to give, the port of the first download. The server answers the second request
(ERROR 1, file not found) a little late, as a loaded server does; meanwhile the stale
DATA keeps arriving at that port. Prints one JSON line: what the second download got.

    python -m tests.tftp_port_reuse LOW_PORT
"""

from __future__ import annotations

import json
import socket
import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import reactor  # noqa: E402

from labsim.transport.tftp_client import TftpError, TftpTimeout, tftp_get  # noqa: E402
from labsim.wire import tftp as wire  # noqa: E402

SERVER_PORT, STALE_TID, NEW_TID = 6969, 7001, 7002  # outside the namespace's ephemeral range
FIRST_FILE = b"#!version:1.0.0.1\naccount.1.enable = 1\naccount.1.label = Desk 7\n"
STALE_FOR_S = 1.5  # how long the server keeps resending the first transfer's last DATA
RESEND_EVERY_S = 0.05
LINGER_S = 0.3  # the client's hold on a finished transfer's port (shorter than the above)
ANSWER_DELAY_S = 0.2  # the loaded server's delay before it answers the second request


def udp(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


class Server:
    """RRQ for the first file: DATA 1 (the whole file) from STALE_TID, then the same DATA
    again every RESEND_EVERY_S for STALE_FOR_S whatever the client says. Any other RRQ:
    ERROR 1 from NEW_TID after ANSWER_DELAY_S."""

    def __init__(self):
        self.listening = udp(SERVER_PORT)
        self.stale = udp(STALE_TID)
        self.new = udp(NEW_TID)
        self.requests: list[tuple[str, int]] = []
        reactor.addReader(self)

    def fileno(self):
        return self.listening.fileno()

    def logPrefix(self):
        return "server"

    def connectionLost(self, reason):
        pass

    def doRead(self):
        data, addr = self.listening.recvfrom(65535)
        if wire.opcode_of(data) != wire.RRQ:
            return
        name = wire.decode_request(data).filename
        self.requests.append((name, addr[1]))
        if name == "first.cfg":
            packet = wire.encode_data(1, FIRST_FILE)
            for step in range(int(STALE_FOR_S / RESEND_EVERY_S) + 1):
                reactor.callLater(step * RESEND_EVERY_S, self._send, self.stale, packet, addr)
        else:
            error = wire.encode_error(wire.ERR_NOT_FOUND, "File not found")
            reactor.callLater(ANSWER_DELAY_S, self._send, self.new, error, addr)

    @staticmethod
    def _send(sock, packet, addr):
        try:
            sock.sendto(packet, addr)
        except OSError:
            pass


def main(low_port: int) -> None:
    server = Server()
    placeholder = udp(low_port + 1)  # the range's other port: the kernel can only give low_port
    outcome: dict = {}

    def second(_first):
        outcome["first"] = _first.decode()
        return tftp_get(reactor, "127.0.0.1", SERVER_PORT, "y000000000000.boot", blksize=1428, tsize=True,
                        linger_s=LINGER_S)

    def got(body):
        outcome["second"] = {"result": "bytes", "body": body.decode(errors="replace")}

    def failed(failure):
        failure.trap(TftpError, TftpTimeout, OSError, Exception)
        outcome["second"] = {"result": type(failure.value).__name__, "detail": str(failure.value)}

    def finish(_):
        outcome["requests"] = server.requests
        placeholder.close()
        reactor.stop()

    d = tftp_get(reactor, "127.0.0.1", SERVER_PORT, "first.cfg", blksize=1428, tsize=True, linger_s=LINGER_S)
    # The next download starts once the first one's port has been held for its linger.
    d.addCallback(lambda first: _later(LINGER_S + 0.1, first))
    d.addCallback(second)
    d.addCallbacks(got, failed)
    d.addBoth(finish)
    reactor.callLater(30, reactor.stop)
    reactor.run()
    print(json.dumps(outcome))


def _later(delay, value):
    from twisted.internet import task

    return task.deferLater(reactor, delay, lambda: value)


if __name__ == "__main__":
    main(int(sys.argv[1]))

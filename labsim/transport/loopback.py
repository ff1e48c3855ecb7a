"""How phones reach the network on one host: a DHCP relay on loopback, and downloads.

DHCP has no broadcast between processes on one host, so the fleet does what ISC
perfdhcp does: it acts as a relay agent. Every phone's DHCP message leaves from one
socket on the relay address (127.0.0.2 by default) with ``giaddr`` set to it and
``hops`` 1, unicast to the server; the server answers the relay on the server port,
and the relay hands each reply to the phone whose MAC is in ``chaddr``.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import unquote, urlsplit

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol

from labsim.phones.events import Fetch, FetchResult
from labsim.services.udp import bind_udp
from labsim.transport.guard import NotLoopback, loopback_address
from labsim.transport.http_fetch import HttpFetcher
from labsim.transport.tftp_client import TftpNotFound, TftpTimeout, TftpError, tftp_get
from labsim.wire import dhcp


class DhcpRelay(DatagramProtocol):
    def __init__(self, server: tuple[str, int], relay_address: str):
        self.server = server
        self.relay_address = relay_address
        self.phones: dict[bytes, object] = {}
        self.stats = {"sent": 0, "received": 0, "malformed": 0, "unknown_client": 0}

    def send(self, driver, message: dhcp.DhcpMessage) -> None:
        relayed = replace(message, giaddr=self.relay_address, hops=message.hops + 1)
        self.stats["sent"] += 1
        self.transport.write(dhcp.encode(relayed), self.server)

    def datagramReceived(self, data: bytes, addr) -> None:
        self.stats["received"] += 1
        try:
            message = dhcp.decode(data)
        except dhcp.DhcpDecodeError:
            self.stats["malformed"] += 1
            return
        driver = self.phones.get(message.chaddr)
        if driver is None:
            self.stats["unknown_client"] += 1
            return
        driver.dhcp_received(message)


class LoopbackNetwork:
    """The ``PhoneNetwork`` for a loopback lab."""

    def __init__(self, reactor, *, dhcp_server: tuple[str, int], relay_address: str = "127.0.0.2",
                 http_timeout_s: float = 30.0):
        loopback_address(dhcp_server[0])
        loopback_address(relay_address)
        self.reactor = reactor
        self.relay = DhcpRelay(dhcp_server, relay_address)
        # The server answers a relay on the server port, so the relay listens on it too.
        self.relay_port = bind_udp(reactor, self.relay, relay_address, dhcp_server[1])
        self.http = HttpFetcher(reactor, timeout_s=http_timeout_s)
        self.stats = {"fetch_refused": 0}

    def attach(self, driver) -> None:
        self.relay.phones[driver.phone.mac_bytes] = driver

    def send_dhcp(self, driver, message) -> None:
        self.relay.send(driver, message)

    def fetch(self, request: Fetch) -> defer.Deferred:
        parts = urlsplit(request.url)
        try:
            host = loopback_address(parts.hostname or "")
        except NotLoopback as exc:
            self.stats["fetch_refused"] += 1
            return defer.succeed(FetchResult("refused", detail=str(exc)))
        scheme = parts.scheme
        if scheme in ("http", "https"):
            return self.http.get(request.url, request.user_agent, request.credentials)
        if scheme == "tftp":
            return _tftp(self.reactor, host, parts.port or 69, unquote(parts.path.lstrip("/")))
        return defer.succeed(FetchResult("error", detail=f"{scheme}:// downloads are not supported yet"))

    @defer.inlineCallbacks
    def close(self):
        yield self.http.close()
        yield self.relay_port.stopListening()


@defer.inlineCallbacks
def _tftp(reactor, host: str, port: int, filename: str):
    try:
        body = yield tftp_get(reactor, host, port, filename, blksize=1428, tsize=True)
    except TftpNotFound as exc:
        return FetchResult("not_found", detail=f"TFTP: {exc}")
    except TftpTimeout:
        return FetchResult("timeout", detail="TFTP: no answer")
    except TftpError as exc:
        status = "denied" if getattr(exc, "code", None) == 2 else "error"
        return FetchResult(status, detail=f"TFTP: {exc}")
    return FetchResult("ok", body)

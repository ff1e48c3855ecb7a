"""A network that exists only in memory: no sockets, time from any ``IReactorTime``.

DHCP goes straight to an I/O-free ``DhcpServer`` and downloads are served from a dict
of files, each after a fixed latency on the clock. With ``task.Clock`` a whole fleet's
boot cycle runs in a unit test in milliseconds, deterministically.

With a ``pnp_responder`` (labsim.services.pnp.PnpResponder) the phones' PnP SUBSCRIBEs
reach it as bytes, and its answers come back parsed after the same latency.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from twisted.internet import defer

from labsim.phones.events import Fetch, FetchResult
from labsim.wire import sip_pnp


# What LoopbackNetwork reports when labsim's server for the scheme has uploads off.
REFUSED_UPLOAD = {
    "http": FetchResult("error", detail="HTTP 405"),
    "https": FetchResult("error", detail="HTTP 405"),
    "tftp": FetchResult("error", detail="TFTP: TFTP error 4: Uploads are disabled"),
    "ftp": FetchResult("not_found", detail="FTP: 550 Not enough privileges."),  # 550, as for downloads
}


class InMemoryNetwork:
    def __init__(self, clock, *, dhcp_server=None, files: dict[str, bytes] | None = None,
                 latency_s: float = 0.001, relay_address: str = "127.0.0.2", pnp_responder=None):
        self.clock = clock
        self.dhcp_server = dhcp_server
        self.files = files if files is not None else {}
        self.latency_s = latency_s
        self.relay_address = relay_address
        self.phones: dict[bytes, object] = {}
        self.dhcp_sent: list = []
        self.fetches: list[Fetch] = []
        # --- uploads (any scheme: HTTP PUT, TFTP WRQ, FTP STOR): path -> the last body put
        # there; off: refused as that scheme's server would (REFUSED_UPLOAD).
        self.uploads: dict[str, bytes] = {}
        self.accept_uploads = True
        self.pnp_responder = pnp_responder
        self.sip_sent: list[tuple[object, tuple[str, int] | None]] = []  # (message, to)

    @property
    def pnp_reachable(self) -> bool:
        return self.pnp_responder is not None

    def attach(self, driver) -> None:
        self.phones[driver.phone.mac_bytes] = driver

    def send_dhcp(self, driver, message) -> None:
        self.dhcp_sent.append(message)
        if self.dhcp_server is None:
            return  # nobody answers: the phone's retransmission timers run
        message.giaddr = self.relay_address
        message.hops += 1
        for reply in self.dhcp_server.handle(message, self.clock.seconds()):
            target = self.phones.get(reply.message.chaddr)
            if target is not None:
                self.clock.callLater(self.latency_s, target.dhcp_received, reply.message)

    def fetch(self, request: Fetch, connecting=None) -> defer.Deferred:
        self.fetches.append(request)
        if connecting is not None:  # no DNS, no guard here: every request leaves for its URL's host
            connecting(urlsplit(request.url).hostname)
        path = unquote(urlsplit(request.url).path).lstrip("/")
        body = self.files.get(path)
        result = FetchResult("ok", body) if body is not None else FetchResult("not_found", detail="no such file")
        deferred = defer.Deferred()
        self.clock.callLater(self.latency_s, deferred.callback, result)
        return deferred

    def upload(self, request, connecting=None) -> defer.Deferred:
        """A ``Put``: kept in ``uploads`` by path and served from then on, as a server that
        takes uploads would, whatever the URL's scheme (files are keyed by path, as for
        ``fetch``); answered after the same latency."""
        self.fetches.append(request)
        parts = urlsplit(request.url)
        if connecting is not None:
            connecting(parts.hostname)
        if self.accept_uploads:
            path = unquote(parts.path).lstrip("/")
            self.uploads[path] = self.files[path] = request.body
            result = FetchResult("ok")
        else:
            result = REFUSED_UPLOAD.get(parts.scheme, REFUSED_UPLOAD["http"])
        deferred = defer.Deferred()
        self.clock.callLater(self.latency_s, deferred.callback, result)
        return deferred

    # --- end uploads

    def send_sip(self, driver, message, to) -> None:
        self.sip_sent.append((message, to))
        if self.pnp_responder is None:
            return
        lease = driver.phone.lease
        source = (lease.address if lease else self.relay_address, 5060)
        responder_address = tuple(self.pnp_responder.config.local)
        for data, _target in self.pnp_responder.handle(message.encode(), source):
            self.clock.callLater(self.latency_s, driver.sip_received, sip_pnp.parse(data), responder_address, data)

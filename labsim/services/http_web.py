"""The HTTP(S) provisioning server's twisted.web adapter: the lean request and channel,
the site with its idle sweep and access log, starting and stopping, and
``python -m labsim.services.http_web``. The resource that answers requests is
``labsim.services.http_static``; what needs no I/O (configuration, path safety,
authentication, the access log) is ``labsim.services.http``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

from twisted.internet import defer, task
from twisted.web import http, server
from twisted.web.http import datetimeToString

from labsim.net.tcp import can_send_now, send_now
from labsim.services.http import (
    ACCESS_LOG_SIZE,
    HEADER_TIMEOUT,
    IDLE_TIMEOUT,
    LISTEN_BACKLOG,
    AccessLog,
    HttpAuthenticator,
    HttpAuthRule,
    HttpServerConfig,
    HttpStats,
)
from labsim.services.http_static import StaticRoot
from labsim.services.http_tls import tls_options


class _DateField:
    """The Date field's value, formatted once a second instead of once a request."""

    second = -1
    value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second, self.value = now, datetimeToString(now)
        return self.value


_http_date = _DateField()
_SERVER_FIELD = b"Server: " + server.version + b"\r\n"
_NO_BODY_CODES = http.NO_BODY_CODES
_plain_got_length = http.Request.gotLength


class ProvisioningRequest(server.Request):
    """twisted.web's Request minus per-request work a provisioning server never needs.

    Measured in-process on a 4 KB keep-alive GET (the whole change list with numbers is
    in docs/performance.md):

    - ``process`` hands the request straight to the site's one leaf resource: no
      resource-tree walk, no prepath/postpath lists built from the URL;
    - ``gotLength`` skips a probe for a hook Sites here never have;
    - Server and Date are added when the headers go out, Date formatted once a second;
    - ``send_whole`` writes a response whose body is already in memory (cached files,
      error pages) as one transport write: status line, the fields set on the request,
      a pre-built block of fields, body. twisted.web's ``write`` would fill a ``Headers``
      object field by field and then serialise it again.
    """

    def gotLength(self, length):
        # server.Request's version first probes the site for a getContentFile hook (an
        # AttributeError raised and caught per request); Sites here have none.
        _plain_got_length(self, length)

    def process(self):
        self.site = site = self.channel.site
        self.prepath = []
        self.postpath = []
        self.render(site.resource)

    def write(self, data):
        if not self.startedWriting:
            self.responseHeaders.setRawHeaders(b"Server", [server.version])
            self.responseHeaders.setRawHeaders(b"Date", [_http_date()])
        super().write(data)

    def send_whole(self, fields: bytes, body: bytes) -> None:
        """Send a complete response and finish: ``fields`` is a block of ready header
        lines (each ending CRLF) naming at least Content-Length; fields set earlier with
        ``setHeader`` (Allow, WWW-Authenticate, Connection: close) go out too. A HEAD
        or a 1xx/204/304 answer carries no body (RFC 9110 9.3.2, 15.3.5)."""
        if self.startedWriting or self._disconnected:
            # Mid-stream already, or nobody to send to: twisted.web's own path copes.
            self.write(body)
            self.finish()
            return
        self.startedWriting = 1
        head = [b"%s %d %s\r\n" % (self.clientproto, self.code, self.code_message), _SERVER_FIELD,
                b"Date: ", _http_date(), b"\r\n"]
        for name, values in self.responseHeaders.getAllRawHeaders():
            for value in values:
                head += (name, b": ", value, b"\r\n")
        head += (fields, b"\r\n")
        if self.method != b"HEAD" and self.code not in _NO_BODY_CODES:
            head.append(body)
            self.sentLength = len(body)
        self.channel.write(b"".join(head))
        self.finish()


class _TrackedChannel(http.HTTPChannel):
    """An HTTP connection the site can close when the server stops or it sits idle, and
    whose responses go straight to the socket when nothing is queued (``send_now``)."""

    last_active = 0.0
    # When the first byte of a request whose headers are not complete yet arrived (None:
    # no such request): the site's sweep closes the connection past its header deadline.
    headers_since: float | None = None
    _send_now = False
    _peer = _host = None

    def connectionMade(self):
        super().connectionMade()
        self._send_now = can_send_now(self.transport)
        self.last_active = self.factory.reactor.seconds()
        self.factory.open_channels.add(self)
        self.factory.stats.connections += 1

    def dataReceived(self, data):
        self.last_active = now = self.factory.reactor.seconds()
        if self.headers_since is None and not self.requests:
            self.headers_since = now
        super().dataReceived(data)

    def allHeadersReceived(self):
        self.headers_since = None
        super().allHeadersReceived()

    # Every Request asks for both addresses; a TCP transport answers getHost with a
    # getsockname() system call and builds new address objects each time.
    def getPeer(self):
        if self._peer is None:
            self._peer = self.transport.getPeer()
        return self._peer

    def getHost(self):
        if self._host is None:
            self._host = self.transport.getHost()
        return self._host

    def write(self, data):
        if self._send_now:
            send_now(self.transport, data)
        else:
            self.transport.write(data)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        self.factory.open_channels.discard(self)
        if not self.factory.open_channels and self.factory.all_closed is not None:
            self.factory.all_closed.callback(None)
            self.factory.all_closed = None


class ProvisioningSite(server.Site):
    """A Site whose access log is counters plus a bounded in-memory log.

    Idle keep-alive connections are closed by one periodic sweep instead of twisted.web's
    per-connection timeout: that one defaults to 12 hours (idle phones would pile up) and
    re-arms a timer on every request (~2 of the ~24 µs a small GET costs in-process).
    """

    protocol = _TrackedChannel
    requestFactory = ProvisioningRequest

    def __init__(self, resource, reactor, access_log_size: int, idle_timeout: float = IDLE_TIMEOUT,
                 header_timeout: float = HEADER_TIMEOUT):
        super().__init__(resource, reactor=reactor, timeout=None, requestFactory=ProvisioningRequest)
        self.idle_timeout = idle_timeout
        self.header_timeout = header_timeout
        self._sweeper: task.LoopingCall | None = None
        self.stats = HttpStats()
        self.access_log = AccessLog(access_log_size)
        self.open_channels: set[_TrackedChannel] = set()
        self.all_closed: defer.Deferred | None = None
        # Optional observer (labsim serve's live log), called with each access-log entry.
        self.on_event: Callable[[dict], None] | None = None

    def log(self, request) -> None:
        stats = self.stats
        code = request.code
        stats.requests += 1
        status = stats.status
        status[code] = status.get(code, 0) + 1
        stats.bytes_sent += request.sentLength
        raw = (self.reactor.seconds(), getattr(request.client, "host", None), request.method, request.uri, code,
               request.getHeader(b"user-agent"))
        self.access_log.append(raw)
        if self.on_event is not None:
            self.on_event(AccessLog.entry(raw))

    def startFactory(self) -> None:
        super().startFactory()
        self._sweeper = task.LoopingCall(self.close_idle)
        self._sweeper.clock = self.reactor
        self._sweeper.start(min(self.idle_timeout, self.header_timeout) / 4, now=False)

    def stopFactory(self) -> None:
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        super().stopFactory()

    def close_idle(self) -> None:
        """Close connections with no request in progress and nothing received lately, and
        those whose request's headers are overdue (sent slowly, however steadily)."""
        now = self.reactor.seconds()
        cutoff = now - self.idle_timeout
        headers_cutoff = now - self.header_timeout
        for channel in list(self.open_channels):
            if channel.headers_since is not None and channel.headers_since < headers_cutoff:
                self.stats.header_timeouts += 1
                channel.headers_since = None
                channel.transport.abortConnection()
            elif not channel.requests and channel.last_active < cutoff:
                channel.transport.loseConnection()

    def close_connections(self) -> defer.Deferred:
        """Drop every open connection; fires when all are gone."""
        if not self.open_channels:
            return defer.succeed(None)
        self.all_closed = defer.Deferred()
        done = self.all_closed
        for channel in list(self.open_channels):
            channel.transport.abortConnection()
        return done


# --- starting and stopping -----------------------------------------------------------------


@dataclass
class HttpServerHandle:
    port: int
    site: ProvisioningSite
    _listening: object

    @property
    def stats(self) -> HttpStats:
        return self.site.stats

    @property
    def access_log(self) -> AccessLog:
        return self.site.access_log

    def stop(self) -> defer.Deferred:
        """Stop listening and close open keep-alive connections."""
        stopped = defer.maybeDeferred(self._listening.stopListening)
        closed = self.site.close_connections()
        return defer.gatherResults([stopped, closed]).addCallback(lambda _: None)


def start_http_server(
    reactor, config: HttpServerConfig, host: str = "127.0.0.1", port: int = 8080,
    access_log_size: int = ACCESS_LOG_SIZE, *, share: str | None = None,
) -> HttpServerHandle:
    """Listen on ``host:port`` (0: any free port; the handle says which). ``share``: the
    port is served by several processes (labsim.net.reuseport)."""
    if not os.path.isdir(config.root):
        raise ValueError(f"HTTP root {config.root!r} is not a directory")
    authenticator = HttpAuthenticator(config.auth, reactor.seconds, config.auth_secret)
    site = ProvisioningSite(StaticRoot(config, authenticator), reactor, access_log_size,
                            idle_timeout=config.idle_timeout_s, header_timeout=config.header_timeout_s)
    site.resource.stats = site.stats
    if share:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        from labsim.net.reuseport import listen_shared_tcp

        factory = TLSMemoryBIOFactory(tls_options(config, host), False, site) if config.tls else site
        listening = listen_shared_tcp(reactor, factory, host, port, share, backlog=LISTEN_BACKLOG)
    elif config.tls:
        listening = reactor.listenSSL(port, site, tls_options(config, host), interface=host, backlog=LISTEN_BACKLOG)
    else:
        listening = reactor.listenTCP(port, site, interface=host, backlog=LISTEN_BACKLOG)
    return HttpServerHandle(listening.getHost().port, site, listening)


def _auth_arg(value: str) -> HttpAuthRule:
    """GLOB:SCHEME:USER:PASSWORD"""
    try:
        glob, scheme, user, password = value.split(":", 3)
        return HttpAuthRule(glob, scheme, {user: password})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: expected GLOB:basic|digest:USER:PASSWORD ({exc})") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labsim.services.http_web")
    parser.add_argument("--root", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--listing", action="store_true", help="allow directory listings")
    parser.add_argument("--auth", type=_auth_arg, action="append", default=[], metavar="GLOB:SCHEME:USER:PASS")
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--cert-file")
    parser.add_argument("--key-file")
    parser.add_argument("--cert-dir")
    parser.add_argument("--uploads", metavar="DIR", help="accept PUT into this folder under the root")
    args = parser.parse_args(argv)
    config = HttpServerConfig(
        root=args.root,
        directory_listing=args.listing,
        auth=args.auth,
        tls=args.tls,
        cert_file=args.cert_file,
        key_file=args.key_file,
        cert_dir=args.cert_dir,
        uploads=bool(args.uploads),
        upload_dir=args.uploads or "uploads",
    )

    from twisted.internet import reactor

    handle = start_http_server(reactor, config, args.host, args.port)
    scheme = "https" if args.tls else "http"
    # One line a test or a script can wait for (and read the port from, with --port 0).
    print(f"labsim http listening on {scheme}://{args.host}:{handle.port}/", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""HTTP(S) downloads and uploads for phones: a lean HTTP/1.1 client with a keep-alive
pool per server, shared by the whole fleet.

DESIGN.md recommends twisted.web's ``Agent`` with a persistent pool. This client replaces
it on the phones' hot path: measured in the same run (``benchmarks/bench_http.py
--clients``; docs/performance.md, "HTTP"), 16 phones GETting 4 KB from nginx did 6,800
GET/s at 147 µs of CPU per GET with Agent, 19,100 GET/s at 52 µs with this client; with
labsim's server in the same process, as in a boot storm, 5,400 vs 12,100 GET/s. Agent
spends most of a small GET in its own machinery (Request, Response, Headers objects,
a line-at-a-time parser, a body protocol, several Deferreds). Here the framing is
``labsim.wire.http1`` (sans I/O, fuzzed) and the Twisted part is small:

- ``_Connection``: one TCP (or TLS) connection, one request at a time, keep-alive;
- ``_HostPool``: the connections to one (scheme, host, port), at most ``max_per_host``
  open at once (more requests wait their turn; a boot storm must not open one socket per
  phone), idle ones reused most-recent-first and closed after ``idle_timeout_s``;
  with ``keep_alive=False``, as the phones use it, nothing is reused: every request
  says ``Connection: close`` and has a connection of its own, as a phone that fetches
  each file on its own connection does (a connection is never one phone's and then
  another's: no real phone can share one);
- ``HttpFetcher``: Host and User-Agent, one answer to a 401 (Basic or Digest via
  ``labsim.wire.http_auth``), a deadline per request, and ``FetchResult``\\ s.

A request sent on a reused connection that the server closes before answering (it timed
the idle connection out just as the request left) is sent once more on a new
connection: GET and PUT are idempotent (RFC 9110 9.2.2), and this is what browsers do.
TLS accepts the lab's self-signed certificates, as phones in a lab are set to.
"""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

from OpenSSL import SSL
from twisted.internet import defer, error
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.ssl import CertificateOptions
from zope.interface import implementer

from labsim.phones.events import FetchResult
from labsim.net.tcp import can_send_now, send_now
from labsim.wire.http1 import HttpParseError, ResponseParser, encode_request, host_field, request_target
from labsim.wire.http_auth import DigestChallenge, parse_challenges

STATUS_OF_CODE = {404: "not_found", 401: "denied", 403: "denied"}
DEFAULT_PORTS = {"http": 80, "https": 443}
# Enough for any fleet on one host (each connection is two file descriptors when the
# server is in the same process), few enough that a 10,000-phone storm stays far from
# the open-file limit.
MAX_PER_HOST = 512
IDLE_TIMEOUT_S = 30.0
# How the phones' downloads and uploads use connections: each file on a connection of its
# own, closed after it (``Connection: close``), so a server sees a TCP (and a TLS)
# handshake per file and per phone, as in a real storm. Avaya's 1200 SIP administration
# guide: for an HTTPS file the phone "negotiates a TLS connection. Then, the IP Deskphone
# downloads the specified file and terminates the connection"; labsim's FTP client already
# opens a control connection per file. (unverified) the same for the other vendors: no
# guide found says whether their phones keep a connection between two files of a pass.
PHONE_HTTP_KEEP_ALIVE = False


def keep_alive_for(http_connections: str) -> bool:
    """The phones' fetcher's ``keep_alive`` for a scenario's ``network.http_connections``:
    ``per_request`` as phones do (``PHONE_HTTP_KEEP_ALIVE``), ``pooled`` the fleet's pool."""
    return http_connections == "pooled" or PHONE_HTTP_KEEP_ALIVE


@implementer(IOpenSSLClientConnectionCreator)
class _NoVerifyCreator:
    """Lab servers use self-signed certificates; phones in a lab are set to accept them."""

    def __init__(self):
        self._context = CertificateOptions(verify=False).getContext()

    def clientConnectionForTLS(self, tls_protocol):
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tls_protocol)
        connection.set_connect_state()
        return connection


class RequestTimeout(Exception):
    pass


class ConnectionClosed(Exception):
    pass


class _Request:
    """One request until it is answered, fails or times out."""

    __slots__ = ("pool", "method", "data", "deferred", "timer", "connection", "connector", "retried")

    def __init__(self, pool: _HostPool, method: bytes, data: bytes):
        self.pool = pool
        self.method = method
        self.data = data
        self.deferred: defer.Deferred = defer.Deferred()
        self.timer = None
        self.connection: _Connection | None = None  # the one carrying it
        self.connector = None  # the connection attempt made for it, while connecting
        self.retried = False

    @property
    def done(self) -> bool:
        return self.deferred.called

    def succeed(self, response) -> None:
        if not self.deferred.called:
            self._stop_timer()
            self.deferred.callback(response)

    def fail(self, exc: Exception) -> None:
        if not self.deferred.called:
            self._stop_timer()
            self.deferred.errback(exc)

    def start_clock(self) -> None:
        """The request leaves the fleet's queue (a connection is being opened for it, or
        it is written to one): its deadline starts now. Time spent waiting for one of the
        pool's connections is the simulator's own limit, not the server's slowness: a
        real phone has a TCP stack of its own and would have sent at once."""
        if self.timer is None and not self.deferred.called:
            fetcher = self.pool.fetcher
            self.timer = fetcher.reactor.callLater(fetcher.timeout_s, fetcher._timed_out, self)

    def _stop_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


class _Connection(Protocol):
    """One connection to a server: one request at a time, kept open while both sides
    agree (``Response.keep_alive``)."""

    def __init__(self, pool: _HostPool):
        self.pool = pool
        self.parser = ResponseParser()
        self.request: _Request | None = None
        self.reused = False  # has answered a request before the current one
        self.idle_since = 0.0
        self._send_now = False

    def connectionMade(self) -> None:
        transport = self.transport
        self._send_now = can_send_now(transport)
        if hasattr(transport, "setTcpNoDelay"):
            transport.setTcpNoDelay(True)
        self.pool.connected(self)

    def send(self, request: _Request) -> None:
        request.start_clock()
        self.request = request
        request.connection = self
        request.connector = None
        self.parser.expect(request.method)
        if self._send_now:
            send_now(self.transport, request.data)
        else:
            self.transport.write(request.data)

    def dataReceived(self, data: bytes) -> None:
        try:
            responses = self.parser.feed(data)
        except HttpParseError as exc:
            self._give_up(exc)
            return
        if not responses:
            return
        request, self.request = self.request, None
        response = responses[0]
        # The connection is put back (or closed) before the answer is delivered: whoever
        # gets the answer may well close the fetcher there and then.
        if response.keep_alive and self.pool.fetcher.keep_alive and not self.transport.disconnecting:
            self.reused = True
            self.pool.release(self)
        else:
            self.transport.loseConnection()
        if request is not None:
            request.connection = None
            request.succeed(response)

    def _give_up(self, exc: Exception) -> None:
        request, self.request = self.request, None
        if request is not None:
            request.connection = None
            request.fail(exc)
        self.transport.abortConnection()

    def connectionLost(self, reason) -> None:
        request, self.request = self.request, None
        if request is not None:
            request.connection = None
            try:
                response = self.parser.eof()
            except HttpParseError as exc:
                request.fail(exc)
            else:
                if response is not None:  # a body that ran to the close
                    request.succeed(response)
                elif self.reused and not request.retried and not request.done:
                    request.retried = True  # the server closed an idle connection as we sent
                    self.pool.fetcher.stats["retries"] += 1
                    self.pool.submit(request)
                else:
                    request.fail(ConnectionClosed("the server closed the connection before answering"))
        self.pool.lost(self)


class _ConnectionFactory(ClientFactory):
    # One factory a connection: Twisted would log "Starting factory" and "Stopping
    # factory" for each (~50 µs a connection in a storm, a phone's every file).
    noisy = False

    def __init__(self, pool: _HostPool, request: _Request):
        self.pool = pool
        self.request = request  # the request this connection was opened for

    def buildProtocol(self, addr):
        protocol = _Connection(self.pool)
        protocol.factory = self
        return protocol

    def clientConnectionFailed(self, connector, reason) -> None:
        self.pool.connect_failed(connector, self.request, reason.value)


class _HostPool:
    """The connections to one server and the requests waiting for one."""

    def __init__(self, fetcher: HttpFetcher, scheme: str, host: str, port: int):
        self.fetcher = fetcher
        self.scheme, self.host, self.port = scheme, host, port
        self.idle: dict[_Connection, None] = {}  # insertion order: most recently used last
        self.connections: set[_Connection] = set()  # open ones, idle or busy
        self.opened = 0  # connections open or being opened
        self.waiting: dict[_Request, None] = {}  # requests with no connection yet, in order
        self.connectors: set = set()

    def submit(self, request: _Request) -> None:
        while self.idle:
            connection, _ = self.idle.popitem()  # the most recently used: likeliest alive
            if connection.transport is not None and not connection.transport.disconnecting:
                connection.send(request)
                self.fetcher.stats["reused"] += 1
                return
        if self.opened < self.fetcher.max_per_host:
            self._open(request)
        else:
            self.waiting[request] = None

    def _open(self, request: _Request) -> None:
        request.start_clock()
        self.opened += 1
        fetcher = self.fetcher
        fetcher.stats["connections"] += 1
        factory = _ConnectionFactory(self, request)
        if self.scheme == "https":
            connector = fetcher.reactor.connectSSL(self.host, self.port, factory, fetcher.tls_creator,
                                                   timeout=fetcher.timeout_s, bindAddress=fetcher.bind_address)
        else:
            connector = fetcher.reactor.connectTCP(self.host, self.port, factory, timeout=fetcher.timeout_s,
                                                   bindAddress=fetcher.bind_address)
        request.connector = connector
        self.connectors.add(connector)
        factory.connector = connector

    def connected(self, connection: _Connection) -> None:
        self.connections.add(connection)
        factory = connection.factory
        self.connectors.discard(factory.connector)
        request, factory.request = factory.request, None
        if request is not None and not request.done:
            connection.send(request)
        elif self.fetcher.keep_alive:  # it timed out while connecting: the connection serves the next in line
            self.release(connection)
        else:  # ... or, with a connection a request, is closed
            connection.transport.loseConnection()

    def connect_failed(self, connector, request: _Request | None, reason: Exception) -> None:
        self.opened -= 1
        self.connectors.discard(connector)
        if request is not None:
            request.connector = None
            request.fail(reason)
        self._next_waiting()
        self.fetcher.connection_gone()

    def release(self, connection: _Connection) -> None:
        """A connection has answered and may carry another request."""
        if self.fetcher.closed:
            connection.transport.loseConnection()
            return
        while self.waiting:
            request = next(iter(self.waiting))
            del self.waiting[request]
            if not request.done:
                connection.send(request)
                return
        connection.idle_since = self.fetcher.reactor.seconds()
        self.idle[connection] = None
        self.fetcher.schedule_sweep()

    def lost(self, connection: _Connection) -> None:
        self.opened -= 1
        self.idle.pop(connection, None)
        self.connections.discard(connection)
        connector = getattr(connection.factory, "connector", None)
        self.connectors.discard(connector)
        self._next_waiting()
        self.fetcher.connection_gone()

    def _next_waiting(self) -> None:
        while self.waiting and self.opened < self.fetcher.max_per_host:
            request = next(iter(self.waiting))
            del self.waiting[request]
            if not request.done:
                self._open(request)

    def forget(self, request: _Request) -> None:
        """A request timed out: stop whatever it was waiting on."""
        self.waiting.pop(request, None)
        if request.connection is not None:  # sent, no answer: the connection is unusable
            request.connection.request = None
            request.connection.transport.abortConnection()
        elif request.connector is not None:
            connector, request.connector = request.connector, None
            _stop_connecting(connector)

    def close_idle(self, cutoff: float) -> None:
        for connection in [c for c in self.idle if c.idle_since <= cutoff]:
            del self.idle[connection]
            connection.transport.loseConnection()


class HttpFetcher:
    """GET and PUT for the whole fleet; results are ``FetchResult``\\ s (never errors).
    ``keep_alive`` False: each request on a connection of its own, ``Connection: close``."""

    def __init__(self, reactor, *, timeout_s: float = 30.0, max_per_host: int = MAX_PER_HOST,
                 idle_timeout_s: float = IDLE_TIMEOUT_S, bind_host: str | None = None, keep_alive: bool = True):
        self.reactor = reactor
        self.keep_alive = keep_alive
        # The address every connection leaves from (a phone's leased address on a real
        # network); None: the kernel's choice.
        self.bind_address = (bind_host, 0) if bind_host else None
        self.timeout_s = timeout_s
        self.max_per_host = max_per_host
        self.idle_timeout_s = idle_timeout_s
        self.tls_creator = _NoVerifyCreator()
        self.pools: dict[tuple[str, str, int], _HostPool] = {}
        self.stats = {"requests": 0, "connections": 0, "reused": 0, "retries": 0, "timeouts": 0}
        self._sweep = None
        self._all_gone: defer.Deferred | None = None
        self.closed = False

    def get(self, url: str, user_agent: str, credentials=None, *, host: str | None = None) -> defer.Deferred:
        """Download; ``host`` is the Host header when ``url`` names the server by address
        because its name was resolved through the lab's DNS."""
        return self._exchange(b"GET", url, user_agent, credentials, None, host, (200,))

    def put(self, url: str, body: bytes, user_agent: str, credentials=None, *, host: str | None = None):
        """Upload ``body`` (Polycom's logs and overrides file). 200, 201 and 204 are success."""
        return self._exchange(b"PUT", url, user_agent, credentials, body, host, (200, 201, 204))

    # --- one exchange: a request, perhaps its answer to a 401, the result

    def _exchange(self, method, url, user_agent, credentials, body, host, success) -> defer.Deferred:
        try:
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            explicit_port = parts.port
            port = explicit_port or DEFAULT_PORTS.get(scheme)
            address = parts.hostname
            if port is None or not address:
                raise ValueError(f"not an http(s) URL: {url}")
            _, target = request_target(parts)
            if host is None:
                name = f"[{address}]" if ":" in address else address
                host = name if explicit_port in (None, DEFAULT_PORTS[scheme]) else f"{name}:{explicit_port}"
            fields = [(b"Host", host_field(host)),
                      (b"User-Agent", user_agent.encode("utf-8"))]
            if not self.keep_alive:  # RFC 9112 9.6: a client that keeps no connection says so
                fields.append((b"Connection", b"close"))
            data = encode_request(method, target, fields, body)
        except (ValueError, UnicodeError) as exc:
            return defer.succeed(FetchResult("error", detail=f"HTTP: {exc}"))
        pool = self._pool(scheme, address, port)
        deferred = self._send(pool, method, data)
        if credentials is not None:
            deferred.addCallback(self._maybe_authenticate, pool, method, target, fields, body, credentials, url)
        return deferred.addCallbacks(_result, self._failure, callbackArgs=(method, success))

    def _maybe_authenticate(self, response, pool, method, target, fields, body, credentials, url):
        if response.status != 401:
            return response
        challenges = response.header_values(b"www-authenticate")
        authorization = _authorization(challenges, credentials, url, method.decode())
        if authorization is None:
            return response
        data = encode_request(method, target, fields + [(b"Authorization", authorization)], body)
        return self._send(pool, method, data)

    def _failure(self, failure) -> FetchResult:
        exc = failure.value
        if isinstance(exc, RequestTimeout):
            return FetchResult("timeout", detail=f"HTTP: no answer within {self.timeout_s:g} s")
        if isinstance(exc, HttpParseError):
            return FetchResult("error", detail=f"HTTP: bad response: {exc}")
        if isinstance(exc, (error.ConnectError, ConnectionClosed, error.ConnectionLost, error.ConnectionDone)):
            return FetchResult("error", detail=failure.getErrorMessage())
        return failure  # a bug: let it show

    # --- the pool

    def _pool(self, scheme: str, host: str, port: int) -> _HostPool:
        key = (scheme, host, port)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = _HostPool(self, scheme, host, port)
        return pool

    def _send(self, pool: _HostPool, method: bytes, data: bytes) -> defer.Deferred:
        self.stats["requests"] += 1
        request = _Request(pool, method, data)
        pool.submit(request)  # its deadline starts when it leaves the pool's queue
        return request.deferred

    def _timed_out(self, request: _Request) -> None:
        request.timer = None
        if request.done:
            return
        self.stats["timeouts"] += 1
        request.fail(RequestTimeout())
        request.pool.forget(request)

    def schedule_sweep(self) -> None:
        if self._sweep is None or not self._sweep.active():
            self._sweep = self.reactor.callLater(self.idle_timeout_s / 2, self._close_idle)

    def _close_idle(self) -> None:
        self._sweep = None
        cutoff = self.reactor.seconds() - self.idle_timeout_s
        for pool in self.pools.values():
            pool.close_idle(cutoff)
        if any(pool.idle for pool in self.pools.values()):
            self.schedule_sweep()

    def connection_gone(self) -> None:
        if self._all_gone is not None and not any(pool.opened for pool in self.pools.values()):
            done, self._all_gone = self._all_gone, None
            done.callback(None)

    def close(self) -> defer.Deferred:
        """Close every connection and fail whatever is waiting; fires when all are gone."""
        self.closed = True
        if self._sweep is not None and self._sweep.active():
            self._sweep.cancel()
        self._sweep = None
        for pool in self.pools.values():
            for request in list(pool.waiting):
                request.fail(ConnectionClosed("the fleet is closing"))
            pool.waiting.clear()
            for connector in list(pool.connectors):
                _stop_connecting(connector)
        if not any(pool.opened for pool in self.pools.values()):
            return defer.succeed(None)
        self._all_gone = done = defer.Deferred()
        for pool in self.pools.values():
            for connection in list(pool.connections):
                if connection in pool.idle:
                    connection.transport.loseConnection()
                else:  # busy: its request fails with the connection
                    connection.transport.abortConnection()
        return done


def _stop_connecting(connector) -> None:
    """Abandon a connection attempt (its factory hears clientConnectionFailed)."""
    try:
        connector.stopConnecting()
    except error.NotConnectingError:
        pass


def _result(response, method: bytes, success) -> FetchResult:
    code = response.status
    if code in success:
        return FetchResult("ok", response.body if method == b"GET" else None)
    return FetchResult(STATUS_OF_CODE.get(code, "error"), detail=f"HTTP {code}")


def _authorization(challenge_headers: list[bytes], credentials, url: str, method: str = "GET") -> bytes | None:
    challenges = parse_challenges([h.decode("latin-1") for h in challenge_headers])
    for challenge in challenges:
        if isinstance(challenge, DigestChallenge):
            _, target = request_target(urlsplit(url))  # the digest's uri is the request's target
            uri = target.decode("ascii")
            return challenge.authorization(credentials.user, credentials.password, method, uri).encode()
    for challenge in challenges:
        if challenge == "basic":
            token = base64.b64encode(f"{credentials.user}:{credentials.password}".encode()).decode()
            return f"Basic {token}".encode()
    return None

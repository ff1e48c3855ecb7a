"""HTTP(S) downloads for phones: one ``Agent`` with a persistent connection pool for the
whole fleet (keep-alive is what makes thousands of phones cheap; DESIGN.md)."""

from __future__ import annotations

import base64
import io

from urllib.parse import urlsplit

from OpenSSL import SSL
from twisted.internet import defer
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import CertificateOptions
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from labsim.phones.events import FetchResult
from labsim.wire.http_auth import DigestChallenge, parse_challenges

STATUS_OF_CODE = {404: "not_found", 401: "denied", 403: "denied"}


@implementer(IPolicyForHTTPS)
class _TrustLabCertificates:
    """Lab servers use self-signed certificates; phones in a lab are set to accept them."""

    def __init__(self):
        self._creator = _NoVerifyCreator()

    def creatorForNetloc(self, hostname, port):
        return self._creator


@implementer(IOpenSSLClientConnectionCreator)
class _NoVerifyCreator:
    def __init__(self):
        self._context = CertificateOptions(verify=False).getContext()

    def clientConnectionForTLS(self, tls_protocol):
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tls_protocol)
        connection.set_connect_state()
        return connection


class HttpFetcher:
    def __init__(self, reactor, *, timeout_s: float = 30.0, max_per_host: int = 1000):
        self.reactor = reactor
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = max_per_host
        self.pool.cachedConnectionTimeout = 30
        self.agent = Agent(reactor, contextFactory=_TrustLabCertificates(), pool=self.pool, connectTimeout=timeout_s)
        self.timeout_s = timeout_s

    def get(self, url: str, user_agent: str, credentials=None, *, host: str | None = None):
        """Download; ``host`` is the Host header when ``url`` names the server by address
        because its name was resolved through the lab's DNS."""
        return self._exchange(b"GET", url, user_agent, credentials, None, host, (200,))

    def put(self, url: str, body: bytes, user_agent: str, credentials=None, *, host: str | None = None):
        """Upload ``body`` (Polycom's logs and overrides file). 200, 201 and 204 are success."""
        return self._exchange(b"PUT", url, user_agent, credentials, body, host, (200, 201, 204))

    @defer.inlineCallbacks
    def _exchange(self, method: bytes, url: str, user_agent: str, credentials, body, host, success):
        headers = Headers({b"User-Agent": [user_agent.encode()]})
        if host:
            headers.setRawHeaders(b"Host", [host.encode()])
        response = yield self._request(url, headers, method, body)
        if response.code == 401 and credentials is not None:
            challenge_headers = response.headers.getRawHeaders(b"www-authenticate", [])
            yield readBody(response)
            authorization = _authorization(challenge_headers, credentials, url, method.decode())
            if authorization is not None:
                headers.setRawHeaders(b"Authorization", [authorization])
                response = yield self._request(url, headers, method, body)
        received = yield readBody(response)
        if response.code in success:
            return FetchResult("ok", received if method == b"GET" else None)
        return FetchResult(STATUS_OF_CODE.get(response.code, "error"), detail=f"HTTP {response.code}")

    def _request(self, url: str, headers: Headers, method: bytes = b"GET", body: bytes | None = None):
        # A fresh producer per request: the one of a request answered 401 is used up.
        producer = FileBodyProducer(io.BytesIO(body)) if body is not None else None
        deferred = self.agent.request(method, url.encode(), headers, producer)
        deferred.addTimeout(self.timeout_s, self.reactor)
        return deferred

    def close(self):
        return self.pool.closeCachedConnections()


def _authorization(challenge_headers: list[bytes], credentials, url: str, method: str = "GET") -> bytes | None:
    challenges = parse_challenges([h.decode("latin-1") for h in challenge_headers])
    for challenge in challenges:
        if isinstance(challenge, DigestChallenge):
            parts = urlsplit(url)
            uri = parts.path + (f"?{parts.query}" if parts.query else "")
            return challenge.authorization(credentials.user, credentials.password, method, uri).encode()
    for challenge in challenges:
        if challenge == "basic":
            token = base64.b64encode(f"{credentials.user}:{credentials.password}".encode()).decode()
            return f"Basic {token}".encode()
    return None

"""HTTP(S) in the in-memory lab: labsim's own HTTP core, ``StaticFiles``, answering the
phones' GETs and PUTs as the server on sockets does (the same path checks, Basic and
Digest challenges, uploads into ``upload_dir`` stored on disk where the scenario's
uploads go), and the phones' side of the exchange as their fetcher has it (one answer to
a 401, the same status words). Only the bytes on a connection are left out.

The provisioning root changes in a run only by the timeline's actions: the store
remembers what it found until ``forget`` (the run calls it after each action), so a
request costs no ``stat``.
"""

from __future__ import annotations

import io
from urllib.parse import urlsplit

from labsim.phones.events import FetchResult
from labsim.phones.packed import BODY_REMEMBERED_MAX, BODY_TABLE_BYTES, BODY_TABLE_ENTRIES, BodyValues, SharedValues
from labsim.services.http import HttpAuthenticator, HttpAuthRule, HttpServerConfig, HttpStats
from labsim.services.http_files import STREAM, WHOLE, error
from labsim.services.http_static import DiskFiles, site_files
from labsim.transport.http_fetch import STATUS_OF_CODE, _authorization
from labsim.wire.http1 import host_field, request_target
from labsim.virtual import FILES_CACHED

GET, PUT = b"GET", b"PUT"
SUCCESS = {GET: (200,), PUT: (200, 201, 204)}  # as the fleet's HttpFetcher counts them


# A FetchResult is frozen, so one made for a body (the site's cached bytes: the same
# object every time a file is asked for) or for a status serves every download answered
# so: a week of a fleet gets the same few answers millions of times (bounded as
# packed.md5_hex's table is).
_results = BodyValues(BODY_TABLE_ENTRIES, BODY_TABLE_BYTES, lambda data: FetchResult("ok", data)).one
_failures = SharedValues(64, make=lambda status: FetchResult(STATUS_OF_CODE.get(status, "error"),
                                                             detail=f"HTTP {status}")).one


def _request_line(url: str) -> tuple[bytes, bytes, list[bytes]]:
    """(path, target, Host field) of a URL as the phones' fetcher sends it."""
    parts = urlsplit(url)
    path, uri = request_target(parts)
    return path, uri, [host_field(parts.netloc.rsplit("@", 1)[-1])]


class RememberedFiles(DiskFiles):
    """The provisioning root, each path looked up once until ``forget``."""

    def __init__(self, root: bytes):
        super().__init__(root)
        self._found: dict[bytes, object] = {}

    def find(self, relative: bytes):
        try:
            return self._found[relative]
        except KeyError:
            found = self._found[relative] = super().find(relative)
            return found

    def forget(self) -> None:
        self._found.clear()


class VirtualHttp:
    """One HTTP service of the in-memory lab (its site and counters)."""

    def __init__(self, spec, root: str, clock, upload_root: str | None):
        rules = [HttpAuthRule(rule.path, rule.scheme, dict(rule.users), rule.realm) for rule in spec.auth]
        config = HttpServerConfig(root=root, directory_listing=spec.directory_listing, uploads=spec.uploads,
                                  upload_dir=spec.upload_dir, auth=rules, upload_root=upload_root)
        self.clock = clock
        self.site = site_files(config, HttpAuthenticator(rules, clock.seconds), store=RememberedFiles)
        self.site.files_max = FILES_CACHED  # every pass reads every phone's file again (labsim/virtual/__init__.py)
        self.stats = self.site.stats = HttpStats()
        # (path, target, Host field) of a URL, worked out once (a lookup with no Python call).
        self._request_line = SharedValues(1 << 17, _request_line).one

    def forget_files(self) -> None:
        self.site.files.forget()

    def exchange(self, method: bytes, url: str, user_agent: str, credentials, body: bytes | None = None) -> FetchResult:
        """A GET or PUT of ``url`` as the phones' fetcher makes it, answered by the site."""
        try:
            path, uri, host = self._request_line(url)
        except ValueError as exc:  # a host IDNA refuses: as the phones' client on sockets says it
            return FetchResult("error", detail=f"HTTP: {exc}")
        fields = {b"Host": host, b"User-Agent": [user_agent.encode("utf-8")]}
        answer, data = self._answer(method, path, uri, fields, body)
        if answer.status == 401 and credentials is not None:
            challenges = [value for name, value in answer.headers if name == b"WWW-Authenticate"]
            authorization = _authorization(challenges, credentials, url, method.decode())
            if authorization is not None:
                fields[b"Authorization"] = [authorization]
                answer, data = self._answer(method, path, uri, fields, body)
        if answer.status in SUCCESS[method]:
            if method == PUT:
                self.forget_files()  # a new file, perhaps one the site serves
                return FetchResult("ok")
            return _results(data) if len(data) <= BODY_REMEMBERED_MAX else FetchResult("ok", data)
        return _failures(answer.status)

    def forced(self, status: int) -> FetchResult:
        """The answer a fault forces (``error``/``down``/``loss``), counted as the site counts it."""
        self._count(status, len(error(status).body))
        return FetchResult(STATUS_OF_CODE.get(status, "error"), detail=f"HTTP {status}")

    def _answer(self, method: bytes, path: bytes, uri: bytes, fields, body: bytes | None):
        content = io.BytesIO(body) if body is not None else None  # read only by a PUT
        answer = self.site.answer(method, path, uri, fields, content, self.clock.seconds())
        if answer.how == WHOLE:
            data = answer.body
        elif answer.how == STREAM:  # a large file (firmware): read from where the answer starts
            stream = answer.stream
            try:
                stream.seek(answer.first)
                data = stream.read(answer.length)
            finally:
                stream.close()
        else:
            data = b""
        self._count(answer.status, len(data))
        return answer, data

    def _count(self, status: int, sent: int) -> None:
        stats = self.stats
        stats.requests += 1
        stats.connections += 1  # a phone fetches each file on a connection of its own (http_fetch)
        stats.status[status] = stats.status.get(status, 0) + 1
        stats.bytes_sent += sent

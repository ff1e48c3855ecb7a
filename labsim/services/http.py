"""labsim's HTTP(S) provisioning server: static files, Basic/Digest auth per path, TLS.

twisted.web does the HTTP/1.1 parsing, keep-alive and HEAD; the rest is here:

- one leaf resource answers every request (no resource-tree walk per request);
- small files are served from memory, keyed by path and checked against a fresh stat
  (inode, size, ctime) per request, and written in one call instead of through
  ``twisted.web.static.File``'s producer machinery; larger ones stream from disk;
- files carry Last-Modified, a strong ETag (a hash of the stat key, made once per file
  version) and ``Accept-Ranges: bytes``; If-Match, If-None-Match, If-Modified-Since,
  If-Unmodified-Since, Range and If-Range follow RFC 9110 (304, 412, 206, 416), decided
  I/O-free by ``labsim.wire.http_conditional``; several ranges that do not merge into one span are
  answered with the whole file (200), never multipart. A request with none of those
  fields pays one set test for all of it;
- paths are percent-decoded, ``..`` segments refused, and the real path (symlinks
  resolved) must stay under the root: anything else is a 404, so a probe learns nothing;
- authentication is checked here, I/O-free (``HttpAuthenticator``), so one server can
  protect some paths with Basic and others with Digest (RFC 7616, MD5, qop=auth);
- the access log is bounded and in memory (never a file write per request), kept raw
  and turned into dicts naming the phone by the MAC in its User-Agent only when read;
- per-request work twisted.web does for features unused here is skipped
  (``ProvisioningRequest``), responses held in memory leave in one write, straight to
  the socket when nothing is queued (``send_now``): ~27 -> ~16 µs per 4 KB GET
  in-process; under wrk 0.19-0.26 of nginx's rate before, 0.30-0.53 after (median 0.43
  round by round; docs/performance.md, "HTTP");
- with ``uploads`` on, PUT stores a file under ``upload_dir`` (and nowhere else): phones
  such as Polycom's upload their logs and overrides file there. A PUT's If-Match,
  If-None-Match (``*``: create only) and If-Unmodified-Since are checked against the file
  there (412), a PUT with Content-Range is refused (400), and 201/204 carry the stored
  file's ETag and Last-Modified.

Run alone: ``python -m labsim.services.http --root DIR [--port P] [--tls] ...``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import datetime
import fnmatch
import hashlib
import hmac
import html
import mimetypes
import os
import re
import secrets
import stat
import sys
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import quote, unquote_to_bytes

from twisted.internet import defer, task
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from twisted.web import http, server
# Names taken once: each ``http.X`` lookup goes through twisted.web.http's deprecation
# proxy module, ~1 µs a time on the hot path.
from twisted.web.http import (
    BAD_REQUEST,
    CONFLICT,
    CREATED,
    FORBIDDEN,
    INTERNAL_SERVER_ERROR,
    NOT_ALLOWED,
    NOT_FOUND,
    NO_CONTENT,
    NOT_MODIFIED,
    OK,
    PARTIAL_CONTENT,
    PRECONDITION_FAILED,
    REQUEST_ENTITY_TOO_LARGE,
    REQUESTED_RANGE_NOT_SATISFIABLE,
    RESPONSES,
    UNAUTHORIZED,
    datetimeToString,
)
from twisted.web.resource import Resource

from labsim.net.tcp import can_send_now, send_now
from labsim.wire.http_conditional import (
    CONDITIONAL_FIELDS,
    NS_PER_S,
    Answer,
    Representation,
    evaluate_request,
    make_etag,
)

# Files up to this size are kept in memory; the cache as a whole is emptied past the cap
# (a provisioning tree is small; firmware images are the large files and stream).
CACHE_FILE_MAX = 1 << 20
CACHE_TOTAL_MAX = 64 << 20
# A Digest nonce is an HMAC of its issue time, so the server keeps no per-client state.
# A phone may sit on one nonce across a whole boot's worth of downloads.
NONCE_LIFETIME = 3600.0
ACCESS_LOG_SIZE = 10_000
# A keep-alive connection with nothing in progress is closed after this long.
IDLE_TIMEOUT = 60.0
ALLOWED_METHODS = (b"GET", b"HEAD")
UPLOAD_MAX = 16 << 20  # a phone's log or overrides file is kilobytes; refuse anything huge (413)

# Provisioning files mimetypes does not know (kept local: no change to the global table).
EXTRA_TYPES = {".cfg": "text/plain", ".enc": "application/octet-stream"}


# --- configuration -------------------------------------------------------------------


@dataclass
class HttpAuthRule:
    """Requests whose decoded path matches ``path_glob`` (fnmatch: ``*`` crosses ``/``)
    need one of ``users`` (name -> password)."""

    path_glob: str
    scheme: str  # "basic" | "digest"
    users: dict[str, str]
    realm: str = "labsim"

    def __post_init__(self) -> None:
        if self.scheme not in ("basic", "digest"):
            raise ValueError(f"auth scheme {self.scheme!r}: use 'basic' or 'digest'")


@dataclass
class HttpServerConfig:
    root: str
    directory_listing: bool = False
    auth: list[HttpAuthRule] = field(default_factory=list)
    tls: bool = False
    cert_file: str | None = None
    key_file: str | None = None
    cert_dir: str | None = None  # where a generated self-signed cert/key are written
    uploads: bool = False  # accept PUT, into upload_dir only
    upload_dir: str = "uploads"  # relative to root; created when uploads are on
    # Where upload_dir's files really live, when not inside root (labsim serve/run serve a
    # temporary copy of the provisioning folder; uploads must outlive it). None: root/upload_dir.
    upload_root: str | None = None


# A boot storm opens thousands of connections at once: Twisted's default backlog of 50
# overflowed at 2,000 phones and SYN retries stalled phones for up to 30 s. The kernel
# caps this at net.core.somaxconn.
LISTEN_BACKLOG = 4096


@dataclass
class HttpStats:
    requests: int = 0
    status: dict[int, int] = field(default_factory=dict)
    bytes_sent: int = 0  # body bytes
    uploads: int = 0  # PUTs stored
    bytes_received: int = 0  # their body bytes


# --- pure helpers ----------------------------------------------------------------------

_HEX = "[0-9A-Fa-f]"
_MAC_RE = re.compile(
    rf"(?<![0-9A-Fa-f:-])(?:{_HEX}{{2}}([:-]){_HEX}{{2}}(?:\1{_HEX}{{2}}){{4}}|{_HEX}{{12}})(?![0-9A-Fa-f:-])"
)


def mac_from_user_agent(user_agent: str | None) -> str | None:
    """``'Yealink SIP-T46S 66.85.0.5 00:15:65:13:ae:0b'`` -> ``'00:15:65:13:ae:0b'``;
    also a bare ``001565 13ae0b`` form without separators. Lower-case, colon-separated."""
    if not user_agent:
        return None
    match = _MAC_RE.search(user_agent)
    if match is None:
        return None
    digits = re.sub("[:-]", "", match.group(0)).lower()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def safe_relative_path(raw_path: bytes) -> bytes | None:
    """The request path as a relative filesystem path, or None if it tries to leave.

    Percent-decoding happens before splitting, so ``%2e%2e%2f`` is caught like ``../``;
    a NUL byte (which the OS would refuse anyway) is refused here.
    """
    decoded = unquote_to_bytes(raw_path)
    if b"\x00" in decoded:
        return None
    parts = []
    for part in decoded.split(b"/"):
        if part == b"..":
            return None
        if part and part != b".":
            parts.append(part)
    return b"/".join(parts)


def _is_inside(real: bytes, root: bytes) -> bool:
    return real == root or real.startswith(root + b"/")


def resolve_under(root: bytes, relative: bytes) -> tuple[bytes, os.stat_result] | None:
    """The real path and stat of ``root/relative``; None if missing or outside ``root``.

    ``root`` is already real, so only the components below it need checking: one lstat
    each, and the last lstat is the file's stat. Only a path that meets a symlink pays
    for a full ``realpath`` (which resolves every link: the reliable containment test).
    """
    path, st = root, None
    try:
        for part in relative.split(b"/") if relative else ():
            path = path + b"/" + part
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                real = os.path.realpath(root + b"/" + relative)
                return (real, os.stat(real)) if _is_inside(real, root) else None
        return path, st or os.stat(root)
    except OSError:  # missing, or a file used as a folder
        return None


# Request fields that make a request more than "send the file": see labsim.wire.http_conditional.
# Applied to twisted.web's dict of request fields (``Headers._rawHeaders``, keyed by
# canonical name; the public accessors cost a name encoding per field asked): true when
# the request has none of them. Bound once: ~50 ns a request, about half of what looking
# the method up each time costs.
_unconditional = CONDITIONAL_FIELDS.isdisjoint


# --- authentication, I/O-free ----------------------------------------------------------

_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_auth_params(text: str) -> dict[str, str]:
    return {
        m.group(1).lower(): re.sub(r"\\(.)", r"\1", m.group(2)) if m.group(2) is not None else m.group(3)
        for m in _PARAM_RE.finditer(text)
    }


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 - Digest's MD5 is the protocol


class HttpAuthenticator:
    """Decides whether a request may proceed and, if not, the challenge to send."""

    def __init__(self, rules: list[HttpAuthRule], clock: Callable[[], float], secret: bytes | None = None):
        self.rules = rules
        self.clock = clock
        self._secret = secret or secrets.token_bytes(32)
        self._opaque = secrets.token_hex(8)

    def rule_for(self, path: str) -> HttpAuthRule | None:
        return next((rule for rule in self.rules if fnmatch.fnmatchcase(path, rule.path_glob)), None)

    def check(self, rule: HttpAuthRule, method: bytes, uri: bytes, authorization: bytes | None) -> str | None:
        """None if the credentials are good, else the WWW-Authenticate value to send."""
        header = (authorization or b"").decode("latin-1")
        scheme, _, rest = header.partition(" ")
        if rule.scheme == "basic":
            if scheme.lower() == "basic" and self._basic_ok(rule, rest.strip()):
                return None
            return f'Basic realm="{rule.realm}", charset="UTF-8"'
        stale = False
        if scheme.lower() == "digest":
            ok, stale = self._digest_ok(rule, method.decode("latin-1"), uri.decode("latin-1"), parse_auth_params(rest))
            if ok:
                return None
        return self.digest_challenge(rule, stale)

    @staticmethod
    def _basic_ok(rule: HttpAuthRule, token: str) -> bool:
        try:
            user, sep, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = rule.users.get(user)
        return bool(sep) and expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    def make_nonce(self) -> str:
        issued = f"{int(self.clock()):x}"
        return f"{issued}.{self._sign(issued)}"

    def _sign(self, issued: str) -> str:
        return hmac.new(self._secret, issued.encode(), hashlib.sha256).hexdigest()[:32]

    def _nonce_state(self, nonce: str) -> str:
        """'good', 'stale' (ours but old: the client may retry with a fresh one) or 'bad'."""
        issued, _, mac = nonce.partition(".")
        if not hmac.compare_digest(self._sign(issued), mac):
            return "bad"
        try:
            age = self.clock() - int(issued, 16)
        except ValueError:
            return "bad"
        return "good" if 0 <= age <= NONCE_LIFETIME else "stale"

    def digest_challenge(self, rule: HttpAuthRule, stale: bool = False) -> str:
        return (
            f'Digest realm="{rule.realm}", qop="auth", algorithm=MD5, '
            f'nonce="{self.make_nonce()}", opaque="{self._opaque}"' + (", stale=true" if stale else "")
        )

    def _digest_ok(self, rule: HttpAuthRule, method: str, uri: str, p: dict[str, str]) -> tuple[bool, bool]:
        """(credentials good, nonce merely stale)."""
        password = rule.users.get(p.get("username", ""))
        if (
            password is None
            or p.get("realm") != rule.realm
            or p.get("uri") != uri  # the digest covers the URI: it must be this request's
            or p.get("algorithm", "MD5").upper() != "MD5"
        ):
            return False, False
        ha1 = _md5(f"{p['username']}:{rule.realm}:{password}")
        ha2 = _md5(f"{method}:{uri}")
        qop = p.get("qop")
        if qop == "auth":
            if "nc" not in p or "cnonce" not in p:
                return False, False
            expected = _md5(f"{ha1}:{p.get('nonce', '')}:{p['nc']}:{p['cnonce']}:auth:{ha2}")
        elif qop is None:  # RFC 2069 clients (old phones) send no qop
            expected = _md5(f"{ha1}:{p.get('nonce', '')}:{ha2}")
        else:
            return False, False
        if not hmac.compare_digest(expected, p.get("response", "")):
            return False, False
        state = self._nonce_state(p.get("nonce", ""))
        return state == "good", state == "stale"


# --- the twisted.web side ----------------------------------------------------------------


class _FileVersion:
    """One version of one file as served: the parts of its stat that change with it
    (checked against a fresh stat on every request), its validators, and its response
    fields, built once per version instead of per request. ``body``: the content of a
    cached (small) file; None for one that streams."""

    __slots__ = ("ino", "size", "ctime_ns", "body", "content_type", "representation", "etag",
                 "last_modified", "fields", "validator_fields")

    def __init__(self, st: os.stat_result, content_type: bytes, body: bytes | None, now: float):
        self.ino, self.size, self.ctime_ns = st.st_ino, st.st_size, st.st_ctime_ns
        self.body = body
        self.content_type = content_type
        self.etag = make_etag(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        # Never later than the Date field (RFC 9110 8.8.2.1): a file stamped in the future
        # says "modified now" instead; whole seconds, as Last-Modified carries them.
        modified_ns = min(st.st_mtime_ns, int(now * NS_PER_S))
        self.representation = Representation(self.etag, modified_ns, st.st_size)
        self.last_modified = datetimeToString(modified_ns // NS_PER_S)
        self.fields = self.field_block(0, st.st_size - 1, partial=False)
        # What a 304 carries (RFC 9110 15.4.5): the validators, no Content-Length.
        self.validator_fields = b"ETag: %s\r\nLast-Modified: %s\r\n" % (self.etag, self.last_modified)

    def field_pairs(self, first: int, last: int, partial: bool) -> list[tuple[bytes, bytes]]:
        pairs = [(b"Content-Type", self.content_type), (b"Content-Length", b"%d" % (last - first + 1))]
        if partial:
            pairs.append((b"Content-Range", b"bytes %d-%d/%d" % (first, last, self.size)))
        pairs += [(b"Last-Modified", self.last_modified), (b"ETag", self.etag), (b"Accept-Ranges", b"bytes")]
        return pairs

    def field_block(self, first: int, last: int, partial: bool) -> bytes:
        """The pairs as ready header lines, for ``send_whole``."""
        return b"".join(b"%s: %s\r\n" % pair for pair in self.field_pairs(first, last, partial))


class _Slice:
    """The ``length`` bytes of ``fileobj`` from its current position, read like a file:
    what FileSender streams for a 206."""

    def __init__(self, fileobj, length: int):
        self.fileobj, self.left = fileobj, length

    def read(self, size: int) -> bytes:
        data = self.fileobj.read(min(size, self.left))
        self.left -= len(data)
        return data


def _content_type(path: bytes) -> bytes:
    name = os.fsdecode(path)
    guessed = EXTRA_TYPES.get(os.path.splitext(name)[1].lower()) or mimetypes.guess_type(name, strict=False)[0]
    return (guessed or "application/octet-stream").encode()


class StaticRoot(Resource):
    """Answers every request itself (a leaf), so twisted.web never walks a tree."""

    isLeaf = True

    def __init__(self, config: HttpServerConfig, authenticator: HttpAuthenticator):
        super().__init__()
        self.listing = config.directory_listing
        self.root = os.path.realpath(os.fsencode(config.root))
        self.auth = authenticator if config.auth else None
        self._cache: dict[bytes, _FileVersion] = {}
        self._cached_bytes = 0
        self.methods = ALLOWED_METHODS
        self.upload_root: bytes | None = None
        if config.uploads:
            self.methods = ALLOWED_METHODS + (b"PUT",)
            upload_root = os.path.realpath(os.path.join(self.root, os.fsencode(config.upload_dir)))
            if not _is_inside(upload_root, self.root) or upload_root == self.root:
                raise ValueError(f"upload_dir {config.upload_dir!r} must be a folder inside the HTTP root")
            os.makedirs(upload_root, exist_ok=True)
            self.upload_prefix = upload_root[len(self.root) + 1 :]
            if config.upload_root is not None:
                os.makedirs(config.upload_root, exist_ok=True)
                upload_root = os.path.realpath(os.fsencode(config.upload_root))
            self.upload_root = upload_root
        self.stats: HttpStats | None = None  # the site's, for the upload counters

    # Faults injected by the scenario (labsim.faults.FaultSet) and the clock that delays
    # answers; None: requests take the direct path.
    faults = None
    clock = None

    def render(self, request: server.Request):
        faults = self.faults
        if faults is None or not faults.active("http", "out"):
            return self._render_now(request)
        status, delay = faults.http(os.fsdecode(request.path), 0, self.clock.seconds())
        if delay <= 0:
            return self._error(request, status) if status is not None else self._render_now(request)
        self.clock.callLater(delay, self._answer_late, request, status)
        return server.NOT_DONE_YET

    def _answer_late(self, request: server.Request, status: int | None) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        body = self._error(request, status) if status is not None else self._render_now(request)
        if body is server.NOT_DONE_YET:
            return
        request.write(body)
        request.finish()

    def _render_now(self, request: server.Request):
        if request.method not in self.methods:
            request.setHeader(b"Allow", b", ".join(self.methods))
            return self._error(request, NOT_ALLOWED)
        relative = safe_relative_path(request.path)
        if relative is None:
            return self._error(request, NOT_FOUND)
        if self.auth is not None:
            rule = self.auth.rule_for("/" + os.fsdecode(relative))
            if rule is not None:
                challenge = self.auth.check(rule, request.method, request.uri, request.getHeader(b"authorization"))
                if challenge is not None:
                    request.setHeader(b"WWW-Authenticate", challenge.encode("latin-1"))
                    return self._error(request, UNAUTHORIZED)
        if request.method == b"PUT":
            return self._put(request, relative)
        found = resolve_under(*self._where(relative))
        if found is None:
            return self._error(request, NOT_FOUND)
        real, st = found
        if stat.S_ISDIR(st.st_mode):
            try:
                listing = self._listing(request.path, real) if self.listing else None
            except OSError:
                listing = None
            if listing is None:
                return self._error(request, FORBIDDEN)
            # Made per request, so it has no validators to offer; preconditions are still
            # evaluated against "a representation without any" (If-Match: * holds, a listed
            # tag never matches); Range is not offered for listings.
            if not _unconditional(request.requestHeaders._rawHeaders):
                answer = evaluate_request(request.method, _conditional_fields(request),
                                          Representation(None, None, len(listing)), time.time(), ranges=False)
                if answer.status == NOT_MODIFIED:  # nothing to send: no validators, no length
                    request.setResponseCode(NOT_MODIFIED)
                    request.send_whole(b"", b"")
                    return server.NOT_DONE_YET
                if answer.status != OK:
                    return self._error(request, answer.status)
            return self._send(request, listing, b"text/html; charset=utf-8")
        return self._file(request, real, st)

    def _where(self, relative: bytes) -> tuple[bytes, bytes]:
        """(real folder, path below it) for a path under the root: the upload folder's
        files are read from where uploads are stored, which need not be inside the root."""
        prefix = self.upload_root is not None and self.upload_prefix
        if prefix and _is_inside(relative, prefix):
            return self.upload_root, relative[len(prefix) + 1 :]
        return self.root, relative

    # -- uploads

    def _put(self, request, relative: bytes):
        """Store the body at ``relative`` if that is inside the upload folder: 201 for a new
        file, 204 for a replaced one. Written to a temporary name first, then renamed, so
        a reader never sees half a file."""
        upload_prefix = self.upload_prefix
        if not _is_inside(relative, upload_prefix) or relative == upload_prefix:
            return self._error(request, FORBIDDEN)
        if request.requestHeaders.hasHeader(b"Content-Range"):
            # RFC 9110 14.5: a partial PUT would be stored as if it were the whole file.
            return self._error(request, BAD_REQUEST)
        content = request.content
        content.seek(0, os.SEEK_END)
        size = content.tell()
        if size > UPLOAD_MAX:
            return self._error(request, REQUEST_ENTITY_TOO_LARGE)
        content.seek(0)
        target = self.upload_root + b"/" + relative[len(upload_prefix) + 1 :]
        folder = os.path.dirname(target)
        try:
            os.makedirs(folder, exist_ok=True)
            # A symlink in the way must not lead the write out of the upload folder.
            if not _is_inside(os.path.realpath(folder), self.upload_root):
                return self._error(request, FORBIDDEN)
            if os.path.isdir(target):
                return self._error(request, CONFLICT)
            existed = os.path.lexists(target)
            if not _unconditional(request.requestHeaders._rawHeaders):
                # If-Match / If-None-Match: * / If-Unmodified-Since against the file there now
                # (none: If-Match fails, If-None-Match: * holds): a lost update becomes a 412.
                now = time.time()
                current = _FileVersion(os.stat(target), b"", None, now).representation if existed else None
                if evaluate_request(b"PUT", _conditional_fields(request), current, now).status != OK:
                    return self._error(request, PRECONDITION_FAILED)
            temporary = target + b".part-" + secrets.token_hex(4).encode()
            with open(temporary, "wb") as handle:
                handle.write(content.read())
            os.replace(temporary, target)
            stored = _FileVersion(os.stat(target), b"", None, time.time())
        except OSError:
            return self._error(request, INTERNAL_SERVER_ERROR)
        # Stored as sent, so the new file's validators may go back (RFC 9110 9.3.4): a
        # client can make its next PUT conditional on them.
        request.setHeader(b"ETag", stored.etag)
        request.setHeader(b"Last-Modified", stored.last_modified)
        if self.stats is not None:
            self.stats.uploads += 1
            self.stats.bytes_received += size
        if existed:
            request.setResponseCode(NO_CONTENT)
            request.finish()
            return server.NOT_DONE_YET
        request.setResponseCode(CREATED)
        return self._send(request, b"201 Created\n", b"text/plain")

    # -- responses

    @staticmethod
    def _send(request, body: bytes, content_type: bytes):
        # Written here rather than returned: twisted.web logs a line for a HEAD whose
        # render returns a body; the body of a HEAD is dropped when written.
        request.send_whole(b"Content-Type: %s\r\nContent-Length: %d\r\n" % (content_type, len(body)), body)
        return server.NOT_DONE_YET

    def _error(self, request, code: int):
        request.setResponseCode(code)
        return self._send(request, b"%d %s\n" % (code, RESPONSES.get(code, b"")), b"text/plain")

    def _file(self, request, real: bytes, st: os.stat_result):
        version = self._cache.get(real)
        # Whether the cached version is still the file's: any write, truncate, utime or
        # chmod moves ctime (and so does every mtime change), a replace changes the inode;
        # size also catches a rewrite within one tick of the filesystem's timestamp clock.
        if (version is None or version.ctime_ns != st.st_ctime_ns or version.size != st.st_size
                or version.ino != st.st_ino):
            version = self._load(real, st)
        if version is not None:
            # The common request, with no conditional field, stays on the path it had
            # before validators existed: one set test.
            if _unconditional(request.requestHeaders._rawHeaders):
                request.send_whole(version.fields, version.body)
                return server.NOT_DONE_YET
            return self._answer_file(request, version, None)
        # A large file: stream it. Opened now so a file that vanished is still a 404, and
        # described by the file actually opened, so validators and bytes agree.
        try:
            fileobj = open(real, "rb")  # noqa: SIM115 - closed by _answer_file or _streamed
        except OSError:
            return self._error(request, NOT_FOUND)
        try:
            version = _FileVersion(os.fstat(fileobj.fileno()), _content_type(real), None, time.time())
        except OSError:
            fileobj.close()
            return self._error(request, NOT_FOUND)
        return self._answer_file(request, version, fileobj)

    def _answer_file(self, request, version: _FileVersion, fileobj):
        """Weigh the request's preconditions and Range against ``version``, then answer:
        from ``version.body``, or streaming ``fileobj`` (open on the same version)."""
        if _unconditional(request.requestHeaders._rawHeaders):
            answer = Answer(OK, 0, version.size - 1)
        else:
            answer = evaluate_request(request.method, _conditional_fields(request), version.representation,
                                      time.time())
        status = answer.status
        request.setResponseCode(status)
        if status != OK and status != PARTIAL_CONTENT:
            if fileobj is not None:
                fileobj.close()
            if status == NOT_MODIFIED:
                request.send_whole(version.validator_fields, b"")
                return server.NOT_DONE_YET
            if status == REQUESTED_RANGE_NOT_SATISFIABLE:
                request.setHeader(b"Content-Range", b"bytes */%d" % version.size)
            return self._error(request, status)
        partial = status == PARTIAL_CONTENT
        first, last = answer.first, answer.last
        if fileobj is None:
            if partial:
                request.send_whole(version.field_block(first, last, True), version.body[first : last + 1])
            else:
                request.send_whole(version.fields, version.body)
            return server.NOT_DONE_YET
        for name, value in version.field_pairs(first, last, partial):
            request.setHeader(name, value)
        if request.method == b"HEAD":
            fileobj.close()
            request.write(b"")
            request.finish()
            return server.NOT_DONE_YET
        source = fileobj
        if partial:
            fileobj.seek(first)
            source = _Slice(fileobj, last - first + 1)
        FileSender().beginFileTransfer(source, request).addBoth(self._streamed, request, fileobj)
        return server.NOT_DONE_YET

    @staticmethod
    def _streamed(result, request, fileobj) -> None:
        fileobj.close()
        if not isinstance(result, Failure):
            request.finish()
        else:
            # The connection stopped us (client hang-up, server stop): the request dies with
            # it and must not be finished, but the partial download still goes in the log.
            request.site.log(request)

    def _load(self, real: bytes, st: os.stat_result) -> _FileVersion | None:
        """Read a small file into the cache (None: too big, or it changed under us)."""
        if st.st_size > CACHE_FILE_MAX:
            return None
        try:
            with open(real, "rb") as f:
                body = f.read(CACHE_FILE_MAX + 1)
                after = os.fstat(f.fileno())
        except OSError:
            return None
        if len(body) != st.st_size or after.st_ctime_ns != st.st_ctime_ns or after.st_ino != st.st_ino:
            return None  # being rewritten right now: stream it this time
        old = self._cache.pop(real, None)
        if old is not None:
            self._cached_bytes -= old.size
        if self._cached_bytes + len(body) > CACHE_TOTAL_MAX:
            self._cache.clear()
            self._cached_bytes = 0
        entry = _FileVersion(st, _content_type(real), body, time.time())
        self._cache[real] = entry
        self._cached_bytes += len(body)
        return entry

    @staticmethod
    def _listing(raw_path: bytes, real: bytes) -> bytes:
        base = raw_path if raw_path.endswith(b"/") else raw_path + b"/"
        title = html.escape(base.decode("utf-8", "replace"))
        rows = []
        for name in sorted(os.listdir(real)):
            shown = os.fsdecode(name) + ("/" if os.path.isdir(os.path.join(real, name)) else "")
            href = base.decode("latin-1") + quote(name)
            rows.append(f'<li><a href="{html.escape(href)}">{html.escape(shown)}</a></li>')
        return (f"<html><head><title>{title}</title></head><body><h1>{title}</h1><ul>" + "".join(rows) + "</ul></body></html>\n").encode()


def _conditional_fields(request) -> dict[bytes, bytes]:
    """The request's CONDITIONAL_FIELDS for ``evaluate_request``: lower-case names, a
    field sent on several lines joined with ", " (RFC 9110 5.3)."""
    return {name.lower(): b", ".join(values)
            for name, values in request.requestHeaders.getAllRawHeaders() if name in CONDITIONAL_FIELDS}


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
    _send_now = False
    _peer = _host = None

    def connectionMade(self):
        super().connectionMade()
        self._send_now = can_send_now(self.transport)
        self.last_active = self.factory.reactor.seconds()
        self.factory.open_channels.add(self)

    def dataReceived(self, data):
        self.last_active = self.factory.reactor.seconds()
        super().dataReceived(data)

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


class AccessLog:
    """The last ``size`` requests, newest last, each read as a dict (time, client, method,
    path, status, mac, user_agent).

    An entry is stored as the tuple of raw values twisted.web already holds and becomes a
    dict only when read: a boot storm writes thousands of entries a second and reads
    almost none of them. Decoding and the MAC search cost ~4-5 µs per request.
    """

    def __init__(self, size: int):
        self._entries: collections.deque[tuple] = collections.deque(maxlen=size)

    def append(self, raw: tuple) -> None:
        self._entries.append(raw)

    @staticmethod
    def entry(raw: tuple) -> dict:
        when, client, method, uri, status, user_agent = raw
        user_agent = user_agent.decode("latin-1") if user_agent is not None else None
        return {
            "time": when,
            "client": client,
            "method": method.decode("latin-1"),
            "path": uri.decode("latin-1"),
            "status": status,
            "mac": mac_from_user_agent(user_agent),
            "user_agent": user_agent,
        }

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        return map(self.entry, list(self._entries))

    def __getitem__(self, index: int) -> dict:
        return self.entry(self._entries[index])


class ProvisioningSite(server.Site):
    """A Site whose access log is counters plus a bounded in-memory log.

    Idle keep-alive connections are closed by one periodic sweep instead of twisted.web's
    per-connection timeout: that one defaults to 12 hours (idle phones would pile up) and
    re-arms a timer on every request (~2 of the ~24 µs a small GET costs in-process).
    """

    protocol = _TrackedChannel
    requestFactory = ProvisioningRequest

    def __init__(self, resource, reactor, access_log_size: int, idle_timeout: float = IDLE_TIMEOUT):
        super().__init__(resource, reactor=reactor, timeout=None, requestFactory=ProvisioningRequest)
        self.idle_timeout = idle_timeout
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
        self._sweeper.start(self.idle_timeout / 4, now=False)

    def stopFactory(self) -> None:
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        super().stopFactory()

    def close_idle(self) -> None:
        """Close connections with no request in progress and nothing received lately."""
        cutoff = self.reactor.seconds() - self.idle_timeout
        for channel in list(self.open_channels):
            if not channel.requests and channel.last_active < cutoff:
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


# --- TLS ---------------------------------------------------------------------------------


def make_self_signed(hostnames: list[str]) -> tuple[bytes, bytes]:
    """(cert PEM, key PEM), ECDSA P-256: made in well under a millisecond at start where
    RSA-2048 takes tens; new HTTPS connections per second measured the same for both
    (~300/s against a Python client), so nothing is lost. Real phones with RSA-only TLS
    stacks need ``cert_file``/``key_file``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _tls_options(config: HttpServerConfig, host: str):
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from twisted.internet import ssl

    if config.cert_file:
        with open(config.cert_file, "rb") as f:
            cert_pem = f.read()
        with open(config.key_file or config.cert_file, "rb") as f:
            key_pem = f.read()
    else:
        cert_pem, key_pem = make_self_signed(list(dict.fromkeys([host, "localhost", "127.0.0.1"])))
        if config.cert_dir:
            os.makedirs(config.cert_dir, exist_ok=True)
            with open(os.path.join(config.cert_dir, "cert.pem"), "wb") as f:
                f.write(cert_pem)
            key_path = os.path.join(config.cert_dir, "key.pem")
            with open(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(key_pem)
    # cryptography objects, not pyOpenSSL's (deprecated there since pyOpenSSL 24.3).
    return ssl.CertificateOptions(
        privateKey=load_pem_private_key(key_pem, password=None),
        certificate=x509.load_pem_x509_certificate(cert_pem),
    )


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
    reactor, config: HttpServerConfig, host: str = "127.0.0.1", port: int = 8080, access_log_size: int = ACCESS_LOG_SIZE
) -> HttpServerHandle:
    """Listen on ``host:port`` (0: any free port; the handle says which)."""
    if not os.path.isdir(config.root):
        raise ValueError(f"HTTP root {config.root!r} is not a directory")
    authenticator = HttpAuthenticator(config.auth, reactor.seconds)
    site = ProvisioningSite(StaticRoot(config, authenticator), reactor, access_log_size)
    site.resource.stats = site.stats
    if config.tls:
        listening = reactor.listenSSL(port, site, _tls_options(config, host), interface=host, backlog=LISTEN_BACKLOG)
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
    parser = argparse.ArgumentParser(prog="python -m labsim.services.http")
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

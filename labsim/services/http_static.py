"""The provisioning server's one twisted.web resource: answers every request from the
root folder (paths confined to it, small files cached in memory and checked against a
fresh stat per request, large ones streamed, conditional requests and ranges, directory
listings, authentication, uploads). The site around it is ``labsim.services.http_web``.
"""

from __future__ import annotations

import html
import mimetypes
import os
import secrets
import stat
import time
from urllib.parse import quote

from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from twisted.web import server
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

from labsim.services.http import (
    ALLOWED_METHODS,
    CACHE_FILE_MAX,
    CACHE_TOTAL_MAX,
    EXTRA_TYPES,
    UPLOAD_MAX,
    HttpAuthenticator,
    HttpServerConfig,
    HttpStats,
    safe_relative_path,
)
from labsim.wire.http_conditional import (
    CONDITIONAL_FIELDS,
    NS_PER_S,
    Answer,
    Representation,
    evaluate_request,
    make_etag,
)


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
        hosts = request.requestHeaders.getRawHeaders(b"host")
        if (hosts is None and request.clientproto == b"HTTP/1.1") or (hosts is not None and len(hosts) != 1):
            # RFC 9112 3.2: an HTTP/1.1 request without Host, or any with more than one, gets 400.
            return self._error(request, BAD_REQUEST)
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

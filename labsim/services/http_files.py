"""The HTTP provisioning server's answers, without I/O: a request (method, path, fields,
body, the time) in, what to send out.

``StaticFiles`` decides every answer: method allowed, path safe, credentials, upload or
download, file or listing, cached or streamed, preconditions and ranges (RFC 9110,
decided in ``labsim.wire.http_conditional``). It reads through an ``HttpFileStore``: the
folder on disk in the real server (``labsim.services.http_static.DiskFiles``), a dict in
tests. The store answers with stat-shaped records (``st_mode``, ``st_size``, ``st_ino``,
``st_mtime_ns``, ``st_ctime_ns``): on disk that is the ``os.stat_result`` itself, so the
hot path builds nothing new. The twisted.web resource (``http_static.StaticRoot``) turns
an ``HttpAnswer`` into bytes on the connection.

``fields`` is the request's fields as twisted.web keeps them (canonical name -> list of
values): the adapter hands its dict over as it is.
"""

from __future__ import annotations

import html
import mimetypes
import posixpath
import stat
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import NamedTuple, Protocol
from urllib.parse import quote

from labsim.services.file_store import NotAllowed
from labsim.services.http import (
    ALLOWED_METHODS,
    CACHE_FILE_MAX,
    CACHE_FILES_MAX,
    CACHE_TOTAL_MAX,
    EXTRA_TYPES,
    UPLOAD_MAX,
    HttpAuthenticator,
    HttpStats,
    safe_relative_path,
)
from labsim.wire.http_conditional import CONDITIONAL_FIELDS, NS_PER_S, Answer, Representation, evaluate_request, make_etag

OK, PARTIAL_CONTENT, NOT_MODIFIED = 200, 206, 304
CREATED, NO_CONTENT = 201, 204
BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, NOT_ALLOWED, CONFLICT = 400, 401, 403, 404, 405, 409
PRECONDITION_FAILED, REQUEST_ENTITY_TOO_LARGE, REQUESTED_RANGE_NOT_SATISFIABLE = 412, 413, 416
INTERNAL_SERVER_ERROR = 500


def reason(status: int) -> bytes:
    """The reason phrase for ``status`` (RFC 9110's, as Python's http.HTTPStatus has them)."""
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


# Request fields that make a request more than "send the file" (labsim.wire.http_conditional):
# true when the request has none of them. Bound once: ~50 ns a request.
unconditional = CONDITIONAL_FIELDS.isdisjoint

# How an answer leaves: WHOLE, fields and body in one write; FINISH, only the status and
# ``headers``; STREAM, ``pairs`` as fields, then ``length`` bytes of ``stream`` from ``first``.
WHOLE, FINISH, STREAM = 0, 1, 2


class HttpFileStore(Protocol):
    """The files a ``StaticFiles`` serves. ``relative`` is a safe path below the folder
    (``safe_relative_path``); a locator is whatever the store needs to find the file again."""

    def find(self, relative: bytes) -> tuple[Hashable, object] | None:
        """(locator, stat) of ``relative``; None when missing or outside the folder."""

    def read(self, locator: Hashable, st, limit: int) -> bytes | None:
        """The whole file if it is still ``st`` and at most ``limit`` bytes; else None."""

    def open(self, locator: Hashable):
        """(file object, its stat) to stream; None when it is gone."""

    def names(self, locator: Hashable) -> list[tuple[bytes, bool]]:
        """A folder's entries, (name, is a folder); OSError when unreadable."""

    def upload_target(self, relative: bytes) -> tuple[Hashable, object | None]:
        """(target, the stat of the file there now or None); NotAllowed: outside the
        folder; IsADirectoryError: a folder is there. Makes missing folders."""

    def store(self, target: Hashable, data: bytes):
        """Write ``data`` whole (a reader never sees half) and return its stat; OSError."""


def http_date(seconds: int) -> bytes:
    return formatdate(seconds, usegmt=True).encode()


def content_type(name: bytes) -> bytes:
    text = name.decode("utf-8", "surrogateescape")
    guessed = EXTRA_TYPES.get(posixpath.splitext(text)[1].lower()) or mimetypes.guess_type(text, strict=False)[0]
    return (guessed or "application/octet-stream").encode()


@dataclass(slots=True)
class HttpAnswer:
    status: int
    how: int = WHOLE
    fields: bytes = b""  # WHOLE: ready header lines (each ending CRLF)
    body: bytes = b""  # WHOLE
    headers: tuple[tuple[bytes, bytes], ...] = ()  # set on the response first (Allow, ETag ...)
    stream: object = None  # STREAM: an open file the adapter closes when done
    pairs: tuple[tuple[bytes, bytes], ...] = ()  # STREAM: the response fields
    first: int = 0
    length: int = 0


def error(status: int, headers: tuple[tuple[bytes, bytes], ...] = ()) -> HttpAnswer:
    if not headers:  # the same answer every time (answers are never changed once made)
        answer = _ERRORS.get(status)
        if answer is None:
            answer = _ERRORS[status] = _error(status, ())
        return answer
    return _error(status, headers)


def _error(status: int, headers: tuple[tuple[bytes, bytes], ...]) -> HttpAnswer:
    body = b"%d %s\n" % (status, reason(status))
    return HttpAnswer(status, WHOLE, b"Content-Type: text/plain\r\nContent-Length: %d\r\n" % len(body), body, headers)


_ERRORS: dict[int, HttpAnswer] = {}  # status -> its plain error answer


def _whole(status: int, body: bytes, ctype: bytes, headers=()) -> HttpAnswer:
    return HttpAnswer(status, WHOLE, b"Content-Type: %s\r\nContent-Length: %d\r\n" % (ctype, len(body)), body, headers)


class FileVersion:
    """One version of one file as served: the parts of its stat that change with it
    (checked against a fresh stat on every request), its validators, and its response
    fields, built once per version instead of per request. ``body``: the content of a
    cached (small) file; None for one that streams."""

    __slots__ = ("ino", "size", "ctime_ns", "body", "content_type", "representation", "etag",
                 "last_modified", "fields", "validator_fields", "answer")

    def __init__(self, st, content_type: bytes, body: bytes | None, now: float):
        self.ino, self.size, self.ctime_ns = st.st_ino, st.st_size, st.st_ctime_ns
        self.body = body
        self.content_type = content_type
        self.etag = make_etag(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        # Never later than the Date field (RFC 9110 8.8.2.1): a file stamped in the future
        # says "modified now" instead; whole seconds, as Last-Modified carries them.
        modified_ns = min(st.st_mtime_ns, int(now * NS_PER_S))
        self.representation = Representation(self.etag, modified_ns, st.st_size)
        self.last_modified = http_date(modified_ns // NS_PER_S)
        self.fields = self.field_block(0, st.st_size - 1, partial=False)
        # What a 304 carries (RFC 9110 15.4.5): the validators, no Content-Length.
        self.validator_fields = b"ETag: %s\r\nLast-Modified: %s\r\n" % (self.etag, self.last_modified)
        # The common answer, made once: the whole cached file.
        self.answer = HttpAnswer(OK, WHOLE, self.fields, body) if body is not None else None

    def field_pairs(self, first: int, last: int, partial: bool) -> list[tuple[bytes, bytes]]:
        pairs = [(b"Content-Type", self.content_type), (b"Content-Length", b"%d" % (last - first + 1))]
        if partial:
            pairs.append((b"Content-Range", b"bytes %d-%d/%d" % (first, last, self.size)))
        pairs += [(b"Last-Modified", self.last_modified), (b"ETag", self.etag), (b"Accept-Ranges", b"bytes")]
        return pairs

    def field_block(self, first: int, last: int, partial: bool) -> bytes:
        """The pairs as ready header lines, for one write."""
        return b"".join(b"%s: %s\r\n" % pair for pair in self.field_pairs(first, last, partial))


def conditional_fields(fields: Mapping[bytes, list[bytes]]) -> dict[bytes, bytes]:
    """The request's CONDITIONAL_FIELDS for ``evaluate_request``: lower-case names, a
    field sent on several lines joined with ", " (RFC 9110 5.3)."""
    return {name.lower(): b", ".join(values) for name, values in fields.items() if name in CONDITIONAL_FIELDS}


def _is_inside(path: bytes, folder: bytes) -> bool:
    return path == folder or path.startswith(folder + b"/")


class StaticFiles:
    """Answers every request from ``files`` (and PUTs into ``uploads``, under the path
    ``upload_prefix``, when given). Small files are cached by locator with their response
    fields, checked against the store's fresh stat on every request."""

    def __init__(self, files: HttpFileStore, *, listing: bool = False, auth: HttpAuthenticator | None = None,
                 uploads: HttpFileStore | None = None, upload_prefix: bytes | None = None,
                 uploads_elsewhere: bool = False):
        self.files = files
        self.listing = listing
        self.auth = auth
        self.uploads = uploads
        self.upload_prefix = upload_prefix
        # Read the upload folder's files from ``uploads`` (they need not be inside the root).
        self.uploads_elsewhere = uploads_elsewhere
        self.methods = ALLOWED_METHODS + (b"PUT",) if uploads is not None else ALLOWED_METHODS
        self.stats: HttpStats | None = None  # the site's, for the upload counters
        self._cache: dict[Hashable, FileVersion] = {}
        self._cached_bytes = 0
        self.files_max = CACHE_FILES_MAX  # files kept before the cache starts again (labsim.virtual keeps more)

    def answer(self, method: bytes, path: bytes, uri: bytes, fields: Mapping[bytes, list[bytes]], content,
               now: float, version: bytes = b"HTTP/1.1") -> HttpAnswer:
        """``content``: the request body as a file object (PUT), else unused; ``version``:
        the request line's protocol."""
        hosts = fields.get(b"Host")
        if (hosts is None and version == b"HTTP/1.1") or (hosts is not None and len(hosts) != 1):
            # RFC 9112 3.2: an HTTP/1.1 request without Host, or any with more than one, gets 400.
            return error(BAD_REQUEST)
        if method not in self.methods:
            return error(NOT_ALLOWED, ((b"Allow", b", ".join(self.methods)),))
        relative = safe_relative_path(path)
        if relative is None:
            return error(NOT_FOUND)
        if self.auth is not None:
            rule = self.auth.rule_for("/" + relative.decode("utf-8", "surrogateescape"))
            if rule is not None:
                authorization = fields.get(b"Authorization")
                challenge = self.auth.check(rule, method, uri, authorization[-1] if authorization else None)
                if challenge is not None:
                    return error(UNAUTHORIZED, ((b"WWW-Authenticate", challenge.encode("latin-1")),))
        if method == b"PUT":
            return self._put(relative, fields, content, now)
        if self.uploads_elsewhere:
            store, below = self._where(relative)
        else:  # _where's answer when uploads are read from the root: once per request
            store, below = self.files, relative
        found = store.find(below)
        if found is None:
            return error(NOT_FOUND)
        locator, st = found
        if stat.S_ISDIR(st.st_mode):
            return self._folder(store, locator, method, path, fields, now)
        return self._file(store, locator, st, method, fields, now)

    def _where(self, relative: bytes) -> tuple[HttpFileStore, bytes]:
        """(store, path in it): the upload folder's files are read from where uploads are
        stored, which need not be inside the root."""
        prefix = self.uploads_elsewhere and self.upload_prefix
        if prefix and _is_inside(relative, prefix):
            return self.uploads, relative[len(prefix) + 1 :]
        return self.files, relative

    # -- folders

    def _folder(self, store, locator, method: bytes, path: bytes, fields, now: float) -> HttpAnswer:
        try:
            page = self._listing(store, locator, path) if self.listing else None
        except OSError:
            page = None
        if page is None:
            return error(FORBIDDEN)
        # Made per request, so it has no validators to offer; preconditions are still
        # evaluated against "a representation without any" (If-Match: * holds, a listed
        # tag never matches); Range is not offered for listings.
        if not unconditional(fields):
            verdict = evaluate_request(method, conditional_fields(fields), Representation(None, None, len(page)), now,
                                       ranges=False)
            if verdict.status == NOT_MODIFIED:  # nothing to send: no validators, no length
                return HttpAnswer(NOT_MODIFIED)
            if verdict.status != OK:
                return error(verdict.status)
        return _whole(OK, page, b"text/html; charset=utf-8")

    @staticmethod
    def _listing(store, locator, raw_path: bytes) -> bytes:
        base = raw_path if raw_path.endswith(b"/") else raw_path + b"/"
        title = html.escape(base.decode("utf-8", "replace"))
        rows = []
        # A name is bytes and need not be UTF-8 (an upload's, say): shown with U+FFFD where
        # it is not, linked percent-encoded byte for byte; the folder's own path likewise.
        folder = quote(base, safe="/%")
        for name, is_dir in sorted(store.names(locator)):
            shown = name.decode("utf-8", "replace") + ("/" if is_dir else "")
            href = folder + quote(name)
            rows.append(f'<li><a href="{html.escape(href)}">{html.escape(shown)}</a></li>')
        return (f"<html><head><title>{title}</title></head><body><h1>{title}</h1><ul>" + "".join(rows)
                + "</ul></body></html>\n").encode()

    # -- files

    def _file(self, store, locator, st, method: bytes, fields, now: float) -> HttpAnswer:
        version = self._cache.get(locator)
        # Whether the cached version is still the file's: any write, truncate, utime or
        # chmod moves ctime (and so does every mtime change), a replace changes the inode;
        # size also catches a rewrite within one tick of the filesystem's timestamp clock.
        if (version is None or version.ctime_ns != st.st_ctime_ns or version.size != st.st_size
                or version.ino != st.st_ino):
            version = self._load(store, locator, st, now)
        if version is not None:
            # The common request, with no conditional field: the answer made with the version.
            if unconditional(fields):
                return version.answer
            return self._answer_file(version, None, method, fields, now)
        # A large file: stream it. Opened now so a file that vanished is still a 404, and
        # described by the file actually opened, so validators and bytes agree.
        opened = store.open(locator)
        if opened is None:
            return error(NOT_FOUND)
        fileobj, st = opened
        return self._answer_file(FileVersion(st, content_type(locator_name(locator)), None, now), fileobj, method,
                                 fields, now)

    def _answer_file(self, version: FileVersion, fileobj, method: bytes, fields, now: float) -> HttpAnswer:
        """Weigh the request's preconditions and Range against ``version``, then answer:
        from ``version.body``, or streaming ``fileobj`` (open on the same version)."""
        if unconditional(fields):
            verdict = Answer(OK, 0, version.size - 1)
        else:
            verdict = evaluate_request(method, conditional_fields(fields), version.representation, now)
        status = verdict.status
        if status != OK and status != PARTIAL_CONTENT:
            if fileobj is not None:
                fileobj.close()
            if status == NOT_MODIFIED:
                return HttpAnswer(NOT_MODIFIED, WHOLE, version.validator_fields)
            if status == REQUESTED_RANGE_NOT_SATISFIABLE:
                return error(status, ((b"Content-Range", b"bytes */%d" % version.size),))
            return error(status)
        partial = status == PARTIAL_CONTENT
        first, last = verdict.first, verdict.last
        if fileobj is None:
            if partial:
                return HttpAnswer(status, WHOLE, version.field_block(first, last, True), version.body[first : last + 1])
            return HttpAnswer(status, WHOLE, version.fields, version.body)
        return HttpAnswer(status, STREAM, stream=fileobj, pairs=tuple(version.field_pairs(first, last, partial)),
                          first=first, length=last - first + 1)

    def _load(self, store, locator, st, now: float) -> FileVersion | None:
        """Read a small file into the cache (None: too big, or it changed under us)."""
        if st.st_size > CACHE_FILE_MAX:
            return None
        body = store.read(locator, st, CACHE_FILE_MAX)
        if body is None:
            return None  # being rewritten right now: stream it this time
        old = self._cache.pop(locator, None)
        if old is not None:
            self._cached_bytes -= old.size
        if self._cached_bytes + len(body) > CACHE_TOTAL_MAX or len(self._cache) >= self.files_max:
            self._cache.clear()
            self._cached_bytes = 0
        entry = FileVersion(st, content_type(locator_name(locator)), body, now)
        self._cache[locator] = entry
        self._cached_bytes += len(body)
        return entry

    # -- uploads

    def _put(self, relative: bytes, fields, content, now: float) -> HttpAnswer:
        """Store the body at ``relative`` if that is inside the upload folder: 201 for a new
        file, 204 for a replaced one."""
        prefix = self.upload_prefix
        if not _is_inside(relative, prefix) or relative == prefix:
            return error(FORBIDDEN)
        if b"Content-Range" in fields:
            # RFC 9110 14.5: a partial PUT would be stored as if it were the whole file.
            return error(BAD_REQUEST)
        content.seek(0, 2)
        size = content.tell()
        if size > UPLOAD_MAX:
            return error(REQUEST_ENTITY_TOO_LARGE)
        content.seek(0)
        try:
            target, current = self.uploads.upload_target(relative[len(prefix) + 1 :])
        except NotAllowed:
            return error(FORBIDDEN)
        except (IsADirectoryError, NotADirectoryError, FileExistsError):
            # A folder where the file goes, or a file where a folder must be (PUT a/b after
            # PUT a; found by tests/fuzz): the request conflicts with what is there (RFC 9110 15.5.10).
            return error(CONFLICT)
        except OSError:
            return error(INTERNAL_SERVER_ERROR)
        if not unconditional(fields):
            # If-Match / If-None-Match: * / If-Unmodified-Since against the file there now
            # (none: If-Match fails, If-None-Match: * holds): a lost update becomes a 412.
            representation = FileVersion(current, b"", None, now).representation if current is not None else None
            if evaluate_request(b"PUT", conditional_fields(fields), representation, now).status != OK:
                return error(PRECONDITION_FAILED)
        try:
            stored = FileVersion(self.uploads.store(target, content.read()), b"", None, now)
        except OSError:
            return error(INTERNAL_SERVER_ERROR)
        if self.stats is not None:
            self.stats.uploads += 1
            self.stats.bytes_received += size
        # Stored as sent, so the new file's validators may go back (RFC 9110 9.3.4): a
        # client can make its next PUT conditional on them.
        validators = ((b"ETag", stored.etag), (b"Last-Modified", stored.last_modified))
        if current is not None:
            return HttpAnswer(NO_CONTENT, FINISH, headers=validators)
        return _whole(CREATED, b"201 Created\n", b"text/plain", validators)


def locator_name(locator) -> bytes:
    """The file name a locator ends in, for its content type."""
    name = locator if isinstance(locator, bytes) else str(locator).encode("utf-8", "surrogateescape")
    return name.rsplit(b"/", 1)[-1]


class FileStat(NamedTuple):
    """The parts of a stat the server reads, for a store with no real files."""

    st_mode: int
    st_size: int
    st_ino: int
    st_mtime_ns: int
    st_ctime_ns: int


class MemoryFiles:
    """An HttpFileStore over a dict of path ("cfg/a.cfg") -> bytes, for tests (and an
    in-memory lab). Folders are implied by the paths in it; each write is a new version."""

    def __init__(self, files: dict[str, bytes] | None = None, *, mtime_s: float = 0.0):
        self.files: dict[bytes, bytes] = {}
        self._stats: dict[bytes, FileStat] = {}
        self._writes = 0
        self.mtime_ns = int(mtime_s * NS_PER_S)
        for name, data in (files or {}).items():
            self.put(name.encode(), data)

    def put(self, name: bytes, data: bytes) -> FileStat:
        self._writes += 1
        self.files[name] = data
        self._stats[name] = FileStat(stat.S_IFREG | 0o644, len(data), self._writes, self.mtime_ns, self._writes)
        return self._stats[name]

    def _is_folder(self, name: bytes) -> bool:
        return name == b"" or any(other.startswith(name + b"/") for other in self.files)

    def find(self, relative: bytes):
        if relative in self.files:
            return relative, self._stats[relative]
        if self._is_folder(relative):
            return relative, FileStat(stat.S_IFDIR | 0o755, 0, 0, self.mtime_ns, 0)
        return None

    def read(self, name: bytes, st, limit: int) -> bytes | None:
        data = self.files.get(name)
        return data if data is not None and self._stats[name] == st and len(data) <= limit else None

    def open(self, name: bytes):
        return (_Reader(self.files[name]), self._stats[name]) if name in self.files else None

    def names(self, folder: bytes) -> list[tuple[bytes, bool]]:
        prefix = folder + b"/" if folder else b""
        entries = {}
        for name in self.files:
            if name.startswith(prefix):
                first, _, rest = name[len(prefix):].partition(b"/")
                entries[first] = entries.get(first, False) or bool(rest)
        return sorted(entries.items())

    def upload_target(self, relative: bytes):
        if self._is_folder(relative):
            raise IsADirectoryError(relative.decode("utf-8", "surrogateescape"))
        return relative, self._stats.get(relative)

    def store(self, target: bytes, data: bytes):
        return self.put(target, data)


class _Reader:
    """Bytes read like an open file (what a stream answer carries)."""

    def __init__(self, data: bytes):
        self.data, self.position = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.position + size
        chunk, self.position = self.data[self.position : end], min(end, len(self.data))
        return chunk

    def seek(self, position: int, whence: int = 0) -> None:
        self.position = position if whence == 0 else len(self.data) + position

    def close(self) -> None:
        pass

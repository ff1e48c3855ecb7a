"""The provisioning server's files on disk and its one twisted.web resource.

``DiskFiles`` is the ``HttpFileStore`` (labsim.services.http_files) over a real folder:
paths confined to it (one lstat per component; a full realpath only when a symlink is on
the way), regular small files read whole, large ones opened to stream, uploads written
to a temporary name and renamed. ``StaticRoot`` is the leaf resource: it hands each
request to the I/O-free ``StaticFiles`` and puts the answer on the connection (one write
for a whole response, FileSender for a stream), delaying or replacing answers when the
scenario's faults say so. The site around it is ``labsim.services.http_web``.
"""

from __future__ import annotations

import os
import secrets
import stat
import time

from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import Resource

from labsim.services.file_store import NotAllowed
from labsim.services.http import HttpAuthenticator, HttpServerConfig, HttpStats
from labsim.services.http_files import FINISH, PARTIAL_CONTENT, STREAM, WHOLE, HttpAnswer, StaticFiles, error


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


class DiskFiles:
    """An HttpFileStore over the real folder ``root`` (bytes, already a realpath).
    Locators are real paths."""

    def __init__(self, root: bytes):
        self.root = root

    def find(self, relative: bytes):
        return resolve_under(self.root, relative)

    def read(self, real: bytes, st, limit: int) -> bytes | None:
        try:
            with open(real, "rb") as f:
                body = f.read(limit + 1)
                after = os.fstat(f.fileno())
        except OSError:
            return None
        if len(body) != st.st_size or after.st_ctime_ns != st.st_ctime_ns or after.st_ino != st.st_ino:
            return None
        return body

    def open(self, real: bytes):
        try:
            fileobj = open(real, "rb")  # noqa: SIM115 - closed by whoever streams it
        except OSError:
            return None
        try:
            return fileobj, os.fstat(fileobj.fileno())
        except OSError:
            fileobj.close()
            return None

    def names(self, real: bytes) -> list[tuple[bytes, bool]]:
        return [(name, os.path.isdir(os.path.join(real, name))) for name in os.listdir(real)]

    def upload_target(self, relative: bytes):
        target = self.root + b"/" + relative
        folder = os.path.dirname(target)
        os.makedirs(folder, exist_ok=True)
        # A symlink in the way must not lead the write out of the upload folder.
        if not _is_inside(os.path.realpath(folder), self.root):
            raise NotAllowed("outside the upload folder")
        if os.path.isdir(target):
            raise IsADirectoryError(target)
        return target, os.stat(target) if os.path.lexists(target) else None

    def store(self, target: bytes, data: bytes):
        temporary = target + b".part-" + secrets.token_hex(4).encode()
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, target)
        return os.stat(target)


class _Slice:
    """The ``length`` bytes of ``fileobj`` from its current position, read like a file:
    what FileSender streams for a 206."""

    def __init__(self, fileobj, length: int):
        self.fileobj, self.left = fileobj, length

    def read(self, size: int) -> bytes:
        data = self.fileobj.read(min(size, self.left))
        self.left -= len(data)
        return data


def site_files(config: HttpServerConfig, authenticator: HttpAuthenticator, *, store=DiskFiles) -> StaticFiles:
    """The site's ``StaticFiles`` for ``config``: the root through ``store`` (a DiskFiles
    class; the in-memory lab's remembers what it found), uploads on disk."""
    root = os.path.realpath(os.fsencode(config.root))
    uploads = prefix = None
    if config.uploads:
        upload_root = os.path.realpath(os.path.join(root, os.fsencode(config.upload_dir)))
        if not _is_inside(upload_root, root) or upload_root == root:
            raise ValueError(f"upload_dir {config.upload_dir!r} must be a folder inside the HTTP root")
        os.makedirs(upload_root, exist_ok=True)
        prefix = upload_root[len(root) + 1 :]
        if config.upload_root is not None:
            os.makedirs(config.upload_root, exist_ok=True)
            upload_root = os.path.realpath(os.fsencode(config.upload_root))
        uploads = DiskFiles(upload_root)
    return StaticFiles(store(root), listing=config.directory_listing, auth=authenticator if config.auth else None,
                       uploads=uploads, upload_prefix=prefix, uploads_elsewhere=config.upload_root is not None)


class StaticRoot(Resource):
    """Answers every request itself (a leaf), so twisted.web never walks a tree."""

    isLeaf = True

    def __init__(self, config: HttpServerConfig, authenticator: HttpAuthenticator):
        super().__init__()
        self.root = os.path.realpath(os.fsencode(config.root))
        self.files = site_files(config, authenticator)

    listing = property(lambda self: self.files.listing, lambda self, on: setattr(self.files, "listing", on))
    stats: HttpStats | None = property(lambda self: self.files.stats,
                                       lambda self, stats: setattr(self.files, "stats", stats))

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
        answer = self.files.answer(request.method, request.path, request.uri, request.requestHeaders._rawHeaders,
                                   request.content, time.time(), request.clientproto)
        return self._send(request, answer)

    def _error(self, request, code: int):
        return self._send(request, error(code))

    def _send(self, request, answer: HttpAnswer):
        # Written here rather than returned: twisted.web logs a line for a HEAD whose
        # render returns a body; the body of a HEAD is dropped when written.
        if answer.status != 200:
            request.setResponseCode(answer.status)
        for name, value in answer.headers:
            request.setHeader(name, value)
        how = answer.how
        if how == WHOLE:
            request.send_whole(answer.fields, answer.body)
        elif how == FINISH:
            request.finish()
        elif how == STREAM:
            self._stream(request, answer)
        return server.NOT_DONE_YET

    def _stream(self, request, answer: HttpAnswer) -> None:
        fileobj = answer.stream
        for name, value in answer.pairs:
            request.setHeader(name, value)
        if request.method == b"HEAD":
            fileobj.close()
            request.write(b"")
            request.finish()
            return
        source = fileobj
        if answer.status == PARTIAL_CONTENT:
            fileobj.seek(answer.first)
            source = _Slice(fileobj, answer.length)
        FileSender().beginFileTransfer(source, request).addBoth(self._streamed, request, fileobj)

    @staticmethod
    def _streamed(result, request, fileobj) -> None:
        fileobj.close()
        if not isinstance(result, Failure):
            request.finish()
        else:
            # The connection stopped us (client hang-up, server stop): the request dies with
            # it and must not be finished, but the partial download still goes in the log.
            request.site.log(request)

"""FTP in the in-memory lab: a phone's whole FTP exchange (log in, one RETR or STOR,
quit) answered at once under the FTP server's own rules — its pyftpdlib authorizer as
``services.ftp.build_authorizer`` makes it (users, anonymous, read-only except
``upload_dir``), the provisioning root, uploads stored on disk where a run on sockets
stores them — and the phones' client's reading of the outcome (530 ``denied``, 550
``not_found``). What only the protocol shows (PASV, reply pacing) stays with sockets.

Stream faults as the server applies them: ``down`` refuses the connection; delays hold
each of the exchange's answers (greeting, USER, PASS, TYPE, PASV, the transfer);
``bandwidth_kbps`` paces the file. A failed login answers after the server's delay.
"""

from __future__ import annotations

import os
import posixpath

from pyftpdlib.authorizers import AuthenticationFailed

from labsim.phones.events import ANONYMOUS, FetchResult
from labsim.services.ftp import FtpServerConfig, build_authorizer, new_stats, upload_real

ANSWERS_PER_EXCHANGE = 6  # greeting, USER, PASS, TYPE I, PASV, RETR/STOR


class VirtualFtp:
    """One FTP service of the in-memory lab (its rules and counters)."""

    def __init__(self, spec, root: str, upload_root: str | None, link=None):
        self.config = FtpServerConfig(root=root, users=dict(spec.users), anonymous=spec.anonymous,
                                      uploads=spec.uploads, upload_dir=spec.upload_dir, upload_root=upload_root)
        self.root = os.path.realpath(root)
        self.authorizer = build_authorizer(self.config)
        self.upload_virtual = "/" + self.config.upload_dir.strip("/")
        self.upload_folder = upload_real(self.config)  # where STOR writes (created), None: uploads off
        self.link = link  # a labsim.faults.FaultyLink for "ftp", or None
        self.stats = new_stats()

    def exchange(self, path: str, credentials, body: bytes | None = None) -> tuple[FetchResult, float]:
        """(result, seconds it took) of a RETR of ``path`` (or, with ``body``, a STOR) as
        the phones' FTP client makes it."""
        link = self.link
        if link is not None and link.refuses():
            return FetchResult("error", detail="FTP: connection refused"), 0.0
        if not path or path.endswith("/"):
            return FetchResult("error", detail=f"FTP: {path!r} names no file"), 0.0
        took = sum(link.answer_delay() for _ in range(ANSWERS_PER_EXCHANGE)) if link is not None else 0.0
        self.stats["sessions"] += 1
        user, password = (credentials.user, credentials.password) if credentials else ANONYMOUS
        try:
            self.authorizer.validate_authentication(user, password, None)
        except AuthenticationFailed as exc:
            self.stats["logins_failed"] += 1
            return FetchResult("denied", detail=f"FTP: 530 {exc}"), took + self.config.auth_failed_delay_s
        self.stats["logins_ok"] += 1
        real = self._real(path)
        if body is None:
            return self._retr(user, real, took)
        return self._stor(user, real, body, took)

    def _real(self, path: str) -> str | None:
        """The file ``path`` names (relative to the login folder), as the server maps it;
        None when it leads out of the root (or out of the upload folder)."""
        virtual = posixpath.normpath("/" + path)
        if self.upload_folder is not None and (virtual == self.upload_virtual
                                               or virtual.startswith(self.upload_virtual + "/")):
            base, rest = self.upload_folder, virtual[len(self.upload_virtual):]
        else:
            base, rest = self.root, virtual
        real = os.path.realpath(os.path.join(base, rest.lstrip("/")))
        return real if real == base or real.startswith(base + os.sep) else None

    def _retr(self, user: str, real: str | None, took: float) -> tuple[FetchResult, float]:
        if real is None or not os.path.isfile(real) or not self.authorizer.has_perm(user, "r", real):
            return FetchResult("not_found", detail="FTP: 550 No such file or directory."), took
        with open(real, "rb") as handle:
            data = handle.read()
        self.stats["files_sent"] += 1
        self.stats["bytes_sent"] += len(data)
        return FetchResult("ok", data), took + self._paced(len(data), "out")

    def _stor(self, user: str, real: str | None, body: bytes, took: float) -> tuple[FetchResult, float]:
        if real is None or os.path.isdir(real) or not self.authorizer.has_perm(user, "w", real):
            return FetchResult("not_found", detail="FTP: 550 Not enough privileges."), took
        os.makedirs(os.path.dirname(real), exist_ok=True)
        with open(real, "wb") as handle:
            handle.write(body)
        self.stats["files_received"] += 1
        self.stats["bytes_received"] += len(body)
        return FetchResult("ok"), took + self._paced(len(body), "in")

    def _paced(self, size: int, direction: str) -> float:
        """Seconds a transfer of ``size`` bytes takes under a ``bandwidth_kbps`` fault."""
        kbps = self.link.bandwidth_kbps(direction) if self.link is not None else None
        return size * 8 / (kbps * 1000) if kbps else 0.0

"""FTP in the in-memory lab: a phone's whole FTP exchange (log in, one RETR or STOR,
quit) answered at once under the FTP server's own rules — its pyftpdlib authorizer as
``services.ftp.build_authorizer`` makes it (users, anonymous, read-only except
``upload_dir``), the provisioning root, uploads stored on disk where a run on sockets
stores them — and the phones' client's reading of the outcome (530 ``denied``, 550
``not_found``). What only the protocol shows (PASV, reply pacing) stays with sockets.

Stream faults where the server applies them (``services.ftp``): ``down`` refuses the
connection (no session); a delay (``delay_s``, ``jitter_s``, ``slow_s``) holds each
command the phones' client sends before the server acts on it, drawn per command as the
server draws it. That client (Twisted's ``FTPClient``, ``transport.ftp_fetch``) waits for
the greeting (not held), then sends USER, PASS, TYPE I, PASV and RETR (or STOR), each
after the answer to the one before, and QUIT once it has its result: the phone waits for
five held commands (two and the server's failed-login delay when PASS is refused), and
the QUIT's draw is made and counted but holds nothing the phone waits for.
``bandwidth_kbps`` paces the file (``size / rate``). Measured against pyftpdlib under a
0.2 s delay (tests/e2e/test_virtual_ftp.py): a download 1.0 s on both (plus loopback
round trips on sockets, 1 ms in memory), a refused login 0.9 s, and the same count of
delayed commands (sockets: minus the QUITs still unread when the run ended); a 7.4 KB
file under ``bandwidth_kbps: 64`` takes its size / rate on both (0.93 s; on sockets up to
~50 ms more for the round trips and the pacer's chunks), with the same ``throttled`` count.
"""

from __future__ import annotations

import os
import posixpath

from pyftpdlib.authorizers import AuthenticationFailed

from labsim.phones.events import ANONYMOUS, FetchResult
from labsim.services.ftp import FtpServerConfig, build_authorizer, new_stats, upload_real

LOGIN_COMMANDS = 2  # USER, PASS
TRANSFER_COMMANDS = 3  # TYPE I, PASV, RETR or STOR
AFTER_RESULT_COMMANDS = 1  # QUIT


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
        if not path or path.endswith("/"):  # the client gives up before it connects
            return FetchResult("error", detail=f"FTP: {path!r} names no file"), 0.0
        link = self.link
        if link is not None and link.refuses():
            return FetchResult("error", detail="FTP: connection refused"), 0.0
        self.stats["sessions"] += 1
        took = self._held(LOGIN_COMMANDS)
        user, password = (credentials.user, credentials.password) if credentials else ANONYMOUS
        try:
            self.authorizer.validate_authentication(user, password, None)
        except AuthenticationFailed as exc:
            self.stats["logins_failed"] += 1
            self._held(AFTER_RESULT_COMMANDS)
            return FetchResult("denied", detail=f"FTP: 530 {exc}"), took + self.config.auth_failed_delay_s
        self.stats["logins_ok"] += 1
        took += self._held(TRANSFER_COMMANDS)
        real = self._real(path)
        answer = self._retr(user, real, took) if body is None else self._stor(user, real, body, took)
        self._held(AFTER_RESULT_COMMANDS)
        return answer

    def _held(self, commands: int) -> float:
        """Seconds the server holds ``commands`` commands, one after the other, under the
        delay faults (each drawn and counted as the server does)."""
        link = self.link
        if link is None:
            return 0.0
        return sum(link.answer_delay() for _ in range(commands))

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
        if not kbps:
            return 0.0
        if size:
            self.link.count("throttled")  # as the server's paced data connection counts it
        return size * 8 / (kbps * 1000)

"""The FTP provisioning server: pyftpdlib, driven by the Twisted reactor.

pyftpdlib has its own event loop. Rather than run it in a thread (the GIL halves its
throughput, DESIGN.md) or a second process, its epoll object is registered with the
reactor as one file descriptor: an epoll fd is readable whenever any socket in it has an
event, so ``doRead`` runs one non-blocking pass of pyftpdlib's loop. pyftpdlib's own
timers (idle timeouts, the delayed answer to a failed login) live in its scheduler, which
the pass also runs; a reactor timer wakes us for the soonest of them.

What the server does, and why:

- serves the provisioning root, read-only: every user, anonymous included, may only
  change directory, list and download (pyftpdlib's ``elr``);
- with ``uploads`` on, the ``upload_dir`` folder (created under the root) also accepts
  STOR/APPE/MKD: phones upload logs and backups; nothing else becomes writable;
- paths are pyftpdlib's virtual paths under the root: ``..`` cannot climb above ``/``,
  and a symlink whose real target is outside the root is refused (550);
- passive data ports from a fixed range, on the control connection's own address
  (bound to loopback, so data connections stay on loopback too);
- no per-command logging: pyftpdlib's log hooks only update counters.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.ioloop import Epoll
from pyftpdlib.servers import FTPServer
from twisted.internet import defer
from twisted.internet.interfaces import IReadDescriptor
from zope.interface import implementer

READ_ONLY = "elr"  # CWD, LIST/NLST/SIZE/MDTM..., RETR
UPLOAD = "elrawm"  # and APPE, STOR, MKD; no delete, rename or chmod
BACKSTOP_S = 1.0  # the longest the reactor sleeps without giving pyftpdlib a pass


@dataclass
class FtpServerConfig:
    root: str
    users: dict[str, str] = field(default_factory=dict)  # name -> password
    anonymous: bool = False
    uploads: bool = False
    upload_dir: str = "uploads"
    passive_ports: tuple[int, int] | None = None  # inclusive range; None: any free port
    # pyftpdlib answers a bad password only after this delay (its default: 3 s; vsftpd's
    # delay_failed_login: 1 s). Shorter here so a lab's denied phones fail promptly.
    auth_failed_delay_s: float = 0.5
    idle_timeout_s: float = 300.0
    max_connections: int = 4096
    banner: str = "labsim FTP server ready."


def new_stats() -> dict:
    return {"sessions": 0, "logins_ok": 0, "logins_failed": 0, "files_sent": 0, "bytes_sent": 0,
            "files_received": 0, "bytes_received": 0, "transfers_incomplete": 0, "loop_errors": 0}


class _CountingHandler(FTPHandler):
    """pyftpdlib's handler with its logging turned into counters (``stats`` is set per
    server on a subclass)."""

    stats: dict = {}

    def on_connect(self):
        self.stats["sessions"] += 1

    def on_login(self, username):
        self.stats["logins_ok"] += 1

    def on_login_failed(self, username, password):
        self.stats["logins_failed"] += 1

    def log_transfer(self, cmd, filename, receive, completed, elapsed, bytes):
        if not completed:
            self.stats["transfers_incomplete"] += 1
        elif receive:
            self.stats["files_received"] += 1
            self.stats["bytes_received"] += bytes
        else:
            self.stats["files_sent"] += 1
            self.stats["bytes_sent"] += bytes

    def log(self, msg, logfun=None):
        pass

    def log_cmd(self, cmd, arg, respcode, respstr):
        pass


def build_authorizer(config: FtpServerConfig) -> DummyAuthorizer:
    root = os.path.realpath(config.root)
    authorizer = DummyAuthorizer()
    upload_dir = None
    if config.uploads:
        upload_dir = os.path.join(root, config.upload_dir)
        if os.path.commonpath([os.path.realpath(upload_dir), root]) != root:
            raise ValueError(f"upload_dir {config.upload_dir!r} is outside the FTP root")
        os.makedirs(upload_dir, exist_ok=True)
    # pyftpdlib lets "anonymous" in with any password, so listing it as a user means anonymous access.
    names = dict.fromkeys(list(config.users) + (["anonymous"] if config.anonymous else []))
    for name in names:
        if name == "anonymous":
            authorizer.add_anonymous(root, perm=READ_ONLY)
        else:
            authorizer.add_user(name, config.users[name], root, perm=READ_ONLY)
        if upload_dir is not None:
            with warnings.catch_warnings():  # pyftpdlib warns about a writable anonymous: intended here
                warnings.simplefilter("ignore", RuntimeWarning)
                authorizer.override_perm(name, upload_dir, UPLOAD, recursive=True)
    return authorizer


@implementer(IReadDescriptor)
class _ReactorDrivenLoop:
    """pyftpdlib's IOLoop as one reader in the reactor."""

    def __init__(self, reactor, ioloop: Epoll, stats: dict):
        self.reactor = reactor
        self.ioloop = ioloop
        self.stats = stats
        self._timer = None
        self._closed = False

    def fileno(self) -> int:
        return -1 if self._closed else self.ioloop.fileno()

    def logPrefix(self) -> str:
        return "labsim-ftp"

    def doRead(self):
        self.run_pass()

    def connectionLost(self, reason):
        pass  # only happens on stop(), which closes the loop itself

    def run_pass(self) -> None:
        """One non-blocking pass: ready sockets, then due timers; then sleep until the next."""
        if self._closed:
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        # The two halves of pyftpdlib's IOLoop.loop(blocking=False), called directly:
        # loop() would also set up logging to stderr on its first call.
        soonest = None
        try:
            if self.ioloop.socket_map:
                self.ioloop.poll(0)
            soonest = self.ioloop.sched.poll()  # runs what is due; seconds to the next, or None
        except Exception:  # a pyftpdlib bug must not take the reader out of the reactor
            self.stats["loop_errors"] += 1
            soonest = BACKSTOP_S
        if soonest is not None:
            self._timer = self.reactor.callLater(min(max(soonest, 0.0), BACKSTOP_S), self.run_pass)

    def close(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self.reactor.removeReader(self)
        self.ioloop.close()  # closes every session, the listener and the epoll fd
        self._closed = True


class FtpServerHandle:
    def __init__(self, server: FTPServer, loop: _ReactorDrivenLoop, stats: dict):
        self._server = server
        self._loop = loop
        self.stats = stats
        self.port = server.address[1]

    def stop(self) -> defer.Deferred:
        """Close the listener and every session (synchronously; the Deferred has fired)."""
        if not self._loop._closed:
            self._loop.close()
        return defer.succeed(None)


def start_ftp_server(reactor, config: FtpServerConfig, host: str = "127.0.0.1", port: int = 2121) -> FtpServerHandle:
    """Serve ``config.root`` over FTP on ``host:port`` (0: any free port; see ``.port``)."""
    if not os.path.isdir(config.root):
        raise ValueError(f"FTP root {config.root!r} is not a directory")
    stats = new_stats()
    handler = type("LabFtpHandler", (_CountingHandler,), {
        "stats": stats,
        "authorizer": build_authorizer(config),
        "banner": config.banner,
        "passive_ports": (list(range(config.passive_ports[0], config.passive_ports[1] + 1))
                          if config.passive_ports else None),
        "auth_failed_timeout": config.auth_failed_delay_s,
        "timeout": config.idle_timeout_s,
    })
    ioloop = Epoll()
    try:
        server = FTPServer((host, port), handler, ioloop=ioloop, backlog=1024)
    except Exception:
        ioloop.close()
        raise
    server.max_cons = config.max_connections
    loop = _ReactorDrivenLoop(reactor, ioloop, stats)
    reactor.addReader(loop)
    return FtpServerHandle(server, loop, stats)

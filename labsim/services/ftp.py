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

Faults (labsim.faults), attached with ``FtpServerHandle.link`` (None, the default, costs
one check per command and per data chunk). FTP runs over TCP, so only stream faults
apply:

- ``down``: a new control connection is closed at once, before the 220 greeting (the
  phone's FTP client sees the connection end: its error path). Sessions already open
  go on. Closing rather than refusing keeps the listening socket, so removing the fault
  needs no re-bind;
- ``slow_s`` (and ``delay_s``, ``jitter_s``): each command is acted on, and so answered,
  that much later, in order: logins, PASV and the start of every transfer are late; an
  upload's data connection whose bytes arrive while its STOR is held waits for it
  (pyftpdlib alone would close it, and the upload hang until the client gave up);
- ``bandwidth_kbps``: the data connection is paced (``labsim.faults.Pacer``) on the
  reactor's clock: ``out`` caps downloads and listings, ``in`` uploads. pyftpdlib's own
  ``ThrottledDTPHandler`` does run under this reactor driving (its sleeps are scheduler
  calls), but is not used: its limits are fixed per class while a fault comes and goes
  with the timeline, and it only sleeps once a whole second's worth of bytes has passed,
  so a configuration file smaller than that would never be slowed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import DTPHandler, FTPHandler
from pyftpdlib.ioloop import Epoll
from pyftpdlib.servers import FTPServer
from twisted.internet import defer
from twisted.internet.interfaces import IReadDescriptor
from zope.interface import implementer

from labsim.faults import Pacer

READ_ONLY = "elr"  # CWD, LIST/NLST/SIZE/MDTM..., RETR
UPLOAD = "elrawm"  # and APPE, STOR, MKD; no delete, rename or chmod
COMMAND_MAX = 2048  # bytes in one command line (pyftpdlib's own limit)
BACKSTOP_S = 1.0  # the longest the reactor sleeps without giving pyftpdlib a pass


@dataclass
class FtpServerConfig:
    root: str
    users: dict[str, str] = field(default_factory=dict)  # name -> password
    anonymous: bool = False
    uploads: bool = False
    upload_dir: str = "uploads"
    # Where upload_dir's files really live, when not inside root (labsim serve/run serve a
    # temporary copy of the provisioning folder; uploads must outlive it). None: root/upload_dir.
    upload_root: str | None = None
    passive_ports: tuple[int, int] | None = None  # inclusive range; None: any free port
    # pyftpdlib answers a bad password only after this delay (its default: 3 s; vsftpd's
    # delay_failed_login: 1 s). Shorter here so a lab's denied phones fail promptly.
    auth_failed_delay_s: float = 0.5
    idle_timeout_s: float = 60.0  # a session with no command for this long is closed (421)
    max_connections: int = 4096
    # Of those, at most this many from one client address (then 421), so one client
    # cannot lock the others out. 0: no per-address limit.
    max_connections_per_address: int = 256
    banner: str = "labsim FTP server ready."


def new_stats() -> dict:
    return {"sessions": 0, "logins_ok": 0, "logins_failed": 0, "files_sent": 0, "bytes_sent": 0,
            "files_received": 0, "bytes_received": 0, "transfers_incomplete": 0, "loop_errors": 0}


class _CountingHandler(FTPHandler):
    """pyftpdlib's handler with its logging turned into counters (``stats`` is set per
    server on a subclass), MLSD's UNIX.mode fact on by default, and one reply per
    too-long command."""

    stats: dict = {}
    # An observer of logins and transfers (labsim serve's live log), set per server on
    # the subclass; called as on_event(kind, client, detail). None: no work.
    on_event = None
    _skipping_line = False  # the rest of a command line already answered "too long"

    def __init__(self, conn, server, ioloop=None):
        super().__init__(conn, server, ioloop=ioloop)
        # lftp's mirror (and others) create files with the UNIX.mode MLSD gives, and with
        # none of it, with mode 000. RFC 3659 lets the server choose its default facts.
        if "unix.mode" in self._available_facts and "unix.mode" not in self._current_facts:
            self._current_facts.append("unix.mode")

    def collect_incoming_data(self, data):
        # pyftpdlib answers "500 Command too long." each time its buffer passes 2 KiB, then
        # treats the rest of the line as a new command and answers that too: a client one
        # reply behind for the rest of its session. One answer, then the line is dropped.
        if self._skipping_line:
            return
        if self._in_buffer_len + len(data) > COMMAND_MAX:
            self.respond_w_warning("500 Command too long.")
            self._in_buffer, self._in_buffer_len = [], 0
            self._skipping_line = True
            return
        super().collect_incoming_data(data)

    def found_terminator(self):
        if self._skipping_line:
            self._skipping_line = False
            self._in_buffer, self._in_buffer_len = [], 0
            return
        if any(b"\x00" in part for part in self._in_buffer):
            # A NUL cannot be in a path (pyftpdlib's os calls raised ValueError on it, which
            # ended the session with a traceback): RFC 959's "bad parameters", and go on.
            self._in_buffer, self._in_buffer_len = [], 0
            self.respond("501 Syntax error in parameters or arguments (NUL).")
            return
        super().found_terminator()

    def on_connect(self):
        self.stats["sessions"] += 1

    def on_login(self, username):
        self.stats["logins_ok"] += 1
        self._tell("login", {"user": username, "ok": True})

    def on_login_failed(self, username, password):
        self.stats["logins_failed"] += 1
        self._tell("login", {"user": username, "ok": False})

    def log_transfer(self, cmd, filename, receive, completed, elapsed, bytes):
        if not completed:
            self.stats["transfers_incomplete"] += 1
        elif receive:
            self.stats["files_received"] += 1
            self.stats["bytes_received"] += bytes
        else:
            self.stats["files_sent"] += 1
            self.stats["bytes_sent"] += bytes
        self._tell("transfer", {"command": cmd, "path": filename, "bytes": bytes, "completed": completed,
                                "seconds": elapsed})

    def _tell(self, kind: str, detail: dict) -> None:
        observer = type(self).on_event
        if observer is not None:
            observer(kind, (self.remote_ip, self.remote_port), detail)

    def log(self, msg, logfun=None):
        pass

    def log_cmd(self, cmd, arg, respcode, respstr):
        pass


class _PacedDTPHandler(DTPHandler):
    """A data connection that a bandwidth fault paces (see the module's docstring)."""

    _pacer: Pacer | None = None
    _wake = None  # the reactor timer that puts the channel back in the loop

    def _cap(self, direction: str) -> float | None:
        link = self.cmd_channel.fault_link
        return None if link is None else link.bandwidth_kbps(direction)

    def use_sendfile(self):
        if self._cap("out"):
            return False  # sendfile() bypasses send(): nothing could pace it
        return super().use_sendfile()

    def send(self, data):
        kbps = self._cap("out")
        if not kbps:
            return super().send(data)
        chunk = data[: Pacer.chunk_size(kbps)]
        wait = self._paced().wait(self.cmd_channel.clock.seconds(), len(chunk), kbps)
        if wait > 0:  # the line is still busy: out of the loop until it is free
            self._sleep(wait, self.ioloop.WRITE)
            return 0
        return super().send(chunk)

    def recv(self, buffer_size):
        kbps = self._cap("in")
        if not kbps:
            return super().recv(buffer_size)
        chunk = super().recv(min(buffer_size, Pacer.chunk_size(kbps)))
        # Received bytes have crossed the line already: stop reading for their time on it.
        wait = self._paced().after(self.cmd_channel.clock.seconds(), len(chunk), kbps)
        if chunk and wait > 0:
            self._sleep(wait, self.ioloop.READ)
        return chunk

    def readable(self):
        # pyftpdlib closes a data channel that has bytes before its transfer was asked for
        # (a client gone, it assumes; else the loop would spin on it). Under a delay fault
        # the STOR that asks for it is held while the client has sent the file already:
        # every upload would hang until the client's time limit. Out of the loop's reading
        # instead, until the STOR, acted on, enables it (``enable_receiving``).
        if not self.receive and not self._initialized and self.cmd_channel._held:
            self.modify_ioloop_events(0)
            return False
        return super().readable()

    def _paced(self) -> Pacer:
        if self._pacer is None:
            self._pacer = Pacer()
            self.cmd_channel.fault_link.count("throttled")  # transfers paced
        return self._pacer

    def _sleep(self, seconds: float, events) -> None:
        self.del_channel()
        if self._wake is None:
            self._wake = self.cmd_channel.clock.callLater(seconds, self._wake_up, events)

    def _wake_up(self, events) -> None:
        self._wake = None
        if not self._closed:
            # Registered again, the socket makes pyftpdlib's epoll fd readable: the
            # reactor then runs a loop pass, which writes (or reads) the next chunk.
            self.add_channel(events=events)

    def close(self):
        if self._wake is not None and self._wake.active():
            self._wake.cancel()
        self._wake = None
        super().close()


class _FaultAwareHandler(_CountingHandler):
    """The control connection with the fault hooks (``fault_link`` and ``clock`` are set
    per server on a subclass)."""

    fault_link = None  # a labsim.faults.FaultyLink, or None
    clock = None  # IReactorTime: delays and pacing
    dtp_handler = _PacedDTPHandler
    _held: list = ()  # commands a delay fault holds back: (due, line, cmd, arg)
    _release = None  # the timer that acts on the first held command
    server_loop = None  # the server's _ReactorDrivenLoop (start_ftp_server sets it)

    def handle(self):
        link = self.fault_link
        if link is not None and link.refuses():  # down: closed at once, no greeting
            self.close()
            return
        super().handle()

    def pre_process_command(self, line, cmd, arg):
        link = self.fault_link
        if link is not None:
            delay = link.answer_delay()
            if delay > 0 or self._held:
                self._hold(delay, line, cmd, arg)
                return
        super().pre_process_command(line, cmd, arg)

    def _hold(self, delay: float, line, cmd, arg) -> None:
        now = self.clock.seconds()
        if not self._held:
            self._held = []
        due = max(now + delay, self._held[-1][0]) if self._held else now + delay
        self._held.append((due, line, cmd, arg))
        if self._release is None:
            self._release = self.clock.callLater(due - now, self._act_on_held)

    def _act_on_held(self) -> None:
        self._release = None
        now = self.clock.seconds()
        while self._held and self._held[0][0] <= now and not self._closed:
            _, line, cmd, arg = self._held.pop(0)
            try:
                super().pre_process_command(line, cmd, arg)
            except UnicodeEncodeError:  # as found_terminator answers it
                self.respond("501 can't decode path")
            except Exception:  # outside pyftpdlib's loop: its error handling, by hand
                self.handle_error()
        if self._held and not self._closed:
            self._release = self.clock.callLater(self._held[0][0] - now, self._act_on_held)
        if self.server_loop is not None:
            # Acted on outside a pass of pyftpdlib's loop: a timer that set (the delayed
            # answer to a failed login) would otherwise wait for the loop's next pass,
            # up to BACKSTOP_S later (a 530 measured 0.3 s late under a 0.2 s delay).
            self.server_loop.run_pass()

    def close(self):
        if self._release is not None and self._release.active():
            self._release.cancel()
        self._release = None
        super().close()


class _LabFilesystem(AbstractedFS):
    """pyftpdlib's view of the root, with the upload folder's virtual path (``/uploads``)
    mapped to where uploads are really stored (``upload_real``), which need not be inside
    the root. Set per server on a subclass; None: no mapping."""

    upload_virtual = "/uploads"
    upload_real: str | None = None

    def _in_uploads(self, virtual: str) -> bool:
        up = self.upload_virtual
        return self.upload_real is not None and (virtual == up or virtual.startswith(up + "/"))

    def ftp2fs(self, ftppath):
        virtual = self.ftpnorm(ftppath)
        if self._in_uploads(virtual):
            return os.path.normpath(os.path.join(self.upload_real, virtual[len(self.upload_virtual):].lstrip("/")))
        return super().ftp2fs(ftppath)

    def _below_uploads(self, path: str) -> bool:
        real = self.upload_real
        return real is not None and (path == real or path.startswith(real + os.sep))

    def fs2ftp(self, fspath):
        path = os.path.normpath(fspath)
        if self._below_uploads(path):
            if not self.validpath(path):
                return "/"
            return self.upload_virtual + path[len(self.upload_real):].replace(os.sep, "/")
        return super().fs2ftp(fspath)

    def validpath(self, path):
        if self._below_uploads(os.path.normpath(path)):
            return self._below_uploads(self.realpath(path))  # a symlink must not lead out
        return super().validpath(path)

    # Listings say nothing about what lies outside: a symlink that leads out of the root
    # is left out of LIST, NLST and MLSD (its target's size and time would show), and a
    # link that stays inside shows where it leads as a path on this server, never the
    # real filesystem's (which would name the folder the lab serves from).
    def listdir(self, path):
        return [name for name in super().listdir(path) if self._may_show(os.path.join(path, name))]

    def listdirinfo(self, path):
        return [name for name in super().listdirinfo(path) if self._may_show(os.path.join(path, name))]

    def _may_show(self, path: str) -> bool:
        return not os.path.islink(path) or self.validpath(path)

    def readlink(self, path):
        return self.fs2ftp(self.realpath(path))

    def format_mlsx(self, basedir, listing, perms, facts, ignore_err=True):
        # pyftpdlib writes UNIX.mode with Python's "0o640"; clients read octal digits
        # ("0640", as other servers send), and lftp's mirror made every file mode 000.
        for line in super().format_mlsx(basedir, listing, perms, facts, ignore_err):
            fact_text, space, name = line.partition(b" ")
            yield fact_text.replace(b"unix.mode=0o", b"unix.mode=0") + space + name


def build_authorizer(config: FtpServerConfig) -> DummyAuthorizer:
    root = os.path.realpath(config.root)
    authorizer = DummyAuthorizer()
    upload_dir = upload_real(config)
    # pyftpdlib lets "anonymous" in with any password, so listing it as a user means anonymous access.
    names = dict.fromkeys(list(config.users) + (["anonymous"] if config.anonymous else []))
    for name in names:
        if name == "anonymous":
            authorizer.add_anonymous(root, perm=READ_ONLY)
        else:
            authorizer.add_user(name, config.users[name], root, perm=READ_ONLY)
        if upload_dir is not None:
            # override_perm refuses a folder outside the user's home, which the upload
            # folder may be (see FtpServerConfig.upload_root): the same entry, set directly.
            authorizer.user_table[name]["operms"][os.path.normcase(upload_dir)] = UPLOAD, True
    return authorizer


def upload_real(config: FtpServerConfig) -> str | None:
    """The real folder uploads are stored in (created), or None when uploads are off."""
    if not config.uploads:
        return None
    root = os.path.realpath(config.root)
    upload_dir = os.path.join(root, config.upload_dir)
    if os.path.commonpath([os.path.realpath(upload_dir), root]) != root or os.path.realpath(upload_dir) == root:
        raise ValueError(f"upload_dir {config.upload_dir!r} is outside the FTP root")
    os.makedirs(upload_dir, exist_ok=True)
    if config.upload_root is None:
        return os.path.realpath(upload_dir)
    os.makedirs(config.upload_root, exist_ok=True)
    return os.path.realpath(config.upload_root)


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

    @property
    def link(self):
        """The fault link (labsim.faults.FaultyLink), read by every session at each command."""
        return self._server.handler.fault_link

    @link.setter
    def link(self, link) -> None:
        self._server.handler.fault_link = link

    def set_observer(self, observer) -> None:
        """``observer(kind, client, detail)`` for every login ("login": user, ok) and
        transfer ("transfer": command, path, bytes, completed, seconds); None: off."""
        self._server.handler.on_event = observer

    def stop(self) -> defer.Deferred:
        """Close the listener and every session (synchronously; the Deferred has fired)."""
        if not self._loop._closed:
            self._loop.close()
        return defer.succeed(None)


def start_ftp_server(reactor, config: FtpServerConfig, host: str = "127.0.0.1", port: int = 2121, *,
                     share: str | None = None) -> FtpServerHandle:
    """Serve ``config.root`` over FTP on ``host:port`` (0: any free port; see ``.port``).
    ``share``: the port is served by several processes (labsim.net.reuseport); each
    process opens its own passive data ports (a busy one is skipped)."""
    if not os.path.isdir(config.root):
        raise ValueError(f"FTP root {config.root!r} is not a directory")
    stats = new_stats()
    handler = handler_class(config, reactor, stats)
    ioloop = Epoll()
    try:
        if share:
            import socket

            from labsim.net.reuseport import shared_socket

            address = shared_socket(socket.SOCK_STREAM, host, port, share)
        else:
            address = (host, port)
        server = FTPServer(address, handler, ioloop=ioloop, backlog=1024)
    except Exception:
        ioloop.close()
        raise
    server.max_cons = config.max_connections
    server.max_cons_per_ip = config.max_connections_per_address
    loop = _ReactorDrivenLoop(reactor, ioloop, stats)
    handler.server_loop = loop
    reactor.addReader(loop)
    return FtpServerHandle(server, loop, stats)


def handler_class(config: FtpServerConfig, reactor, stats: dict) -> type[FTPHandler]:
    """The control-connection handler for ``config``: one class per server (pyftpdlib keeps
    its settings on the class)."""
    return type("LabFtpHandler", (_FaultAwareHandler,), {
        "stats": stats,
        "clock": reactor,
        "authorizer": build_authorizer(config),
        "abstracted_fs": type("LabFilesystem", (_LabFilesystem,), {
            "upload_virtual": "/" + "/".join(p for p in config.upload_dir.split("/") if p not in ("", ".")),
            "upload_real": upload_real(config),
        }),
        "banner": config.banner,
        "passive_ports": (list(range(config.passive_ports[0], config.passive_ports[1] + 1))
                          if config.passive_ports else None),
        "auth_failed_timeout": config.auth_failed_delay_s,
        "timeout": config.idle_timeout_s,
    })

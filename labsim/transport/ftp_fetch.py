"""FTP downloads and uploads for phones: ``twisted.protocols.ftp.FTPClient``, one control
connection per file, passive mode, binary (``TYPE I``), RETR or STOR, then QUIT.

The outcome is always a labsim ``FetchResult``, never an exception: 550 -> ``not_found``
(for an upload: the server refused to create the file there),
530 (login refused) -> ``denied``, no answer within the time limit -> ``timeout``,
anything else -> ``error`` with the server's reply in ``detail``.

The path is taken as RFC 1738 says: relative to the directory the login lands in
(``ftp://h/cfg/x.cfg`` -> ``RETR cfg/x.cfg``). On labsim's server and on an anonymous
vsftpd that is the served root either way. How each phone vendor really words its RETR
is not documented *(unverified)*.
"""

from __future__ import annotations

from twisted.internet import defer, error as net_error
from twisted.internet.protocol import ClientCreator, Protocol
from twisted.protocols.ftp import CommandFailed, ConnectionLost, FTPClient
from twisted.python.failure import Failure

from labsim.phones.events import ANONYMOUS, FetchResult
from labsim.wire.numbers import is_number

STATUS_OF_CODE = {530: "denied", 550: "not_found"}


class _Collect(Protocol):
    def __init__(self):
        self.chunks: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)


def ftp_get(reactor, host: str, port: int, path: str, credentials=None, *, timeout_s: float = 30.0,
            bind_host: str | None = None) -> defer.Deferred:
    """Download ``path`` (relative to the login directory); fires with a FetchResult.
    ``bind_host``: the address both connections leave from (None: the kernel's choice)."""
    return _FtpDownload(reactor, host, port, path, credentials, timeout_s, bind_host=bind_host).start()


def ftp_put(reactor, host: str, port: int, path: str, data: bytes, credentials=None, *,
            timeout_s: float = 30.0, bind_host: str | None = None) -> defer.Deferred:
    """Upload ``data`` as ``path`` (STOR, relative to the login directory); fires with a
    FetchResult (``ok`` with no body once the server said 226)."""
    return _FtpUpload(reactor, host, port, path, credentials, timeout_s, bytes(data), bind_host=bind_host).start()


class _FtpExchange:
    """One control connection that logs in, runs one transfer (``_transfer``), quits;
    the time limit covers all of it."""

    def __init__(self, reactor, host, port, path, credentials, timeout_s, *, bind_host: str | None = None):
        self.reactor = reactor
        self.bind_address = (bind_host, 0) if bind_host else None
        # A path beyond ASCII goes as its UTF-8 bytes (RFC 2640; what pyftpdlib and vsftpd
        # read): FTPClient encodes its commands as latin-1, which carries each byte as it is.
        self.host, self.port, self.path = host, port, path.encode("utf-8", "surrogateescape").decode("latin-1")
        self.user, self.password = (credentials.user, credentials.password) if credentials else ANONYMOUS
        self.timeout_s = timeout_s
        self.result = defer.Deferred()
        self.client: FTPClient | None = None
        self._connecting: defer.Deferred | None = None
        self._timed_out = False
        self._timer = None

    def start(self) -> defer.Deferred:
        if not self.path or self.path.endswith("/"):
            return defer.succeed(FetchResult("error", detail=f"FTP: {self.path!r} names no file"))
        creator = ClientCreator(self.reactor, FTPClient, self.user, self.password, passive=1)
        self._connecting = creator.connectTCP(self.host, self.port, timeout=self.timeout_s,
                                              bindAddress=self.bind_address)
        self._connecting.addCallback(self._connected)
        self._connecting.addErrback(self._failed)
        self._connecting.addCallback(self._finish)
        self._timer = self.reactor.callLater(self.timeout_s, self._time_up)
        return self.result

    def _connected(self, client: FTPClient):
        self.client = client
        # FTPClient connects its passive data channel with the global reactor's connectTCP
        # (a class attribute); use ours.
        client.connectFactory = self._connect_data
        return self._transfer(client)

    def _connect_data(self, host, port, factory):
        """The passive data connection, from the control connection's source address."""
        return self.reactor.connectTCP(host, port, factory, bindAddress=self.bind_address)

    def _transfer(self, client: FTPClient) -> defer.Deferred:
        """Run the file transfer; fires with the FetchResult of a success."""
        raise NotImplementedError

    def _failed(self, failure: Failure) -> FetchResult:
        if self._timed_out:
            return FetchResult("timeout", detail=f"FTP: no answer from {self.host}:{self.port} in {self.timeout_s:g}s")
        return classify(failure)

    def _finish(self, result: FetchResult) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._close()
        if not self.result.called:
            self.result.callback(result)

    def _time_up(self) -> None:
        self._timed_out = True
        if self.client is None:
            self._connecting.cancel()  # still connecting: errbacks with CancelledError
        else:
            # Every queued command fails with ConnectionLost once the connection is gone.
            self.client.transport.abortConnection()

    def _close(self) -> None:
        client, self.client = self.client, None
        transport = client.transport if client is not None else None
        if transport is None or not transport.connected or transport.disconnecting:
            return
        quitting = client.quit()  # flushed before the close below
        quitting.addErrback(lambda _: None)  # the close fails it: expected
        client.transport.loseConnection()


class _FtpDownload(_FtpExchange):
    def _transfer(self, client: FTPClient) -> defer.Deferred:
        sink = _Collect()
        retrieving = client.retrieveFile(self.path, sink)
        retrieving.addCallback(lambda _: FetchResult("ok", b"".join(sink.chunks)))
        return retrieving


class _FtpUpload(_FtpExchange):
    def __init__(self, reactor, host, port, path, credentials, timeout_s, data: bytes, *, bind_host=None):
        super().__init__(reactor, host, port, path, credentials, timeout_s, bind_host=bind_host)
        self.data = data

    def _transfer(self, client: FTPClient) -> defer.Deferred:
        connected, replies = client.storeFile(self.path)
        # The data connection opens on the PASV answer; the body goes out and the
        # connection is closed at once (its end is the end of the file, RFC 959). The
        # server reads it once STOR arrives; the 226 on the control connection is the
        # proof it was stored.
        connected.addCallback(self._send_body)
        connected.addErrback(lambda _: None)  # the replies' Deferred reports the failure
        replies.addCallback(lambda _: FetchResult("ok"))
        return replies

    def _send_body(self, consumer) -> None:
        if self.data:
            consumer.write(self.data)
        consumer.finish()


def classify(failure: Failure) -> FetchResult:
    """A FetchResult for a failed FTP exchange, by the server's reply code."""
    code, reply = _reply(failure)
    if code is not None:
        return FetchResult(STATUS_OF_CODE.get(code, "error"), detail=f"FTP: {reply}")
    if failure.check(net_error.ConnectionRefusedError):
        return FetchResult("error", detail="FTP: connection refused")
    if failure.check(net_error.TimeoutError, defer.CancelledError):
        return FetchResult("timeout", detail="FTP: connect timed out")
    if failure.check(ConnectionLost):  # FTPClient wraps the cause: say it plainly
        inner = failure.value.args[1] if len(failure.value.args) > 1 else None
        why = inner.getErrorMessage() if isinstance(inner, Failure) else ""
        return FetchResult("error", detail="FTP: the server closed the connection" + (f" ({why})" if why else ""))
    return FetchResult("error", detail=f"FTP: {failure.getErrorMessage() or failure.type.__name__}")


def _reply(failure: Failure) -> tuple[int | None, str]:
    """The reply code that caused ``failure``: a CommandFailed, or one wrapped in the
    ConnectionLost that FTPClient hands every queued command after a failed login."""
    for _ in range(5):  # the nesting is shallow; never loop forever on odd chains
        value = failure.value
        if isinstance(value, CommandFailed) and value.args and value.args[0]:
            line = str(value.args[0][-1])
            return (int(line[:3]) if is_number(line[:3]) else None), line
        if isinstance(value, ConnectionLost) and len(value.args) > 1 and isinstance(value.args[1], Failure):
            failure = value.args[1]
            continue
        break
    return None, ""

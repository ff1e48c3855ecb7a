"""HTTP/1.1 framing for a client, I/O-free (RFC 9112): the requests a phone sends and
the responses it reads.

The phones' client (``labsim.transport.http_fetch``) builds requests with
``encode_request`` and feeds whatever arrives on a connection to a ``ResponseParser``,
which yields ``Response`` objects: status line, header fields, and a body framed by
Content-Length, the chunked transfer coding, or the connection closing.

Nothing here reads a socket or a clock. Malformed input raises ``HttpParseError`` and
nothing else (fuzzed with hypothesis).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"


# --- requests a client sends -----------------------------------------------------------------

# What a request target carries as it is: printable ASCII but the space ('%' escapes kept).
_AS_IS = "".join(chr(c) for c in range(0x21, 0x7F))


def request_target(parts) -> tuple[bytes, bytes]:
    """(path, target) a phone's client sends for a URL split by ``urlsplit``: the path, and
    the path with its query. A URL from a scenario or a config file may hold characters a
    request line cannot (``Klingelton ü.wav``): they are percent-encoded as UTF-8, as an
    IRI is mapped to a URI (RFC 3987 3.1), and the server decodes them back."""
    path = _uri_text(parts.path or "/")
    return path, path + (b"?" + _uri_text(parts.query) if parts.query else b"")


def _uri_text(text: str) -> bytes:
    if text.isascii() and " " not in text and text.isprintable():
        return text.encode("ascii")
    return quote(text, safe=_AS_IS, errors="surrogateescape").encode("ascii")


def host_field(authority: str) -> bytes:
    """The Host field for ``host[:port]``: a host name with non-ASCII characters in its
    IDNA form (``prüf.lab`` is ``xn--prf-ioa.lab``), the name the phone's DNS lookup asked
    for too (RFC 9110 7.2 wants the URI's host, and a URI's host is ASCII). UnicodeError
    when IDNA refuses the name: no request can be made for it."""
    if authority.isascii():
        return authority.encode("ascii")
    name, colon, port = authority.rpartition(":")
    if not (colon and port.isdigit()):
        name, colon, port = authority, "", ""
    return name.encode("idna") + (colon + port).encode("ascii")


def encode_request(method: bytes, target: bytes, fields: list[tuple[bytes, bytes]], body: bytes | None = None) -> bytes:
    """A request head (and body): ``fields`` must include Host; Content-Length is added
    for a body. Names and values are checked, so a CR or LF smuggled into a value (a
    User-Agent from a scenario file, say) cannot split the request."""
    if not _TOKEN.fullmatch(method) or not _TARGET.fullmatch(target):
        raise ValueError(f"not a request line: {method!r} {target!r}")
    lines = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in fields:
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
            raise ValueError(f"not a header field: {name!r}: {value!r}")
        lines += (name, b": ", value, b"\r\n")
    if body is not None:
        lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
        lines.append(body)
    else:
        lines.append(b"\r\n")
    return b"".join(lines)


_TOKEN = re.compile(_TCHAR + rb"+")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")


# --- responses a client reads ----------------------------------------------------------------


class HttpParseError(ValueError):
    """The bytes from the server are not an HTTP/1.1 response the parser can frame."""


@dataclass(slots=True)
class Response:
    status: int
    reason: bytes
    version: bytes  # b"HTTP/1.1" or b"HTTP/1.0"
    headers: list[tuple[bytes, bytes]]  # names lower-cased, in the order received
    body: bytes = b""
    # Whether the connection may carry another request (RFC 9112 9.3): HTTP/1.1 without
    # "Connection: close", HTTP/1.0 with "keep-alive", and a body not ended by closing.
    keep_alive: bool = True

    def header(self, name: bytes) -> bytes | None:
        """The first value of field ``name`` (lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]


_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([^\x00\r]*))?")
_FIELD_LINE = re.compile(rb"(" + _TCHAR + rb"+):[ \t]*([^\x00\r]*?)[ \t]*")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?")
_FIELD_BLOCK = re.compile(rb"(?:" + _TCHAR + rb"+:[^\x00\r\n]*\r?\n)*")
_FIELDS = re.compile(rb"(" + _TCHAR + rb"+):[ \t]*([^\x00\r\n]*?)[ \t]*\r?\n")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")

# Parser states.
_HEAD, _LENGTH, _CHUNK_SIZE_LINE, _CHUNK_DATA, _CHUNK_DATA_END, _TRAILERS, _UNTIL_CLOSE, _CLOSED = range(8)
_NO_BODY = frozenset({204, 304})


class ResponseParser:
    """Frames responses out of the bytes of one connection (RFC 9112 section 6).

    Tell it about each request with ``expect(method)`` (a HEAD's answer has no body),
    ``feed`` it what arrives, and call ``eof`` when the server closes. Responses come out
    whole, in order; 1xx interim responses are skipped. ``HttpParseError`` means the
    connection is unusable: nothing else is ever raised, whatever the bytes.
    """

    def __init__(self, *, max_head_size: int = 64 << 10, max_fields: int = 200, max_body_size: int = 1 << 30):
        self.max_head_size = max_head_size
        self.max_fields = max_fields
        self.max_body_size = max_body_size
        self._buf = b""
        self._methods: list[bytes] = []
        self._state = _HEAD
        self._response: Response | None = None
        self._parts: list[bytes] = []
        self._size = 0
        self._remaining = 0
        self._failed: HttpParseError | None = None

    def expect(self, method: bytes) -> None:
        self._methods.append(method.upper())

    @property
    def receiving(self) -> bool:
        """Part of a response has arrived (not yet complete)."""
        return bool(self._buf) or self._state not in (_HEAD, _CLOSED)

    @property
    def closed(self) -> bool:
        """The last response said the connection ends after it."""
        return self._state == _CLOSED

    def feed(self, data: bytes) -> list[Response]:
        if self._failed is not None:
            raise self._failed
        try:
            return self._feed(data)
        except HttpParseError as exc:
            self._failed = exc
            raise

    def eof(self) -> Response | None:
        """The server closed: the response whose body ran until now, or None if no
        response was under way; HttpParseError if it was cut short."""
        if self._failed is not None:
            raise self._failed
        state = self._state
        if state == _UNTIL_CLOSE:
            return self._finish()
        if state in (_HEAD, _CLOSED) and not self._buf:
            return None
        self._failed = HttpParseError("connection closed in the middle of a response")
        raise self._failed

    # --- the state machine

    def _feed(self, data: bytes) -> list[Response]:
        buf = self._buf + data if self._buf else data
        self._buf = b""
        done: list[Response] = []
        while True:
            state = self._state
            if state == _HEAD:
                if not buf:
                    break
                if not self._methods:
                    raise HttpParseError("the server sent bytes with no request outstanding")
                match = _HEAD_END.search(buf, 0, self.max_head_size + 4)
                if match is None:
                    if len(buf) > self.max_head_size:
                        raise HttpParseError("response head too large")
                    break
                head, buf = buf[: match.start()], buf[match.end() :]
                response = self._start(head)
                if response is not None:
                    done.append(response)
            elif state == _LENGTH:
                buf, complete = self._take_body(buf)
                if not complete:
                    break
                done.append(self._finish())
            elif state == _CHUNK_SIZE_LINE:
                match = _LINE_END.search(buf, 0, 4096)
                if match is None:
                    if len(buf) > 4096:
                        raise HttpParseError("chunk-size line too long")
                    break
                size = _CHUNK_SIZE.fullmatch(buf, 0, match.start())
                if size is None:
                    raise HttpParseError(f"bad chunk-size line {bytes(buf[: match.start()][:40])!r}")
                buf = buf[match.end() :]
                length = int(size.group(1), 16)
                if length == 0:
                    self._state = _TRAILERS
                    continue
                self._grow(length)
                self._remaining = length
                self._state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                buf, complete = self._take_body(buf)
                if not complete:
                    break
                self._state = _CHUNK_DATA_END
            elif state == _CHUNK_DATA_END:
                if buf[:2] == b"\r\n":
                    buf = buf[2:]
                elif buf[:1] == b"\n":
                    buf = buf[1:]
                elif len(buf) < 2 and buf in (b"", b"\r"):
                    break
                else:
                    raise HttpParseError("chunk data not followed by CRLF")
                self._state = _CHUNK_SIZE_LINE
            elif state == _TRAILERS:
                # Trailer fields are read past, not used: an empty line ends the message.
                match = _LINE_END.search(buf, 0, self.max_head_size)
                if match is None:
                    if len(buf) > self.max_head_size:
                        raise HttpParseError("trailer section too large")
                    break
                line, buf = buf[: match.start()], buf[match.end() :]
                if not line:
                    done.append(self._finish())
                elif _FIELD_LINE.fullmatch(line) is None:
                    raise HttpParseError(f"bad trailer field {bytes(line[:40])!r}")
            elif state == _UNTIL_CLOSE:
                if buf:
                    self._grow(len(buf))
                    self._parts.append(buf)
                    buf = b""
                break
            else:  # _CLOSED: the server said this was the last response; nothing more counts
                buf = b""
                break
        self._buf = buf
        return done

    def _grow(self, more: int) -> None:
        self._size += more
        if self._size > self.max_body_size:
            raise HttpParseError(f"response body larger than {self.max_body_size} bytes")

    def _start(self, head: bytes) -> Response | None:
        """Parse a head; the response if it has no body, else None (body state set)."""
        newline = head.find(b"\n")
        status_line = head if newline < 0 else head[:newline]
        if status_line.endswith(b"\r"):
            status_line = status_line[:-1]
        match = _STATUS_LINE.fullmatch(status_line)
        if match is None:
            raise HttpParseError(f"bad status line {status_line[:60]!r}")
        headers = self._fields(head[newline + 1 :] + b"\r\n") if newline >= 0 else []
        minor, status, reason = match.groups()
        status = int(status)
        if status < 200:
            if status == 101:
                raise HttpParseError("101 Switching Protocols: no upgrade was asked for")
            return None  # interim (100 Continue, 103 Early Hints): the real one follows
        # The fields that frame the body and decide keep-alive, in one pass.
        connection = codings = lengths = None
        for name, value in headers:
            if name == b"content-length":
                lengths = (lengths or set()) | {token.strip() for token in value.split(b",")}
            elif name == b"transfer-encoding":
                codings = (codings or []) + [t.strip().lower() for t in value.split(b",") if t.strip()]
            elif name == b"connection":
                connection = (connection or []) + [t.strip().lower() for t in value.split(b",")]
        method = self._methods.pop(0)
        if minor == b"1":
            version, keep_alive = b"HTTP/1.1", connection is None or b"close" not in connection
        else:
            version, keep_alive = b"HTTP/1.0", connection is not None and b"keep-alive" in connection
        response = Response(status, reason or b"", version, headers, b"", keep_alive)
        self._response = response
        self._parts = []
        self._size = 0
        if method == b"HEAD" or status in _NO_BODY:
            return self._finish()
        if codings:
            if minor == b"0":
                raise HttpParseError("Transfer-Encoding in an HTTP/1.0 response")
            # With both Transfer-Encoding and Content-Length the former wins and the
            # connection must not be reused (RFC 9112 6.3 item 3).
            if lengths is not None:
                response.keep_alive = False
            if codings[-1] == b"chunked":
                self._state = _CHUNK_SIZE_LINE
            else:
                response.keep_alive = False
                self._state = _UNTIL_CLOSE
            return None
        if lengths is not None:
            if len(lengths) != 1:
                raise HttpParseError(f"conflicting Content-Length values {sorted(lengths)!r}")
            (length,) = lengths
            if not length.isdigit() or len(length) > 15:
                raise HttpParseError(f"bad Content-Length {length[:20]!r}")
            length = int(length)
            if length == 0:
                return self._finish()
            self._grow(length)
            self._remaining = length
            self._state = _LENGTH
            return None
        response.keep_alive = False
        self._state = _UNTIL_CLOSE
        return None

    def _fields(self, block: bytes) -> list[tuple[bytes, bytes]]:
        """The header fields of ``block`` (lines each ending in a line break), names
        lower-cased. Two regex calls when every line is a plain field; line by line
        (folding, errors) otherwise."""
        if _FIELD_BLOCK.fullmatch(block) is not None:
            fields = [(name.lower(), value) for name, value in _FIELDS.findall(block)]
        else:
            fields = []
            for line in block.split(b"\n")[:-1]:
                if line.endswith(b"\r"):
                    line = line[:-1]
                if line[:1] in (b" ", b"\t"):
                    # obs-fold: RFC 9112 5.2 has a user agent replace it with a space.
                    if not fields or b"\x00" in line or b"\r" in line:
                        raise HttpParseError("bad folded header line")
                    name, value = fields[-1]
                    fields[-1] = (name, (value + b" " + line.strip(b" \t")).strip(b" \t"))
                    continue
                field = _FIELD_LINE.fullmatch(line)
                if field is None:
                    raise HttpParseError(f"bad header field {line[:60]!r}")
                fields.append((field.group(1).lower(), field.group(2)))
        if len(fields) > self.max_fields:
            raise HttpParseError("too many header fields")
        return fields

    def _take_body(self, buf):
        """Take up to ``self._remaining`` body bytes from ``buf``: (the rest of buf,
        whether the expected bytes are now all in)."""
        if not buf:
            return buf, False
        take = self._remaining
        if len(buf) < take:
            self._parts.append(buf)
            self._remaining -= len(buf)
            return b"", False
        self._parts.append(buf[:take])
        self._remaining = 0
        return buf[take:], True

    def _finish(self) -> Response:
        response = self._response
        parts = self._parts
        response.body = parts[0] if len(parts) == 1 else b"".join(parts)
        self._response = None
        self._parts = []
        self._state = _HEAD if response.keep_alive else _CLOSED
        return response

"""SIP for plug-and-play provisioning: just enough RFC 3261 to build and read the
``ua-profile`` SUBSCRIBE a phone sends at boot, the 200 OK, and the NOTIFY whose
``application/url`` body is the provisioning URL (the SIP UA configuration framework,
RFC 6080; Yealink calls it PnP).

A Yealink phone multicasts to 224.0.1.75:5060::

    SUBSCRIBE sip:001565aa0001@224.0.1.75 SIP/2.0
    Via: SIP/2.0/UDP 10.1.0.20:5060;branch=z9hG4bK...;rport
    From: <sip:001565aa0001@224.0.1.75>;tag=...
    To: <sip:001565aa0001@224.0.1.75>
    Call-ID: ...@10.1.0.20
    CSeq: 1 SUBSCRIBE
    Contact: <sip:10.1.0.20:5060>
    Event: ua-profile;profile-type="device";vendor="Yealink";model="T46S";version="66.85.0.5"
    Accept: application/url
    Expires: 0

Codecs only: no sockets, no clocks. Every parse problem raises :class:`SipParseError`,
so a server can count and drop a bad datagram with one ``except``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from labsim.wire.numbers import is_number

PNP_MULTICAST = ("224.0.1.75", 5060)  # "sip.mcast.net", RFC 6080 section 4.1.2
BRANCH_MAGIC = "z9hG4bK"  # RFC 3261 8.1.1.7: a branch that starts with it is RFC 3261 compliant
MAX_MESSAGE = 65535

# RFC 3261 7.3.3 compact forms, and the spelling we write each header with.
_COMPACT = {"i": "call-id", "f": "from", "t": "to", "v": "via", "m": "contact", "l": "content-length",
            "c": "content-type", "o": "event", "k": "supported", "e": "content-encoding", "s": "subject"}
_CANONICAL = {"call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate"}
_REQUIRED = ("via", "from", "to", "call-id", "cseq")  # RFC 3261 8.1.1
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
# A URI starts with its scheme and a colon (RFC 3261 25.1: ALPHA *(ALPHA / DIGIT / "+" / "-" / ".")).
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:", re.ASCII)


class SipParseError(ValueError):
    """The bytes are not a SIP message this codec can use."""


@dataclass
class SipMessage:
    """A request (``method`` and ``uri`` set) or a response (``status`` and ``reason``)."""

    method: str = ""
    uri: str = ""
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)  # (canonical name, value), in order
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return bool(self.method)

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header (any spelling, compact forms included)."""
        key = _normal_name(name)
        for header_name, value in self.headers:
            if header_name.lower() == key:
                return value
        return default

    def all(self, name: str) -> list[str]:
        key = _normal_name(name)
        return [value for header_name, value in self.headers if header_name.lower() == key]

    @property
    def call_id(self) -> str:
        return self.header("call-id", "")

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.header("cseq", ""))

    def encode(self) -> bytes:
        start = (f"{self.method} {self.uri} SIP/2.0" if self.is_request
                 else f"SIP/2.0 {self.status} {self.reason}")
        lines = [start] + [f"{name}: {value}" for name, value in self.headers
                           if name.lower() != "content-length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


def _normal_name(name: str) -> str:
    key = name.strip().lower()
    return _COMPACT.get(key, key)


def _canonical(key: str) -> str:
    return _CANONICAL.get(key) or "-".join(part.capitalize() for part in key.split("-"))


# --- parsing ---------------------------------------------------------------------------


def parse(data: bytes) -> SipMessage:
    """One SIP message from one datagram, or SipParseError."""
    if not data or len(data) > MAX_MESSAGE:
        raise SipParseError(f"a SIP datagram has 1..{MAX_MESSAGE} bytes, not {len(data)}")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    if not sep:
        raise SipParseError("no blank line after the headers")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"headers are not UTF-8: {exc.reason}") from None
    lines = [line.rstrip("\r") for line in text.split("\n")]
    while lines and not lines[0]:
        lines.pop(0)  # RFC 3261 7.5: ignore CRLFs before the start line
    if not lines:
        raise SipParseError("empty message")
    message = _start_line(lines[0])
    for line in _unfolded(lines[1:]):
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or not _TOKEN.match(name):
            raise SipParseError(f"bad header line {line[:60]!r}")
        message.headers.append((_canonical(_normal_name(name)), value.strip()))
    for required in _REQUIRED:
        if message.header(required) is None:
            raise SipParseError(f"no {_canonical(required)} header")
    method = message.cseq[1]  # validates CSeq
    if message.is_request and method != message.method:
        raise SipParseError(f"CSeq method {method} does not match the request method {message.method}")
    message.body = _body(message, body)
    return message


def _start_line(line: str) -> SipMessage:
    parts = line.split(" ", 2)
    if len(parts) == 3 and parts[0] == "SIP/2.0":
        if not (is_number(parts[1]) and len(parts[1]) == 3 and 100 <= int(parts[1]) <= 699):
            raise SipParseError(f"bad status code {parts[1]!r}")
        return SipMessage(status=int(parts[1]), reason=parts[2])
    if len(parts) == 3 and parts[2] == "SIP/2.0" and _TOKEN.match(parts[0]) and _URI_SCHEME.match(parts[1]):
        return SipMessage(method=parts[0].upper(), uri=parts[1])
    raise SipParseError(f"not a SIP/2.0 start line: {line[:80]!r}")


def _unfolded(lines: list[str]) -> list[str]:
    """Header lines with RFC 3261 7.3.1 continuation lines joined to the one before."""
    joined: list[str] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not joined:
                raise SipParseError("a continuation line before any header")
            joined[-1] += " " + line.strip()
        elif line:
            joined.append(line)
    return joined


def _body(message: SipMessage, rest: bytes) -> bytes:
    length_text = message.header("content-length")
    if length_text is None:
        return rest  # allowed over UDP: the body is the rest of the datagram
    if not is_number(length_text):
        raise SipParseError(f"bad Content-Length {length_text!r}")
    length = int(length_text)
    if length > len(rest):
        raise SipParseError(f"Content-Length {length} but only {len(rest)} body bytes")
    return rest[:length]


def parse_cseq(value: str) -> tuple[int, str]:
    number, _, method = value.strip().partition(" ")
    method = method.strip()
    if not is_number(number) or int(number) >= 2**31 or not method or not _TOKEN.match(method):
        raise SipParseError(f"bad CSeq {value!r}")
    return int(number), method.upper()


def _split_params(text: str) -> dict[str, str]:
    """``;a=1;b="x;y";c`` -> {a: 1, b: x;y, c: ""}; quotes respected."""
    params: dict[str, str] = {}
    for match in re.finditer(r';\s*([^=;\s]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;]*))?', text):
        value = (match.group(2) or "").strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match.group(1).lower()] = value
    return params


def parse_name_addr(value: str) -> tuple[str, dict[str, str]]:
    """(the URI, the header parameters such as ``tag``) of a From/To/Contact value."""
    value = value.strip()
    if "<" in value:
        start, end = value.find("<"), value.find(">")
        if end < start:
            raise SipParseError(f"unclosed '<' in {value!r}")
        return _uri(value[start + 1 : end]), _split_params(value[end + 1 :])
    uri, _, params = value.partition(";")  # addr-spec: parameters after ';' belong to the header
    return _uri(uri), _split_params(";" + params if params else "")


def _uri(text: str) -> str:
    # A URI has a scheme and no whitespace (RFC 3261 25.1): one without, or with a space
    # inside, would become a NOTIFY request line nobody can parse (both found by tests/fuzz).
    uri = text.strip()
    if any(ch.isspace() for ch in uri):
        raise SipParseError(f"whitespace in the URI {uri[:80]!r}")
    if not _URI_SCHEME.match(uri):
        raise SipParseError(f"no scheme in the URI {uri[:80]!r}")
    return uri


def uri_user(uri: str) -> str:
    """The user part of ``sip:user@host``, '' when there is none."""
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips"):
        raise SipParseError(f"not a SIP URI: {uri!r}")
    user, at, _host = rest.partition("@")
    return user.split(";", 1)[0] if at else ""


def uri_host_port(uri: str, default_port: int = 5060) -> tuple[str, int]:
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips"):
        raise SipParseError(f"not a SIP URI: {uri!r}")
    hostport = rest.rpartition("@")[2].split(";", 1)[0].split("?", 1)[0]
    if hostport.startswith("["):  # an IPv6 reference: [::1]:5060
        host, _, after = hostport[1:].partition("]")
        port = after[1:] if after.startswith(":") else ""
    else:
        host, _, port = hostport.partition(":")
    if port and not is_number(port):
        raise SipParseError(f"bad port in {uri!r}")
    if not host:
        raise SipParseError(f"no host in {uri!r}")
    return host, int(port) if port else default_port


def parse_event(value: str) -> tuple[str, dict[str, str]]:
    """``ua-profile;vendor="Yealink";...`` -> ("ua-profile", {"vendor": "Yealink", ...})."""
    name, _, rest = value.strip().partition(";")
    name = name.strip().lower()
    if not name or not _TOKEN.match(name):
        raise SipParseError(f"bad Event header {value!r}")
    return name, _split_params(";" + rest if rest else "")


def via_params(value: str) -> dict[str, str]:
    """The parameters of one Via value (``branch``, ``rport``, ``received`` ...)."""
    return _split_params(";" + value.partition(";")[2])


def tag_of(message: SipMessage, header: str) -> str:
    return parse_name_addr(message.header(header, ""))[1].get("tag", "")


# --- the PnP messages -------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileRequest:
    """What a ``ua-profile`` SUBSCRIBE says about the device asking."""

    mac: str  # bare lowercase hex, as the phone writes it in its URI
    vendor: str
    model: str
    version: str
    profile_type: str


def profile_request(message: SipMessage) -> ProfileRequest | None:
    """The device described by a SUBSCRIBE with ``Event: ua-profile``; None for any other
    message. A ua-profile SUBSCRIBE that lacks what a responder needs is a SipParseError."""
    if message.method != "SUBSCRIBE":
        return None
    event = message.header("event")
    if event is None:
        return None
    name, params = parse_event(event)
    if name != "ua-profile":
        return None
    user = uri_user(parse_name_addr(message.header("from", ""))[0]) or uri_user(message.uri)
    mac = user.replace(":", "").replace("-", "").lower()
    if len(mac) != 12 or any(ch not in "0123456789abcdef" for ch in mac):
        raise SipParseError(f"the SUBSCRIBE's user part {user!r} is not a MAC address")
    return ProfileRequest(mac, params.get("vendor", ""), params.get("model", ""), params.get("version", ""),
                          params.get("profile-type", ""))


def build_subscribe(*, mac: str, vendor: str, model: str, version: str, local: tuple[str, int],
                    call_id: str, tag: str, branch: str, cseq: int = 1, expires: int = 0,
                    user_agent: str = "", target: tuple[str, int] = PNP_MULTICAST) -> SipMessage:
    """The ua-profile SUBSCRIBE a phone sends. ``local`` is the address it listens on;
    ``expires`` 0 asks for one NOTIFY and no lasting subscription (RFC 6665 4.1.2.4)."""
    aor = f"sip:{mac.replace(':', '').lower()}@{target[0]}"
    event = (f'ua-profile;profile-type="device";vendor="{vendor}";model="{model}";version="{version}"')
    headers = [
        ("Via", f"SIP/2.0/UDP {local[0]}:{local[1]};branch={branch};rport"),
        ("From", f"<{aor}>;tag={tag}"),
        ("To", f"<{aor}>"),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} SUBSCRIBE"),
        ("Contact", f"<sip:{local[0]}:{local[1]}>"),
        ("Max-Forwards", "70"),
    ]
    if user_agent:
        headers.append(("User-Agent", user_agent))
    headers += [("Expires", str(expires)), ("Event", event), ("Accept", "application/url")]
    return SipMessage(method="SUBSCRIBE", uri=aor, headers=headers)


def build_response(request: SipMessage, status: int, reason: str, *, to_tag: str = "",
                   extra: list[tuple[str, str]] | None = None) -> SipMessage:
    """A response that matches ``request`` (RFC 3261 8.2.6.2: same Via, From, Call-ID,
    CSeq; To with our tag added if it has none)."""
    to = request.header("to", "")
    if to_tag and "tag" not in parse_name_addr(to)[1]:
        to = f"{to};tag={to_tag}"
    headers = [("Via", via) for via in request.all("via")]
    headers += [("From", request.header("from", "")), ("To", to), ("Call-ID", request.call_id),
                ("CSeq", request.header("cseq", ""))]
    if request.method == "SUBSCRIBE":
        headers.append(("Expires", request.header("expires", "0")))
    headers += extra or []
    return SipMessage(status=status, reason=reason, headers=headers)


def build_notify(subscribe: SipMessage, url: str, *, local: tuple[str, int], to_tag: str, branch: str,
                 cseq: int = 1, subscription_state: str = "terminated;reason=timeout") -> SipMessage:
    """The NOTIFY carrying ``url`` for a ua-profile SUBSCRIBE, in the dialog the 200 OK
    set up: our From is the SUBSCRIBE's To with ``to_tag``, our To its From."""
    contact = subscribe.header("contact")
    target_uri = parse_name_addr(contact)[0] if contact else parse_name_addr(subscribe.header("from", ""))[0]
    to = subscribe.header("to", "")
    if "tag" not in parse_name_addr(to)[1]:
        to = f"{to};tag={to_tag}"
    headers = [
        ("Via", f"SIP/2.0/UDP {local[0]}:{local[1]};branch={branch};rport"),
        ("From", to),
        ("To", subscribe.header("from", "")),
        ("Call-ID", subscribe.call_id),
        ("CSeq", f"{cseq} NOTIFY"),
        ("Contact", f"<sip:{local[0]}:{local[1]}>"),
        ("Max-Forwards", "70"),
        ("Event", subscribe.header("event", "ua-profile")),
        ("Subscription-State", subscription_state),
        ("Content-Type", "application/url"),
    ]
    return SipMessage(method="NOTIFY", uri=target_uri, headers=headers, body=url.encode("utf-8"))


def notify_url(message: SipMessage) -> str:
    """The provisioning URL in a ua-profile NOTIFY, or SipParseError."""
    if message.method != "NOTIFY":
        raise SipParseError(f"a {message.method or 'response'} carries no profile URL")
    content_type = (message.header("content-type") or "").split(";", 1)[0].strip().lower()
    if content_type != "application/url":
        raise SipParseError(f"NOTIFY body is {content_type or 'untyped'}, not application/url")
    try:
        url = message.body.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SipParseError("NOTIFY body is not UTF-8") from None
    if not url or any(ch.isspace() for ch in url):
        raise SipParseError(f"NOTIFY body {url[:80]!r} is not one URL")
    return url

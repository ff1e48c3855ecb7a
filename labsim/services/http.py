"""labsim's HTTP(S) provisioning server, the part without I/O: its configuration and
counters, path safety, authentication and the access log.

The server as a whole (twisted.web does the HTTP/1.1 parsing, keep-alive and HEAD):

- one leaf resource answers every request (no resource-tree walk per request);
- small files are served from memory, keyed by path and checked against a fresh stat
  (inode, size, ctime) per request, and written in one call instead of through
  ``twisted.web.static.File``'s producer machinery; larger ones stream from disk;
- files carry Last-Modified, a strong ETag (a hash of the stat key, made once per file
  version) and ``Accept-Ranges: bytes``; If-Match, If-None-Match, If-Modified-Since,
  If-Unmodified-Since, Range and If-Range follow RFC 9110 (304, 412, 206, 416), decided
  I/O-free by ``labsim.wire.http_conditional``; several ranges that do not merge into one span are
  answered with the whole file (200), never multipart. A request with none of those
  fields pays one set test for all of it;
- paths are percent-decoded, ``..`` segments refused, and the real path (symlinks
  resolved) must stay under the root: anything else is a 404, so a probe learns nothing;
- authentication is checked here, I/O-free (``HttpAuthenticator``), so one server can
  protect some paths with Basic and others with Digest (RFC 7616, MD5, qop=auth);
- the access log is bounded and in memory (never a file write per request), kept raw
  and turned into dicts naming the phone by the MAC in its User-Agent only when read;
- per-request work twisted.web does for features unused here is skipped
  (``ProvisioningRequest``), responses held in memory leave in one write, straight to
  the socket when nothing is queued (``send_now``): ~27 -> ~16 µs per 4 KB GET
  in-process; under wrk 0.19-0.26 of nginx's rate before, 0.30-0.53 after (median 0.43
  round by round; docs/performance.md, "HTTP");
- with ``uploads`` on, PUT stores a file under ``upload_dir`` (and nowhere else): phones
  such as Polycom's upload their logs and overrides file there. A PUT's If-Match,
  If-None-Match (``*``: create only) and If-Unmodified-Since are checked against the file
  there (412), a PUT with Content-Range is refused (400), and 201/204 carry the stored
  file's ETag and Last-Modified.

The twisted.web adapter (the resource, request, channel and site; starting and stopping)
is ``labsim.services.http_web``, certificates ``labsim.services.http_tls``.
Run alone: ``python -m labsim.services.http_web --root DIR [--port P] [--tls] ...``.
"""

from __future__ import annotations

import base64
import binascii
import collections
import fnmatch
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import unquote_to_bytes

from labsim.phones.packed import SharedValues

# Files up to this size are kept in memory; the cache as a whole is emptied past the cap
# in bytes or in files, as TFTP's (a provisioning tree is small; firmware images are the
# large files and stream). The file cap: a fleet's own files (one a phone) cost ~1 KB each
# to keep, whatever their size, and are read once or twice: without it a 100,000-phone
# storm kept ~80 MB of them (issue 12 §5).
CACHE_FILE_MAX = 1 << 20
CACHE_TOTAL_MAX = 64 << 20
CACHE_FILES_MAX = 10_000
# A Digest nonce is an HMAC of its issue time, so the server keeps no per-client state.
# A phone may sit on one nonce across a whole boot's worth of downloads.
NONCE_LIFETIME = 3600.0
ACCESS_LOG_SIZE = 10_000
# A keep-alive connection with nothing in progress is closed after this long.
IDLE_TIMEOUT = 60.0
HEADER_TIMEOUT = 10.0
ALLOWED_METHODS = (b"GET", b"HEAD")
UPLOAD_MAX = 16 << 20  # a phone's log or overrides file is kilobytes; refuse anything huge (413)

# Provisioning files mimetypes does not know (kept local: no change to the global table).
EXTRA_TYPES = {".cfg": "text/plain", ".enc": "application/octet-stream"}


# --- configuration -------------------------------------------------------------------


@dataclass
class HttpAuthRule:
    """Requests whose decoded path matches ``path_glob`` (fnmatch: ``*`` crosses ``/``)
    need one of ``users`` (name -> password)."""

    path_glob: str
    scheme: str  # "basic" | "digest"
    users: dict[str, str]
    realm: str = "labsim"

    def __post_init__(self) -> None:
        if self.scheme not in ("basic", "digest"):
            raise ValueError(f"auth scheme {self.scheme!r}: use 'basic' or 'digest'")


@dataclass
class HttpServerConfig:
    root: str
    directory_listing: bool = False
    auth: list[HttpAuthRule] = field(default_factory=list)
    tls: bool = False
    cert_file: str | None = None
    key_file: str | None = None
    cert_dir: str | None = None  # where a generated self-signed cert/key are written
    uploads: bool = False  # accept PUT, into upload_dir only
    upload_dir: str = "uploads"  # relative to root; created when uploads are on
    # Where upload_dir's files really live, when not inside root (labsim serve/run serve a
    # temporary copy of the provisioning folder; uploads must outlive it). None: root/upload_dir.
    upload_root: str | None = None
    idle_timeout_s: float = IDLE_TIMEOUT  # a keep-alive connection with no request for this long is closed
    # A request whose headers have not all arrived this long after its first byte is
    # dropped: a slow client (slowloris) cannot hold connections by trickling headers.
    header_timeout_s: float = HEADER_TIMEOUT
    # The key Digest nonces are signed with; None: a random one. Processes serving one port
    # (labsim run --workers) share it, so a nonce one issued is good at the others.
    auth_secret: bytes | None = None


# A boot storm opens thousands of connections at once: Twisted's default backlog of 50
# overflowed at 2,000 phones and SYN retries stalled phones for up to 30 s. The kernel
# caps this at net.core.somaxconn.
LISTEN_BACKLOG = 4096


@dataclass
class HttpStats:
    requests: int = 0
    connections: int = 0  # TCP (or TLS) connections accepted: requests / connections is the clients' reuse
    status: dict[int, int] = field(default_factory=dict)
    bytes_sent: int = 0  # body bytes
    uploads: int = 0  # PUTs stored
    bytes_received: int = 0  # their body bytes
    header_timeouts: int = 0  # connections closed because a request's headers came too slowly


# --- pure helpers ----------------------------------------------------------------------

_HEX = "[0-9A-Fa-f]"
_MAC_RE = re.compile(
    rf"(?<![0-9A-Fa-f:-])(?:{_HEX}{{2}}([:-]){_HEX}{{2}}(?:\1{_HEX}{{2}}){{4}}|{_HEX}{{12}})(?![0-9A-Fa-f:-])"
)


def mac_from_user_agent(user_agent: str | None) -> str | None:
    """``'Yealink SIP-T46S 66.85.0.5 00:15:65:13:ae:0b'`` -> ``'00:15:65:13:ae:0b'``;
    also a bare ``001565 13ae0b`` form without separators. Lower-case, colon-separated."""
    if not user_agent:
        return None
    match = _MAC_RE.search(user_agent)
    if match is None:
        return None
    digits = re.sub("[:-]", "", match.group(0)).lower()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def _work_out_relative_path(raw_path: bytes) -> bytes | None:
    """The request path as a relative filesystem path, or None if it tries to leave.

    Percent-decoding happens before splitting, so ``%2e%2e%2f`` is caught like ``../``;
    a NUL byte (which the OS would refuse anyway) is refused here.
    """
    decoded = unquote_to_bytes(raw_path)
    if b"\x00" in decoded:
        return None
    parts = []
    for part in decoded.split(b"/"):
        if part == b"..":
            return None
        if part and part != b".":
            parts.append(part)
    return b"/".join(parts)


# A fleet asks for the same paths over and over (a virtual week: millions of requests
# for a few per phone); the answer depends on the path alone. Each phone's own file
# paths too, for fleets of ~10,000.
safe_relative_path = SharedValues(1 << 15, _work_out_relative_path).one


# --- authentication, I/O-free ----------------------------------------------------------

_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_auth_params(text: str) -> dict[str, str]:
    return {
        m.group(1).lower(): re.sub(r"\\(.)", r"\1", m.group(2)) if m.group(2) is not None else m.group(3)
        for m in _PARAM_RE.finditer(text)
    }


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: S324 - Digest's MD5 is the protocol


class HttpAuthenticator:
    """Decides whether a request may proceed and, if not, the challenge to send."""

    def __init__(self, rules: list[HttpAuthRule], clock: Callable[[], float], secret: bytes | None = None):
        self.rules = rules
        self.clock = clock
        self._secret = secret or secrets.token_bytes(32)
        self._opaque = secrets.token_hex(8)

    def rule_for(self, path: str) -> HttpAuthRule | None:
        return next((rule for rule in self.rules if fnmatch.fnmatchcase(path, rule.path_glob)), None)

    def check(self, rule: HttpAuthRule, method: bytes, uri: bytes, authorization: bytes | None) -> str | None:
        """None if the credentials are good, else the WWW-Authenticate value to send."""
        header = (authorization or b"").decode("latin-1")
        scheme, _, rest = header.partition(" ")
        if rule.scheme == "basic":
            if scheme.lower() == "basic" and self._basic_ok(rule, rest.strip()):
                return None
            return f'Basic realm="{rule.realm}", charset="UTF-8"'
        stale = False
        if scheme.lower() == "digest":
            ok, stale = self._digest_ok(rule, method.decode("latin-1"), uri.decode("latin-1"), parse_auth_params(rest))
            if ok:
                return None
        return self.digest_challenge(rule, stale)

    @staticmethod
    def _basic_ok(rule: HttpAuthRule, token: str) -> bool:
        try:
            user, sep, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = rule.users.get(user)
        return bool(sep) and expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    def make_nonce(self) -> str:
        issued = f"{int(self.clock()):x}"
        return f"{issued}.{self._sign(issued)}"

    def _sign(self, issued: str) -> str:
        return hmac.new(self._secret, issued.encode(), hashlib.sha256).hexdigest()[:32]

    def _nonce_state(self, nonce: str) -> str:
        """'good', 'stale' (ours but old: the client may retry with a fresh one) or 'bad'."""
        issued, _, mac = nonce.partition(".")
        if not hmac.compare_digest(self._sign(issued).encode(), mac.encode("latin-1", "replace")):
            return "bad"
        try:
            age = self.clock() - int(issued, 16)
        except ValueError:
            return "bad"
        return "good" if 0 <= age <= NONCE_LIFETIME else "stale"

    def digest_challenge(self, rule: HttpAuthRule, stale: bool = False) -> str:
        return (
            f'Digest realm="{rule.realm}", qop="auth", algorithm=MD5, '
            f'nonce="{self.make_nonce()}", opaque="{self._opaque}"' + (", stale=true" if stale else "")
        )

    def _digest_ok(self, rule: HttpAuthRule, method: str, uri: str, p: dict[str, str]) -> tuple[bool, bool]:
        """(credentials good, nonce merely stale)."""
        password = rule.users.get(p.get("username", ""))
        if (
            password is None
            or p.get("realm") != rule.realm
            or p.get("uri") != uri  # the digest covers the URI: it must be this request's
            or p.get("algorithm", "MD5").upper() != "MD5"
        ):
            return False, False
        ha1 = _md5(f"{p['username']}:{rule.realm}:{password}")
        ha2 = _md5(f"{method}:{uri}")
        qop = p.get("qop")
        if qop == "auth":
            if "nc" not in p or "cnonce" not in p:
                return False, False
            expected = _md5(f"{ha1}:{p.get('nonce', '')}:{p['nc']}:{p['cnonce']}:auth:{ha2}")
        elif qop is None:  # RFC 2069 clients (old phones) send no qop
            expected = _md5(f"{ha1}:{p.get('nonce', '')}:{ha2}")
        else:
            return False, False
        # As bytes: compare_digest refuses str with non-ASCII characters (TypeError, found by
        # tests/fuzz), and a header's text is Latin-1 here.
        if not hmac.compare_digest(expected.encode(), p.get("response", "").encode("latin-1", "replace")):
            return False, False
        state = self._nonce_state(p.get("nonce", ""))
        return state == "good", state == "stale"


class AccessLog:
    """The last ``size`` requests, newest last, each read as a dict (time, client, method,
    path, status, mac, user_agent).

    An entry is stored as the tuple of raw values twisted.web already holds and becomes a
    dict only when read: a boot storm writes thousands of entries a second and reads
    almost none of them. Decoding and the MAC search cost ~4-5 µs per request.
    """

    def __init__(self, size: int):
        self._entries: collections.deque[tuple] = collections.deque(maxlen=size)

    def append(self, raw: tuple) -> None:
        self._entries.append(raw)

    @staticmethod
    def entry(raw: tuple) -> dict:
        when, client, method, uri, status, user_agent = raw
        user_agent = user_agent.decode("latin-1") if user_agent is not None else None
        return {
            "time": when,
            "client": client,
            "method": method.decode("latin-1"),
            "path": uri.decode("latin-1"),
            "status": status,
            "mac": mac_from_user_agent(user_agent),
            "user_agent": user_agent,
        }

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        return map(self.entry, list(self._entries))

    def __getitem__(self, index: int) -> dict:
        return self.entry(self._entries[index])

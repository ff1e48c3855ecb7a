"""Provisioning server values as phones read them from DHCP or their settings.

A value that is only an IP address or host name means TFTP to that host; otherwise it
is a URL (``tftp://``, ``ftp://user:pass@host/dir/``, ``http://``, ``https://``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from labsim.phones.packed import SharedValues
from labsim.wire.numbers import is_number

SCHEMES = ("tftp", "ftp", "http", "https")
DEFAULT_PORTS = {"tftp": 69, "ftp": 21, "http": 80, "https": 443}


# A phone asks for the same few names on the same server every pass (hourly, for a week,
# in virtual time): the functions below are pure, and remembering their answers saves
# most of the URL building a resync costs. Bounded: a fleet has one entry per phone or file
# (tables whose missing entries are made: a lookup is no Python call).
CACHE_SIZE = 1 << 18


def _work_out_bare_mac(mac: str) -> str:
    return re.sub(r"[^0-9a-f]", "", mac.lower())


bare_mac = SharedValues(CACHE_SIZE, _work_out_bare_mac).one
"""A MAC as file names carry it: ``00:0B:82:12:34:56`` / ``00-0b-82-…`` -> ``000b82123456``."""


class BadProvisioningUrl(ValueError):
    pass


@dataclass(frozen=True)
class ServerUrl:
    scheme: str
    host: str
    port: int
    path: str  # the folder, always ending in "/"
    user: str | None = None
    password: str | None = None

    def file_url(self, filename: str, *, credentials: bool = False) -> str:
        """The URL of a file in this folder. Credentials are left out unless asked for:
        most vendors send them separately (Basic/Digest, FTP USER/PASS)."""
        return _file_urls((self, filename, credentials))

    def _build_url(self, filename: str, credentials: bool) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        netloc = host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"
        if credentials and self.user is not None:
            password = ":" + quote(self.password, safe="") if self.password is not None else ""
            netloc = f"{quote(self.user, safe='')}{password}@{netloc}"
        return urlunsplit((self.scheme, netloc, self.path + quote(filename.lstrip("/")), "", ""))

    def __str__(self) -> str:
        return self.file_url("")

    def with_credentials(self) -> str:
        """The folder URL with ``user:pass@`` kept (for vendors that carry the URL on and
        split the credentials off at download time)."""
        return self.file_url("", credentials=True)


_file_urls = SharedValues(CACHE_SIZE, lambda key: key[0]._build_url(key[1], key[2])).one


def parse_server(value: str, *, credential_separators: str = ":") -> ServerUrl:
    """Parse a provisioning server value. ``credential_separators`` lists the characters a
    vendor accepts between user and password (Avaya also accepts ``user;pass@``).
    A ServerUrl is frozen, so the same value gives the same (shared) one."""
    return _servers((value, credential_separators))


def _parse_server(value: str, credential_separators: str) -> ServerUrl:
    value = value.strip().strip("\x00").strip()
    if not value:
        raise BadProvisioningUrl("empty provisioning server value")
    if "://" not in value:
        value = "tftp://" + value
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise BadProvisioningUrl(f"{value!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise BadProvisioningUrl(f"unsupported scheme {scheme!r} in {value!r}; phones use {', '.join(SCHEMES)}")
    user = password = None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        for sep in credential_separators:
            if sep in userinfo:
                user, password = userinfo.split(sep, 1)
                break
        else:
            user = userinfo
        user = unquote(user)
        password = unquote(password) if password is not None else None
    host, port = netloc, DEFAULT_PORTS[scheme]
    if host.startswith("["):
        end = host.find("]")
        host, rest = host[1:end], host[end + 1 :]
        if rest.startswith(":"):
            port = _port(rest[1:], value)
    elif ":" in host:
        host, port_text = host.rsplit(":", 1)
        port = _port(port_text, value)
    if not host:
        raise BadProvisioningUrl(f"no host in {value!r}")
    path = parts.path or "/"
    if not path.endswith("/"):
        # A URL naming a file points at that file's folder for the vendor's own names.
        last = path.rsplit("/", 1)[-1]
        path = path[: -len(last)] if "." in last else path + "/"
    return ServerUrl(scheme, host.lower(), port, path, user, password)


_servers = SharedValues(CACHE_SIZE, lambda key: _parse_server(*key)).one


def _work_out_url_problem(url: str) -> str:
    try:
        urlsplit(url).port  # an unclosed "[" of an IPv6 host, a port that is no number or out of range
    except ValueError as exc:
        return f"bad URL {url[:200]!r}: {exc}"
    return ""


# Why a URL a phone was given cannot be asked for ("" when it can): a phone's setting may
# hold anything, and each network's fetch splits the URL again. Remembered, as a phone
# asks for its URLs again every pass.
url_problem = SharedValues(CACHE_SIZE, _work_out_url_problem).one


def url_part(url: str, part: str) -> str:
    """A part of a URL as ``urlsplit`` reads it (``"path"``, ``"netloc"``), or "" for a URL
    it refuses: a phone's setting may hold such a URL, and asking for it fails with
    :data:`url_problem`'s reason, so the phone's own reading of it must not raise first."""
    try:
        return getattr(urlsplit(url), part)
    except ValueError:
        return ""


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """A file URL's ``user:pass@`` taken out: (the URL without it, user, password); the
    user is None when the URL has none. For vendors that send credentials separately."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None, None
    host = parts.netloc.rsplit("@", 1)[1]
    password = unquote(parts.password) if parts.password is not None else None
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), unquote(parts.username), password


def _port(text: str, value: str) -> int:
    if not is_number(text) or not 0 < int(text) < 65536:
        raise BadProvisioningUrl(f"bad port {text!r} in {value!r}")
    return int(text)

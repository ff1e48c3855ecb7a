"""The client side of HTTP Basic and Digest authentication (RFC 7617, RFC 7616 / 2617),
as phones answer a 401 from a provisioning server."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')


@dataclass(frozen=True)
class DigestChallenge:
    realm: str
    nonce: str
    qop: str | None = None
    opaque: str | None = None
    algorithm: str = "MD5"

    def authorization(self, user: str, password: str, method: str, uri: str,
                      cnonce: str | None = None, nc: int = 1) -> str:
        hash_ = _HASHES[self.algorithm.upper().removesuffix("-SESS")]

        def h(text: str) -> str:
            return hash_(text.encode()).hexdigest()

        cnonce = cnonce or os.urandom(8).hex()
        ha1 = h(f"{user}:{self.realm}:{password}")
        if self.algorithm.upper().endswith("-SESS"):
            ha1 = h(f"{ha1}:{self.nonce}:{cnonce}")
        ha2 = h(f"{method}:{uri}")
        parts = [f'username="{user}"', f'realm="{self.realm}"', f'nonce="{self.nonce}"', f'uri="{uri}"',
                 f"algorithm={self.algorithm}"]
        if self.qop:
            qop = "auth"
            nc_text = f"{nc:08x}"
            response = h(f"{ha1}:{self.nonce}:{nc_text}:{cnonce}:{qop}:{ha2}")
            parts += [f"qop={qop}", f"nc={nc_text}", f'cnonce="{cnonce}"']
        else:
            response = h(f"{ha1}:{self.nonce}:{ha2}")
        parts.append(f'response="{response}"')
        if self.opaque is not None:
            parts.append(f'opaque="{self.opaque}"')
        return "Digest " + ", ".join(parts)


_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_challenges(headers: list[str]) -> list:
    """Each WWW-Authenticate header as "basic" or a DigestChallenge (others skipped)."""
    found: list = []
    for header in headers:
        scheme, _, rest = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            found.append("basic")
        elif scheme == "digest":
            params = {k.lower(): _unquote(v) for k, v in _PARAM.findall(rest)}
            algorithm = params.get("algorithm", "MD5")
            if algorithm.upper().removesuffix("-SESS") not in _HASHES:
                continue  # a hash we cannot compute: answering it with MD5 would only fail
            if "nonce" in params:
                qop = params.get("qop")
                found.append(DigestChallenge(
                    realm=params.get("realm", ""),
                    nonce=params["nonce"],
                    qop=qop if qop and "auth" in [q.strip() for q in qop.split(",")] else None,
                    opaque=params.get("opaque"),
                    algorithm=algorithm,
                ))
    return found

"""Client classes: per-vendor DHCP options, chosen by what a client sends in option 60.

A scenario says, for example::

    classes:
      - {name: yealink, match: {vendor_class: {prefix: "yealink"}}, options: {66: "http://..."}}
      - {name: avaya, match: {vendor_class: {equals: "Nortel-SIP-Phone-A"}}, options: {...}}
      - {name: polycom, match: {vendor_class: {regex: "Polycom"}}, options: {...}}

How option 60 is compared (decided here, once, for every kind of match):

* Trailing NUL bytes are removed first. Some phones send a C string with its terminator
  (Avaya's ``Nortel-SIP-Phone-A\\0``); nobody means the NUL to be part of the name, and
  ``equals: "Nortel-SIP-Phone-A"`` should match it. NULs elsewhere are kept.
* The bytes are read as Latin-1: one character per byte, so any payload can be matched,
  binary ones too (Polycom sends RFC 3925-style binary option 60 with "Polycom" inside:
  ``regex: "Polycom"`` finds it). Pattern text is compared the same way.
* Comparison is case-sensitive, as Kea and ISC dhcpd compare; write ``regex: "(?i)^yealink"``
  to ignore case.
* ``regex`` is a Python regular expression searched anywhere in the value (``re.search``,
  with DOTALL so ``.`` also crosses newline bytes); anchor it with ``^``/``$`` to pin it.
* Classes are tried in the order given and the first match wins: one class per client.
  A client that sends no option 60, or matches no class, gets the global options only.

The result is cached per distinct option-60 value (a fleet sends a handful), so the
per-packet cost is one dict lookup.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

MATCH_KINDS = ("equals", "prefix", "regex")
# Distinct option-60 values remembered; past this (a flood of random values) every
# lookup is computed again, so memory stays bounded.
CACHE_LIMIT = 4096


def vendor_class_text(raw: bytes) -> str:
    """Option 60 as the text classes are matched against (see the module docstring)."""
    return raw.rstrip(b"\x00").decode("latin-1")


@dataclass(frozen=True)
class VendorClassMatch:
    kind: str  # one of MATCH_KINDS
    value: str
    _regex: re.Pattern | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in MATCH_KINDS:
            raise ValueError(f"vendor_class match must be one of {', '.join(MATCH_KINDS)}, not {self.kind!r}")
        if not isinstance(self.value, str) or self.value == "":
            raise ValueError(f"vendor_class {self.kind}: expected a non-empty string, got {self.value!r}")
        if self.kind == "regex":
            object.__setattr__(self, "_regex", compile_vendor_regex(self.value))

    def matches(self, text: str) -> bool:
        if self.kind == "equals":
            return text == self.value
        if self.kind == "prefix":
            return text.startswith(self.value)
        return self._regex.search(text) is not None


def compile_vendor_regex(pattern: str) -> re.Pattern:
    """Compile a class's regex; ValueError with the reason and position when it is bad."""
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error as exc:
        where = f" at position {exc.pos}" if exc.pos is not None else ""
        raise ValueError(f"bad regular expression {pattern!r}: {exc.msg}{where}") from None


@dataclass(frozen=True)
class ClientClass:
    name: str
    match: VendorClassMatch
    options: dict[int, bytes] = field(default_factory=dict)  # payloads, as DhcpServerConfig.options


class ClientClassifier:
    """Finds the first class whose match accepts a client's option 60."""

    def __init__(self, classes: Sequence[ClientClass]):
        names = [c.name for c in classes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"client class names must be unique; repeated: {', '.join(duplicates)}")
        self.classes = tuple(classes)
        self._cache: dict[bytes | None, ClientClass | None] = {None: None}

    def classify(self, vendor_class: bytes | None) -> ClientClass | None:
        """The class for this option-60 payload (None: sent none, or no class matched)."""
        cache = self._cache
        try:
            return cache[vendor_class]
        except KeyError:
            pass
        found = None
        text = vendor_class_text(vendor_class)
        for candidate in self.classes:
            if candidate.match.matches(text):
                found = candidate
                break
        if len(cache) < CACHE_LIMIT:
            cache[vendor_class] = found
        return found

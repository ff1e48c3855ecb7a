"""Yealink configuration files (``.cfg``, firmware V70 and later): the text format only.

First line ``#!version:1.0.0.1``; ``#`` comments; ``key = value`` lines; ``%NULL%``
is an explicit empty value. Which keys mean what belongs to the phone profile.
"""

from __future__ import annotations

import sys

VERSION_HEADER = "#!version:1.0.0.1"
NULL_VALUE = "%NULL%"


class NotAYealinkConfig(ValueError):
    """The file is not a Yealink configuration file; the message says why."""


def parse(data: bytes, *, require_header: bool = True) -> dict[str, str]:
    """Settings in file order; a key set twice keeps its last value."""
    text = data.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.splitlines()
    if require_header and (not lines or lines[0].strip() != VERSION_HEADER):
        first = lines[0].strip()[:40] if lines else ""
        raise NotAYealinkConfig(f"first line is {first!r}, not {VERSION_HEADER!r}")
    settings: dict[str, str] = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue  # real phones skip lines that are not assignments
        key, value = key.strip(), value.strip()
        if not key:
            continue
        # Interned: a fleet's flash holds the same keys and mostly the same values, once.
        settings[sys.intern(key)] = "" if value == NULL_VALUE else sys.intern(value)
    return settings


def render(settings: dict[str, str]) -> bytes:
    """A configuration file with these settings (for tests and generated scenarios)."""
    lines = [VERSION_HEADER] + [f"{key} = {value if value != '' else NULL_VALUE}" for key, value in settings.items()]
    return ("\n".join(lines) + "\n").encode()

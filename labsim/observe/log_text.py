"""The one way a string from the network goes into a log line: the live log, events.jsonl,
report.json and report.html all use :func:`client_text`.

A TFTP file name, an FTP user name, an HTTP path, a DHCP vendor class, a SIP header or
a server's error text is whatever the other end chose to send. Written raw, it can forge
whole log lines (an embedded newline) or drive the reader's terminal (escape sequences).
Here every character that is not printable — control characters, newlines, DEL, the
Unicode line and paragraph separators, bidirectional overrides — becomes a visible
backslash escape, and bytes that are not UTF-8 become ``\\xNN``, so the line says exactly
what arrived and nothing more. Long values are cut, marked with "...".
"""

from __future__ import annotations

LIMIT = 200  # characters kept of one value


def client_text(value: str | bytes | None, limit: int = LIMIT) -> str:
    """``value`` as one safe line of text (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("utf-8", "backslashreplace")
    elif not isinstance(value, str):
        value = str(value)
    if not value.isprintable():  # the common case, a plain name, costs this one C-level check
        value = "".join(ch if ch.isprintable() else _escape(ch) for ch in value)
    return value if len(value) <= limit else value[: max(0, limit - 3)] + "..."


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"

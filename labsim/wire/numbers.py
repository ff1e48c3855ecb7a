"""Whole numbers as protocols, files and settings write them: ASCII digits.

``str.isdigit`` is also true for characters ``int`` refuses (``²``, ``①``: a ValueError
where a parser promised its own error) and for other scripts' digits (``٣``), which no
field of a protocol or a phone's setting holds. Every check before an ``int`` of text
goes through :func:`is_number`.
"""


def is_number(text: str) -> bool:
    """Whether ``text`` is one or more ASCII digits (no sign, no spaces)."""
    return text.isascii() and text.isdigit()

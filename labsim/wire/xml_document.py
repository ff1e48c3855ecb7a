"""An XML document from the bytes a server sent, or one error that says why it is none.

``ElementTree.fromstring`` raises ``ParseError`` for text that is not well-formed, but the
declaration's ``encoding`` brings other errors: ``LookupError`` for a name Python does not
know (``TTF-8``) or for a codec that is not a text encoding (``rot13``), ``ValueError`` for
one expat cannot read (``utf-16``, ``utf-7``) and ``UnicodeError`` for one that fails
(``idna``). Every vendor's XML parser reads through :func:`parse_xml`, so a file that
is not XML fails the phone's pass with a reason instead of ending the phone in an
internal error (found by the ``phone_config`` fuzz target).
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree


class NotXml(ValueError):
    """Bytes that are not a well-formed XML document in an encoding Python reads."""


def parse_xml(body: bytes | str, roots: tuple[str, ...] = ()) -> ElementTree.Element:
    """The document's root element; :class:`NotXml` for anything else, or for a root
    element not named in ``roots`` (any root when it is empty)."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise NotXml(f"not well-formed XML ({exc})") from None
    except (LookupError, ValueError) as exc:
        raise NotXml(f"not XML in an encoding that reads ({exc})") from None
    if roots and root.tag not in roots:
        raise NotXml(f"its root element is <{root.tag}>, not <{roots[0]}>")
    return root

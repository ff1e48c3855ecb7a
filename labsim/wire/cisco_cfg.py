"""Cisco SPA / MPP (3PCC) provisioning syntax, as codecs only (no I/O).

* **Profiles**: the XML "flat profile" (``<flat-profile><Profile_Rule>…</Profile_Rule>
  <Resync_Periodic>3600</Resync_Periodic></flat-profile>``; every element without child
  elements is a parameter, its text the value, ``ua="…"`` attributes aside), or the
  plain-text source syntax ``Profile_Rule "tftp://…/spa$PSN.cfg" ;`` with ``#`` comments,
  where ``Line_Enable[1]`` is the XML ``Line_Enable_1_``.
* **Profile rules** (``Profile_Rule``, ``Upgrade_Rule``): an optional ``[--options]``
  prefix (``--uid``/``--pwd`` credentials, ``--key`` for an encrypted profile) and a URL
  with macros: ``$MA`` (MAC, lowercase), ``$MAU`` (uppercase), ``$MAC`` (lowercase with
  colons), ``$PN`` (product name), ``$PSN`` (product series number), ``$SWVER`` (software
  version) and others; ``$(NAME)`` is the same as ``$NAME``; ``$$`` is a literal ``$``.
  A rule's alternatives, conditions and assignments (``( $SWVER ne 2.0.6 )? url | url``)
  are ``labsim.wire.cisco_rules``.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from labsim.wire.xml_document import NotXml, parse_xml

MAX_PROFILE_BYTES = 4 << 20


class NotACiscoProfile(ValueError):
    """A profile the phone cannot read (the reason is the message)."""


# --- profiles -----------------------------------------------------------------------------


def parse_profile(body: bytes) -> dict[str, str]:
    """Parameters from an XML flat profile or the plain-text syntax. Raises NotACiscoProfile."""
    if len(body) > MAX_PROFILE_BYTES:
        raise NotACiscoProfile(f"profile is {len(body)} bytes; more than {MAX_PROFILE_BYTES} is not read")
    text = body.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        return _parse_xml(body)
    return _parse_plain(body)


def _parse_xml(body: bytes) -> dict[str, str]:
    try:
        root = parse_xml(body)
    except NotXml as exc:
        raise NotACiscoProfile(f"profile is {exc}") from None
    settings: dict[str, str] = {}
    for element in root.iter():
        if element is root or len(element):
            continue  # groups (and the flat-profile root) hold parameters, they are not ones
        settings[element.tag] = (element.text or "").strip()
    return settings


_PLAIN_LINE = re.compile(r'^\s*([A-Za-z][A-Za-z0-9_]*)(?:\[(\d+)\])?\s*(?:"((?:[^"\\]|\\.)*)"|(\S*?))\s*;?\s*$')


def _parse_plain(body: bytes) -> dict[str, str]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise NotACiscoProfile("profile is neither XML nor text (a compiled or encrypted SPA profile?)") from None
    settings: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _PLAIN_LINE.match(stripped)
        if match is None:
            raise NotACiscoProfile(f"line {number}: not 'Name \"value\" ;': {stripped[:60]!r}")
        name, index, quoted, bare = match.groups()
        if index is not None:
            name = f"{name}_{index}_"
        settings[name] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
    return settings


def render_xml(settings: dict[str, str]) -> bytes:
    """A flat profile setting ``settings`` (tests and scenarios)."""
    lines = "".join(f"  <{name}>{escape(value)}</{name}>\n" for name, value in settings.items())
    return f"<flat-profile>\n{lines}</flat-profile>\n".encode()


# --- profile rules -------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    url: str  # macros expanded; may be relative ("/spa504G.cfg"): the DHCP server's
    options: dict[str, str] = field(default_factory=dict)  # "--uid" -> "admin" ...


def parse_rule(rule: str) -> Rule:
    """``[--uid u --pwd p] http://host/$PSN.xml`` -> Rule (macros are not expanded here).
    Raises NotACiscoProfile for an unclosed ``[``."""
    rule = rule.strip()
    options: dict[str, str] = {}
    if rule.startswith("["):
        end = rule.find("]")
        if end < 0:
            raise NotACiscoProfile(f"rule {rule!r}: '[' without ']'")
        try:
            words = shlex.split(rule[1:end])
        except ValueError as exc:
            raise NotACiscoProfile(f"rule {rule!r}: {exc}") from None
        index = 0
        while index < len(words):
            word = words[index]
            has_value = index + 1 < len(words) and not words[index + 1].startswith("--")
            options[word] = words[index + 1] if has_value else ""
            index += 2 if has_value else 1
        rule = rule[end + 1:].strip()
    return Rule(rule, options)


# The macro names, longest first so that $MAU is not read as $MA followed by "U".
MACRO_NAMES = ("SWVER", "HWVER", "PRVTMR", "UPGTMR", "REGTMR1", "REGTMR2", "PSN", "MAU", "MAC", "EXTIP", "MA",
               "PN", "SN", "IP", *(f"GPP_{letter}" for letter in "ABCDEFGHIJKLMNOP"))
_MACRO = re.compile(r"\$\$|\$\((\w+)(?::([0-9]+)(?::([0-9]+))?)?\)|\$(" + "|".join(MACRO_NAMES) + ")")


def expand_macros(text: str, values: dict[str, str]) -> str:
    """Replace ``$NAME`` / ``$(NAME)`` with ``values[NAME]``; ``$$`` is ``$``, and not
    read again (``$$MAU`` is ``$MAU``). ``$(NAME:p)`` is the value from character ``p``
    on, ``$(NAME:p:q)`` its ``q`` characters from ``p`` (``$(MAU:8:2)``). A name without
    a value is left as written (*unverified*)."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        value = values.get(name)
        if value is None:
            return match.group(0)
        start, length = match.group(2), match.group(3)
        if start is None:
            return value
        return value[int(start):] if length is None else value[int(start):int(start) + int(length)]

    return _MACRO.sub(replace, text)

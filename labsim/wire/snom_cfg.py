"""Snom settings files and setting URLs, as codecs only (no I/O).

Two forms of settings file, as Snom's provisioning wiki describes them:

* **XML**::

      <settings>
        <phone-settings>
          <language perm="RW">English</language>
          <user_name idx="1" perm="R">1001</user_name>      -> user_name1
        </phone-settings>
        <functionKeys><fkey idx="0" perm="">line</fkey></functionKeys>   -> fkey0
        <firmware-settings><firmware perm="">http://…/snomD785-10.1.54.13-SIP-r.bin</firmware></firmware-settings>
        <setting-files><file url="http://…/{mac}.xml"/></setting-files>
      </settings>

  Every child of ``phone-settings``, ``functionKeys`` and ``firmware-settings`` is a
  setting; ``idx`` appends the index to the name (the text form's ``user_name1``).
  ``setting-files`` lists further files to read after this one. Other sections (phone
  book, dial plan, language packs) are not settings and are skipped.
* **Text** (the old ``.htm`` files), one setting a line: ``name$: value`` (the user may
  change it: perm ``RW``), ``name!: value`` (read-only: perm ``R``) or ``name: value``
  (no permission given). Files were often wrapped in ``<html><pre>`` … ``</pre></html>``:
  lines that are only such tags are skipped, as are blank lines and ``#`` comments.

Setting URLs take macros: ``{mac}`` (the MAC without separators) and ``{model}``
(``snomD785``); an unknown ``{name}`` is left as written.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from labsim.wire.xml_document import NotXml, parse_xml

MAX_FILE_BYTES = 4 << 20  # a settings file larger than this is not read
SETTING_SECTIONS = ("phone-settings", "functionKeys", "firmware-settings")
PERM_FLAGS = {"$": "RW", "!": "R"}  # text form: the character before the colon


class NotASnomSettingsFile(ValueError):
    """A file the phone cannot read as settings (the reason is the message)."""


@dataclass(frozen=True)
class Setting:
    name: str  # with its index appended: "user_name1"
    value: str
    perm: str | None = None  # "R", "RW", or None when the file gives none


@dataclass
class SettingsFile:
    form: str  # "xml" or "text"
    settings: list[Setting] = field(default_factory=list)
    setting_files: list[str] = field(default_factory=list)  # <setting-files> URLs, in order

    def values(self) -> dict[str, str]:
        """name -> value; a name given twice: the later one, as the phone applies them in order."""
        return {setting.name: setting.value for setting in self.settings}


def parse(body: bytes) -> SettingsFile:
    """Read either form. Raises NotASnomSettingsFile."""
    if len(body) > MAX_FILE_BYTES:
        raise NotASnomSettingsFile(f"{len(body)} bytes; more than {MAX_FILE_BYTES} is not read")
    head = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:64].lower()
    if head.startswith((b"<?xml", b"<settings", b"<phone-settings")):
        return _parse_xml(body)
    return _parse_text(body)


# --- XML ---------------------------------------------------------------------------------


def _parse_xml(body: bytes) -> SettingsFile:
    try:
        root = parse_xml(body, roots=("settings", "phone-settings"))
    except NotXml as exc:
        raise NotASnomSettingsFile(str(exc)) from None
    parsed = SettingsFile("xml")
    # A bare <phone-settings> root is accepted as the one section (unverified: seen in the wild).
    sections = [root] if root.tag == "phone-settings" else list(root)
    for section in sections:
        if section.tag in SETTING_SECTIONS:
            for element in section:
                parsed.settings.append(_xml_setting(element))
        elif section.tag == "setting-files":
            for element in section:
                url = (element.get("url") or element.text or "").strip()
                if element.tag == "file" and url:
                    parsed.setting_files.append(url)
    return parsed


def _xml_setting(element: ElementTree.Element) -> Setting:
    name = element.tag + (element.get("idx") or "").strip()
    perm = element.get("perm")
    return Setting(name, (element.text or "").strip(), perm.strip() or None if perm is not None else None)


# --- text --------------------------------------------------------------------------------

# name, an optional permission flag, a colon, the value (the rest of the line).
_TEXT_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\-]*)\s*([$!]?)\s*:\s?(.*)$")
_HTML_TAGS = re.compile(r"^(?:\s*</?(?:html|pre|body|head)\s*>)+\s*$", re.IGNORECASE)


def _parse_text(body: bytes) -> SettingsFile:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise NotASnomSettingsFile("neither XML nor UTF-8 text (a binary file?)") from None
    parsed = SettingsFile("text")
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or _HTML_TAGS.match(stripped):
            continue
        match = _TEXT_LINE.match(stripped)
        if match is None:
            raise NotASnomSettingsFile(f"line {number}: not 'name: value': {stripped[:60]!r}")
        name, flag, value = match.groups()
        parsed.settings.append(Setting(name, value.strip(), PERM_FLAGS.get(flag)))
    if not parsed.settings:
        raise NotASnomSettingsFile("no settings in the file")
    return parsed


# --- writing (tests and scenarios) ----------------------------------------------------------


def render_xml(settings: dict[str, str], *, perm: str = "RW", setting_files: tuple[str, ...] = ()) -> bytes:
    """A ``<settings>`` file setting ``settings`` with ``perm`` and chaining ``setting_files``."""
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<settings>", "  <phone-settings>"]
    lines += [f"    <{name} perm={quoteattr(perm)}>{escape(str(value))}</{name}>" for name, value in settings.items()]
    lines.append("  </phone-settings>")
    if setting_files:
        lines.append("  <setting-files>")
        lines += [f"    <file url={quoteattr(url)}/>" for url in setting_files]
        lines.append("  </setting-files>")
    lines.append("</settings>")
    return ("\n".join(lines) + "\n").encode()


def render_text(settings: dict[str, str], *, flag: str = "$") -> bytes:
    """The old text form, wrapped in ``<html><pre>`` as Snom's examples are."""
    body = "".join(f"{name}{flag}: {value}\n" for name, value in settings.items())
    return f"<html><pre>\n{body}</pre></html>\n".encode()


# --- URLs and firmware names -----------------------------------------------------------------

_MACRO = re.compile(r"\{(\w+)\}")


def expand_macros(url: str, values: dict[str, str]) -> str:
    """``{mac}``, ``{model}`` … replaced from ``values``; an unknown name stays as written."""
    return _MACRO.sub(lambda match: values.get(match.group(1), match.group(0)), url)


_IMAGE_VERSION = re.compile(r"-(\d+(?:\.\d+){2,3})(?=[-.]|$)")


def image_version(url: str) -> str:
    """The firmware version an image's name says: ``…/snomD785-10.1.54.13-SIP-r.bin`` ->
    ``10.1.54.13``; a name without one is its own version (so it is flashed once)."""
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    match = _IMAGE_VERSION.search(name)
    return match.group(1) if match else name

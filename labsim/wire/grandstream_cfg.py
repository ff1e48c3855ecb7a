"""Grandstream provisioning files, as codecs only (no I/O).

* A **configuration file** (``cfg<mac>.xml``, ``cfg<model>.xml``, ``cfg.xml``) is XML::

      <gs_provision version="1">
        <mac>000b82123456</mac>
        <config version="1">
          <P271>1</P271>
          <P237>prov.example.com/gs</P237>
        </config>
      </gs_provision>

  Config version 1 holds P-values: one element per parameter, named ``P<number>``, its
  text the value. ``<mac>`` is optional; when present it names the only phone that may
  take the file. Config version 2 holds alias names
  (``<item name="account.1.enable">Yes</item>``); they are read as they are, keyed by
  the alias (labsim does not map aliases to P-values).
* The legacy ``cfg<mac>`` is the binary file Grandstream's configuration tool makes
  (encrypted with the MAC): labsim cannot read it. Only an XML body is read under that name.
* A **firmware image** (``gxp2170fw.bin``) carries its version in a signed binary header.
  labsim's stand-in images carry it as text: the first dotted quad (``1.0.11.3``) in the
  first IMAGE_HEADER_BYTES bytes is the version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from labsim.wire.provisioning_url import bare_mac
from labsim.wire.xml_document import NotXml, parse_xml

MAX_FILE_BYTES = 4 << 20  # configuration files are kilobytes; refuse to parse anything huge
IMAGE_HEADER_BYTES = 512
_P_VALUE = re.compile(r"^P\d+$")
_DOTTED_QUAD = re.compile(rb"(?<![\d.])(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,5})(?![\d.])")
_BOM_AND_SPACE = b"\xef\xbb\xbf \t\r\n"


class NotAGrandstreamFile(ValueError):
    """A file the phone refuses (the reason is the message)."""


@dataclass(frozen=True)
class GsProvision:
    """A parsed ``<gs_provision>`` file."""

    mac: str | None  # 12 lowercase hex digits, or None when the file names no phone
    config_version: str  # "1" (P-values) or "2" (alias names)
    values: dict[str, str] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()  # elements of a version-1 config that are not P-values

    def is_for(self, mac: str) -> bool:
        """True when the file names no phone or names this one."""
        return self.mac is None or self.mac == bare_mac(mac)


def is_xml(body: bytes) -> bool:
    return body.lstrip(_BOM_AND_SPACE).startswith(b"<")


def parse_provision(body: bytes) -> GsProvision:
    """Read a ``<gs_provision>`` file. Raises NotAGrandstreamFile with the reason."""
    if len(body) > MAX_FILE_BYTES:
        raise NotAGrandstreamFile(f"{len(body)} bytes; more than {MAX_FILE_BYTES} is not read")
    if not is_xml(body):
        raise NotAGrandstreamFile("not XML (a legacy binary or encrypted configuration file?)")
    try:
        root = parse_xml(body, roots=("gs_provision",))
    except NotXml as exc:
        raise NotAGrandstreamFile(str(exc)) from None
    mac_element = root.find("mac")
    mac = None
    if mac_element is not None and (mac_element.text or "").strip():
        mac = bare_mac(mac_element.text)
        if len(mac) != 12:
            raise NotAGrandstreamFile(f"<mac>{mac_element.text.strip()}</mac> is not a MAC address")
    config = root.find("config")
    if config is None:
        raise NotAGrandstreamFile("no <config> element")
    version = (config.get("version") or "1").strip()
    if version == "1":
        values, ignored = {}, []
        for element in config:
            if _P_VALUE.match(element.tag):
                values[element.tag] = (element.text or "").strip()
            else:
                ignored.append(element.tag)
        return GsProvision(mac, version, values, tuple(ignored))
    if version == "2":
        values = {}
        for item in config.iter("item"):
            name = (item.get("name") or "").strip()
            if not name:
                raise NotAGrandstreamFile("config version 2: an <item> without a name")
            values[name] = (item.text or "").strip()
        return GsProvision(mac, version, values)
    raise NotAGrandstreamFile(f"config version {version!r} is not known (1: P-values, 2: alias names)")


def render_provision(values: dict[str, str], *, mac: str | None = None, config_version: str = "1") -> bytes:
    """A ``<gs_provision>`` file setting ``values`` (tests and scenarios)."""
    mac_line = f"  <mac>{bare_mac(mac)}</mac>\n" if mac else ""
    if config_version == "1":
        lines = "".join(f"    <{name}>{escape(str(value))}</{name}>\n" for name, value in values.items())
    else:
        lines = "".join(f"    <item name={quoteattr(name)}>{escape(str(value))}</item>\n" for name, value in values.items())
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<gs_provision version="1">\n{mac_line}'
            f'  <config version="{config_version}">\n{lines}  </config>\n</gs_provision>\n').encode()


def image_version(body: bytes) -> str | None:
    """The version a (stand-in) firmware image says: the first dotted quad in its header."""
    match = _DOTTED_QUAD.search(body[:IMAGE_HEADER_BYTES])
    return match.group(1).decode() if match else None


def render_image(version: str, size: int = 256) -> bytes:
    """A stand-in firmware image of ``version`` (tests and scenarios)."""
    header = f"Grandstream firmware stand-in version {version}\n".encode()
    return header + b"\0" * max(0, size - len(header))

"""Polycom/Poly UC Software files and identity bytes, as codecs only (no I/O).

* The **master configuration file** (``<mac>.cfg`` or ``000000000000.cfg``) is XML with
  one ``<APPLICATION>`` element: ``APP_FILE_PATH`` (the application image, ``sip.ld``),
  ``CONFIG_FILES`` (a comma-separated list, read in order), and the folders the phone
  uploads to (``LOG_FILE_DIRECTORY``, ``OVERRIDES_DIRECTORY``). A child element
  ``<APPLICATION_VVX400 APP_FILE_PATH_VVX400=… CONFIG_FILES_VVX400=…/>`` overrides them
  for that model.
* A **configuration file** is XML whose parameters are the attributes of its elements,
  at any depth: ``<reg reg.1.address="1001"/>``. Across ``CONFIG_FILES`` the **first**
  file that sets a parameter wins (the opposite of Yealink, where later files override).
* **Option 60** is sent in the RFC 3925 form (enterprise 13885, sub-options 1 "Polycom",
  2 model, 3 part number, 4 application version), not as plain text.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

from labsim.wire import dhcp
from labsim.wire.dhcp_options import encode_option_value
from labsim.wire.xml_document import NotXml, parse_xml

POLYCOM_ENTERPRISE = 13885  # IANA enterprise number of Polycom, Inc.
MAC_MACRO = "[PHONE_MAC_ADDRESS]"
MAX_FILE_BYTES = 4 << 20  # a configuration file is kilobytes; refuse to parse anything huge


class NotAPolycomFile(ValueError):
    """A master or configuration file the phone cannot read (the reason is the message)."""


# --- option 60 in RFC 3925 form ---------------------------------------------------------


def vendor_class(model: str, part_number: str, version: str) -> bytes:
    """Option 60's payload: enterprise 13885, data length, then sub-option TLVs
    1 "Polycom", 2 model, 3 part number, 4 application version (RFC 3925 section 4's
    layout, the same as option 125's; the encoder is the scenario layer's)."""
    sub_options = [{"code": 1, "value": "Polycom"}, {"code": 2, "value": model},
                   {"code": 3, "value": part_number}, {"code": 4, "value": version}]
    return encode_option_value(125, {"enterprise": POLYCOM_ENTERPRISE, "sub_options": sub_options})


def decode_vendor_class(payload: bytes) -> list[tuple[int, dict[int, bytes]]]:
    """[(enterprise, {sub-option code: value})] from an RFC 3925 style payload.
    ValueError when a length runs past the end."""
    vendors = []
    position = 0
    while position < len(payload):
        if position + 5 > len(payload):
            raise ValueError(f"truncated vendor header at byte {position}")
        enterprise = int.from_bytes(payload[position:position + 4], "big")
        length = payload[position + 4]
        data = payload[position + 5:position + 5 + length]
        if len(data) != length:
            raise ValueError(f"enterprise {enterprise}: data length {length} runs past the end")
        vendors.append((enterprise, dict(dhcp.decode_tlvs(data))))
        position += 5 + length
    return vendors


# --- the master configuration file ------------------------------------------------------


@dataclass(frozen=True)
class MasterFile:
    app_file_path: str  # "" when the master names no application
    config_files: list[str] = field(default_factory=list)
    log_file_directory: str = ""
    overrides_directory: str = ""


def parse_master(body: bytes, model_token: str, mac: str) -> MasterFile:
    """The master file as the phone of ``model_token`` (``VVX400``) with ``mac`` reads it:
    its model's element overrides the generic attributes, and ``[PHONE_MAC_ADDRESS]`` in
    file names becomes the MAC (lowercase, no separators). Raises NotAPolycomFile."""
    root = _xml_root(body, "master configuration file")
    application = root if root.tag == "APPLICATION" else root.find(".//APPLICATION")
    if application is None:
        raise NotAPolycomFile(f"no <APPLICATION> element (the root is <{root.tag}>)")
    attributes = dict(application.attrib)
    model_element = application.find(f"APPLICATION_{model_token}")
    if model_element is not None:
        suffix = f"_{model_token}"
        for name, value in model_element.attrib.items():
            if name.endswith(suffix):
                attributes[name[: -len(suffix)]] = value
    bare = mac.replace(":", "").replace("-", "").lower()
    config_files = [substitute_mac(name.strip(), bare) for name in attributes.get("CONFIG_FILES", "").split(",")]
    return MasterFile(
        app_file_path=substitute_mac(attributes.get("APP_FILE_PATH", "").strip(), bare),
        config_files=[name for name in config_files if name],
        log_file_directory=attributes.get("LOG_FILE_DIRECTORY", "").strip(),
        overrides_directory=attributes.get("OVERRIDES_DIRECTORY", "").strip(),
    )


def substitute_mac(name: str, bare_mac: str) -> str:
    return name.replace(MAC_MACRO, bare_mac)


# --- configuration files ----------------------------------------------------------------


def parse_config(body: bytes) -> dict[str, str]:
    """Every element attribute is a parameter. Inside one file the first occurrence of a
    parameter wins too (*unverified*: the same rule as across files)."""
    root = _xml_root(body, "configuration file")
    settings: dict[str, str] = {}
    for element in root.iter():
        for name, value in element.attrib.items():
            settings.setdefault(name, value)
    return settings


def merge_first_wins(files: list[dict[str, str]]) -> dict[str, str]:
    """Polycom's precedence: the first file in the list that sets a parameter wins."""
    merged: dict[str, str] = {}
    for settings in files:
        for name, value in settings.items():
            merged.setdefault(name, value)
    return merged


def render_config(settings: dict[str, str], root: str = "polycomConfig", element: str = "ALL") -> bytes:
    """A configuration file setting ``settings`` (tests, and the overrides file a phone
    uploads: ``render_config(values, "PHONE_CONFIG", "OVERRIDES")``)."""
    attributes = "".join(f"\n    {name}={quoteattr(value)}" for name, value in settings.items())
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<{root}>\n  <{element}{attributes}/>\n'
            f"</{root}>\n").encode()


def render_master(config_files: list[str], app_file_path: str = "", **attributes: str) -> bytes:
    """A master file (tests, scenarios): ``render_master(["a.cfg"], LOG_FILE_DIRECTORY="logs")``."""
    items = {"APP_FILE_PATH": app_file_path, "CONFIG_FILES": ", ".join(config_files), **attributes}
    text = " ".join(f"{name}={quoteattr(value)}" for name, value in items.items())
    return f'<?xml version="1.0" standalone="yes"?>\n<APPLICATION {text}/>\n'.encode()


def _xml_root(body: bytes, what: str) -> ElementTree.Element:
    if len(body) > MAX_FILE_BYTES:
        raise NotAPolycomFile(f"{what} is {len(body)} bytes; more than {MAX_FILE_BYTES} is not read")
    try:
        return parse_xml(body)
    except NotXml as exc:
        raise NotAPolycomFile(f"{what} is {exc}") from None

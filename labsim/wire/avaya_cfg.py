"""Avaya 1200 / 1100 series SIP provisioning files: the text formats only.

Two formats, both plain text with ``#`` comment lines:

* The **model provisioning file** (``1220SIP.cfg``, ``1140eSIP.cfg`` ...): sections such
  as ``[DEVICE_CONFIG]`` or ``[FW]``, each followed by ``KEYWORD value`` lines
  (``VERSION``, ``DOWNLOAD_MODE``, ``FILENAME``, ``PROTOCOL``, ``SERVER_IP``,
  ``SRV_USER_NAME``, ``SRV_USER_PASS``). A line longer than 80 characters makes the phone
  ignore that line and the rest of the file.
* The **settings files** (the device configuration file a ``[DEVICE_CONFIG]`` section
  names, the per-phone ``SIP<MAC>.cfg``, server profiles): ``KEY VALUE`` lines.

What the keywords and keys *mean* belongs to the phone profile (labsim/phones/avaya.py).
Firmware images are modelled too: labsim's stand-in for Avaya's code signing is a
signature header at the start of the image (see ``FIRMWARE_SIGNATURE``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from labsim.wire.numbers import is_number

MAX_LINE_CHARS = 80
DOWNLOAD_MODES = ("AUTO", "FORCED")
PROTOCOLS = ("TFTP", "FTP", "HTTP", "HTTPS")
DEFAULT_DOWNLOAD_MODE = "AUTO"
DEFAULT_PROTOCOL = "TFTP"
FIRMWARE_SECTION = "FW"

# VERSION of every section but [FW]: a counter of six to ten digits.
_COUNTER_VERSION = re.compile(r"^[0-9]{6,10}$")
# [FW] VERSION: the load's name, up to 19 characters, e.g. SIP12x004.01.13.00 or
# SIP1140e04.04.23.00: a prefix, then four two-digit fields.
_FIRMWARE_VERSION = re.compile(r"^(SIP[0-9A-Za-z]+?)([0-9]{2}\.[0-9]{2}\.[0-9]{2}\.[0-9]{2})$")
FIRMWARE_VERSION_MAX_CHARS = 19

# Images whose bytes start with this are "signed by Avaya"; anything else fails
# authentication. Real images carry a vendor signature the phone checks; labsim only
# needs the outcome (installed or not), so an agreed header stands in for it.
FIRMWARE_SIGNATURE = b"LABSIM-AVAYA-SIGNED-FIRMWARE\n"


# --- the model provisioning file ---------------------------------------------------------


@dataclass(frozen=True)
class Section:
    name: str  # upper case, without brackets: "DEVICE_CONFIG"
    line: int  # 1-based line number of the [HEADER]
    keywords: dict[str, str] = field(default_factory=dict)  # KEYWORD -> value (the last one wins)
    filenames: tuple[str, ...] = ()  # FILENAME may repeat ([LANGUAGE], [TONES])

    @property
    def version(self) -> str | None:
        return self.keywords.get("VERSION")

    @property
    def download_mode(self) -> str:
        mode = self.keywords.get("DOWNLOAD_MODE", DEFAULT_DOWNLOAD_MODE).upper()
        return mode if mode in DOWNLOAD_MODES else DEFAULT_DOWNLOAD_MODE

    @property
    def protocol(self) -> str:
        return self.keywords.get("PROTOCOL", DEFAULT_PROTOCOL).upper()

    @property
    def server_ip(self) -> str | None:
        return self.keywords.get("SERVER_IP") or None

    @property
    def user(self) -> str | None:
        return self.keywords.get("SRV_USER_NAME")

    @property
    def password(self) -> str | None:
        return self.keywords.get("SRV_USER_PASS")


@dataclass(frozen=True)
class ProvisioningFile:
    sections: tuple[Section, ...]
    # The first line longer than MAX_LINE_CHARS: it and every line after it were ignored.
    ignored_from_line: int | None = None
    problems: tuple[str, ...] = ()  # lines that were read but not understood


def parse_provisioning(data: bytes) -> ProvisioningFile:
    """The sections of a model provisioning file, in file order."""
    sections: list[Section] = []
    problems: list[str] = []
    ignored_from = None
    current: tuple[str, int, dict[str, str], list[str]] | None = None

    def close() -> None:
        if current is not None:
            name, line, keywords, filenames = current
            sections.append(Section(name, line, keywords, tuple(filenames)))

    for number, line in enumerate(_lines(data), start=1):
        if len(line) > MAX_LINE_CHARS:
            ignored_from = number
            break
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("[") and text.endswith("]"):
            close()
            current = (text[1:-1].strip().upper(), number, {}, [])
            continue
        parts = text.split(None, 1)
        keyword, value = parts[0].upper(), parts[1].strip() if len(parts) > 1 else ""
        if current is None:
            problems.append(f"line {number}: {keyword} outside any [SECTION]")
        elif keyword == "FILENAME":
            if value:
                current[3].append(value)
        else:
            current[2][keyword] = value
    close()
    return ProvisioningFile(tuple(sections), ignored_from, tuple(problems))


def version_problem(section: Section) -> str | None:
    """Why this section's VERSION is unusable, or None when it is fine."""
    version = section.version
    if not version:
        return "no VERSION (mandatory in every section)"
    if section.name == FIRMWARE_SECTION:
        if len(version) > FIRMWARE_VERSION_MAX_CHARS or not _FIRMWARE_VERSION.match(version):
            return f"VERSION {version!r} is not a firmware load name like SIP12x004.01.13.00"
        return None
    if not _COUNTER_VERSION.match(version):
        return f"VERSION {version!r} is not a number of 6 to 10 digits"
    return None


def is_higher(candidate: str, stored: str | None) -> bool:
    """AUTO mode's test: is ``candidate`` higher than the version flash holds?

    Counters compare as numbers (``0000010`` > ``000009``); firmware load names compare
    by their four numeric fields. Nothing stored, or a stored value that cannot be
    read, counts as lower.
    """
    new, old = _version_key(candidate), _version_key(stored)
    if new is None:
        return False
    if old is None or type(new) is not type(old):
        return True
    return new > old


def _version_key(version: str | None):
    if not version:
        return None
    if is_number(version):
        return int(version)
    match = _FIRMWARE_VERSION.match(version)
    if match:
        return tuple(int(part) for part in match.group(2).split("."))
    return None


def firmware_parts(version: str) -> tuple[str, str] | None:
    """``SIP12x004.00.04.00`` -> (``SIP12x0``, ``04.00.04.00``)."""
    match = _FIRMWARE_VERSION.match(version or "")
    return (match.group(1), match.group(2)) if match else None


def render_provisioning(sections: list[tuple[str, dict[str, str | list[str]]]]) -> bytes:
    """A model provisioning file (for tests and generated scenarios). A list value writes
    the keyword once per item (several FILENAMEs)."""
    out: list[str] = []
    for name, keywords in sections:
        out.append(f"[{name}]")
        for keyword, value in keywords.items():
            for item in value if isinstance(value, list) else [value]:
                out.append(f"{keyword} {item}".rstrip())
    return ("\n".join(out) + "\n").encode()


# --- settings files ---------------------------------------------------------------------


def parse_settings(data: bytes, *, max_line_chars: int | None = None) -> dict[str, str]:
    """``KEY VALUE`` lines in file order; a key set twice keeps its last value. A key
    with nothing after it is kept with the value "" (present but blank). With
    ``max_line_chars``, a longer line ends the file as in the provisioning file."""
    settings: dict[str, str] = {}
    for line in _lines(data):
        if max_line_chars is not None and len(line) > max_line_chars:
            break
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split(None, 1)
        settings[parts[0]] = parts[1].strip() if len(parts) > 1 else ""
    return settings


def render_settings(settings: dict[str, str]) -> bytes:
    return ("\n".join(f"{key} {value}".rstrip() for key, value in settings.items()) + "\n").encode()


# --- firmware images --------------------------------------------------------------------


def sign_firmware(payload: bytes = b"") -> bytes:
    """An image that passes the phone's authentication."""
    return FIRMWARE_SIGNATURE + payload


def is_authentic_firmware(image: bytes) -> bool:
    return image.startswith(FIRMWARE_SIGNATURE)


def _lines(data: bytes) -> list[str]:
    text = data.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    # Only CR / LF end a line: str.splitlines would also split on form feeds and the like.
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")

"""The DHCP server's lease file: leases kept across a restart.

A small text format a person can read and fix, one lease a line::

    # labsim DHCP leases v1
    # state mac ip expires (seconds since the epoch, the server's clock)
    bound 00:15:65:aa:00:01 10.1.0.10 1767225600.0
    free 00:15:65:aa:00:02 10.1.0.11 0
    declined - 10.1.0.12 1767312000.0

``bound``: an ACKed lease and when it runs out. ``free``: the address a client had last
(released, expired, or only offered), so it gets the same one back. ``declined``: an
address a client reported in use, kept out of the pool until then.

Parsing and formatting are pure functions; reading and writing are plain file I/O done
at start and by the edge's timer (never per packet). A write goes to a temporary file
renamed over the old one, so a crash mid-write leaves the previous version intact.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from socket import inet_aton, inet_ntoa

from labsim.services.dhcp_leases import LeaseRecord  # the record is the core's; the file is the edge's

HEADER = "# labsim DHCP leases v1"
STATES = ("bound", "free", "declined")


class LeaseFileError(ValueError):
    """A lease file that cannot be read, with the file and line to look at."""

    def __init__(self, path: str, line: int | None, message: str):
        self.path, self.line, self.message = path, line, message
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"lease file {where}: {message}")


def resolve_lease_path(path: str | None, base_dir: str | None) -> str | None:
    """A scenario's ``lease_file``: absolute as given, else relative to ``base_dir``
    (the report folder), else to the working directory."""
    if not path:
        return None
    path = os.path.expanduser(path)
    if os.path.isabs(path) or not base_dir:
        return path
    return os.path.join(base_dir, path)


def format_leases(records: Iterable[LeaseRecord]) -> str:
    lines = [HEADER, "# state mac ip expires (seconds since the epoch, the server's clock)"]
    for record in records:
        mac = record.mac.hex(":") if record.mac is not None else "-"
        lines.append(f"{record.state} {mac} {record.ip} {record.expires!r}")
    return "\n".join(lines) + "\n"


def parse_leases(text: str, path: str = "<lease file>") -> list[LeaseRecord]:
    """Every lease in ``text``; LeaseFileError naming the first bad line."""
    records = []
    lines = text.splitlines()
    if lines and lines[0].startswith("# labsim DHCP leases") and lines[0].strip() != HEADER:
        raise LeaseFileError(path, 1, f"unsupported version {lines[0].strip()!r}; this labsim reads {HEADER!r}")
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            records.append(_parse_line(line))
        except ValueError as exc:
            raise LeaseFileError(path, number, f"{exc} in {line[:120]!r}") from None
    return records


def _parse_line(line: str) -> LeaseRecord:
    fields = line.split()
    if len(fields) != 4:
        raise ValueError(f"expected 4 fields 'state mac ip expires', found {len(fields)}")
    state, mac_text, ip, expires_text = fields
    if state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}, not {state!r}")
    if mac_text == "-":
        if state != "declined":
            raise ValueError(f"a {state} lease needs a MAC address, not '-'")
        mac = None
    else:
        try:
            mac = bytes.fromhex(mac_text.replace(":", ""))
        except ValueError:
            mac = b""
        if len(mac) != 6:
            raise ValueError(f"{mac_text!r} is not a MAC address like 00:15:65:aa:00:01")
    try:
        if ip.count(".") != 3:
            raise OSError
        ip = inet_ntoa(inet_aton(ip))
    except OSError:
        raise ValueError(f"{ip!r} is not an IPv4 address") from None
    try:
        expires = float(expires_text)
    except ValueError:
        expires = math.nan
    if not math.isfinite(expires) or expires < 0:
        raise ValueError(f"expires {expires_text!r} is not a time in seconds")
    return LeaseRecord(state, mac, ip, expires)


def read_lease_file(path: str) -> list[LeaseRecord]:
    """The leases in ``path``; none if it does not exist yet (a first start)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return []
    except UnicodeDecodeError as exc:
        raise LeaseFileError(path, None, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise LeaseFileError(path, None, f"cannot read it: {exc.strerror}") from None
    return parse_leases(text, path)


def write_lease_file(path: str, records: Iterable[LeaseRecord]) -> None:
    """Replace ``path`` with these leases (atomically: a temporary file renamed over it)."""
    text = format_leases(records)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)

"""Turning a scenario's DHCP option values (plain YAML data) into option payload bytes.

A scenario says ``tftp_server_name: "10.1.0.5"`` or ``150: ["10.1.0.5", "10.1.0.6"]``
or ``43: [{code: 1, value: "http://prov/"}]``; this module knows which option takes
which shape (RFC 2132, RFC 3925, vendor conventions) and says clearly what is wrong
when a value does not fit. It runs once when a scenario is loaded, never per packet.

Accepted forms:

* address options (1, 3, 6, 42, 150 ...): an IPv4 string or a list of them;
* text options (12, 15, 66, 67, 159, 160 ...): a string;
* 43: a string (sent as plain ASCII) or a list of sub-options
  ``[{code: 1, value: "http://..."}, ...]`` encoded as TLVs;
* 125: ``[{enterprise: 3561, sub_options: [{code: 1, value: "..."}]}]`` (RFC 3925);
* any option (and any sub-option value) may also be given in an explicit typed form:
  ``{text: ...}``, ``{ip: ...}``, ``{ips: [...]}``, ``{hex: "..."}``, ``{u8|u16|u32: n}``;
* for options with no known shape, a plain string is text and a plain int is a u32.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from labsim.wire.dhcp import encode_tlvs
from labsim.wire.numbers import is_number

OPTION_NAMES: dict[str, int] = {
    "subnet_mask": 1,
    "time_offset": 2,
    "router": 3,
    "time_servers": 4,
    "name_servers": 5,
    "dns_servers": 6,
    "log_servers": 7,
    "hostname": 12,
    "boot_file_size": 13,
    "domain_name": 15,
    "root_path": 17,
    "default_ttl": 23,
    "mtu": 26,
    "broadcast": 28,
    "static_routes": 33,
    "nis_domain": 40,
    "nis_servers": 41,
    "ntp_servers": 42,
    "vendor_specific": 43,
    "netbios_name_servers": 44,
    "netbios_node_type": 46,
    "renewal_time": 58,
    "rebinding_time": 59,
    "vendor_class": 60,
    "tftp_server_name": 66,
    "bootfile_name": 67,
    "smtp_servers": 69,
    "pop3_servers": 70,
    "vivso": 125,
    "vendor_identifying_vendor_specific": 125,
    "tftp_servers": 150,  # Cisco: list of TFTP server addresses
    # Site-specific options that vendors read a provisioning URL from: Cisco SPA/MPP
    # reads 159 (and 160); Yealink and Polycom default to 160.
    "config_url": 159,
    "provisioning_url": 160,
}

# Options whose payload is one address (RFC 2132 fixes length 4).
SINGLE_ADDRESS_OPTIONS = frozenset({1, 16, 28, 32, 50, 54})
# Options whose payload is a list of addresses (a multiple of 4 bytes).
ADDRESS_LIST_OPTIONS = frozenset(
    {3, 4, 5, 6, 7, 8, 9, 10, 11, 21, 33, 41, 42, 44, 45, 48, 49, 65, 68, 69, 70, 71, 72, 73, 74, 75, 76, 150}
)
# Options whose payload is text (NVT ASCII in the RFCs; URLs and names in practice).
TEXT_OPTIONS = frozenset({12, 14, 15, 17, 18, 40, 47, 56, 60, 62, 64, 66, 67, 100, 101, 114, 159, 160})
# Fixed-width integers: code -> (byte width, signed).
INTEGER_OPTIONS: dict[int, tuple[int, bool]] = {
    2: (4, True),  # time offset, seconds east of UTC (two's complement)
    13: (2, False),
    19: (1, False),
    22: (2, False),
    23: (1, False),
    24: (4, False),
    26: (2, False),
    35: (4, False),
    37: (1, False),
    38: (4, False),
    46: (1, False),
    51: (4, False),
    57: (2, False),
    58: (4, False),
    59: (4, False),
}
OPTION_VENDOR_SPECIFIC = 43
OPTION_VIVSO = 125

_TYPED_FORMS = ("text", "ip", "ips", "hex", "u8", "u16", "u32")
_WIDTHS = {"u8": 1, "u16": 2, "u32": 4}
_CODE_TO_NAME = {code: name for name, code in reversed(list(OPTION_NAMES.items()))}


def option_label(code: int) -> str:
    name = _CODE_TO_NAME.get(code)
    return f"option {code} ({name})" if name else f"option {code}"


def option_code(key: str | int) -> int:
    """An option's number from its number, its number as text, or its friendly name."""
    if isinstance(key, bool):
        raise ValueError(f"not a DHCP option: {key!r}")
    if isinstance(key, int):
        code = key
    elif isinstance(key, str) and is_number(key.strip()):
        code = int(key.strip())
    elif isinstance(key, str):
        normalised = key.strip().lower().replace("-", "_")
        if normalised not in OPTION_NAMES:
            names = ", ".join(sorted(OPTION_NAMES))
            raise ValueError(f"unknown DHCP option name {key!r}; use a number 1-254 or one of: {names}")
        return OPTION_NAMES[normalised]
    else:
        raise ValueError(f"a DHCP option is named by a number or a name, not {type(key).__name__} {key!r}")
    if not 1 <= code <= 254:
        raise ValueError(f"DHCP option number {code} is out of range 1-254 (0 and 255 are pad and end)")
    return code


def encode_option_value(code: int, value: Any) -> bytes:
    """The payload bytes of option ``code`` for a scenario value; ValueError if it does not fit."""
    try:
        return _encode(code, value)
    except ValueError as exc:
        raise ValueError(f"{option_label(code)}: {exc}") from None


# Options a DHCP server sets itself from its own settings (pad and end, the requested
# address, lease time, overload, message type, server identifier, parameter list, client
# identifier, relay agent information): a scenario may not set them.
SERVER_MANAGED_OPTIONS = frozenset({0, 50, 51, 52, 53, 54, 55, 61, 82, 255})


class EncodedOptions(dict):
    """{code: payload}: options named, checked and encoded once, by ``encode_options``. A
    DHCP server given these (labsim.services.dhcp) takes them as they are."""


def encode_options(options: Mapping[str | int, Any]) -> EncodedOptions:
    """A scenario's ``options:`` mapping (numbers or names -> values) -> {code: payload}.
    Every option must encode, none be given twice (by number and by name), none be one
    the server sets itself; all problems are reported at once. The one place a scenario's
    DHCP options are checked and encoded: the scenario schema calls it on load."""
    if isinstance(options, EncodedOptions):
        return options
    out = EncodedOptions()
    given: dict[int, str | int] = {}
    problems = []
    for key, value in options.items():
        try:
            code = option_code(key)
            label = option_label(code)
            if code in given:
                raise ValueError(f"{label} is given twice (as {given[code]!r} and {key!r})")
            given[code] = key
            if code in SERVER_MANAGED_OPTIONS:
                raise ValueError(f"{label} is set by the server itself (see lease_time_s, address, server_id)")
            out[code] = encode_option_value(code, value)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("; ".join(problems))
    return out


def _encode(code: int, value: Any) -> bytes:
    if isinstance(value, Mapping) and not (code == OPTION_VIVSO and "enterprise" in value):
        return _encode_typed(value)
    if code == OPTION_VENDOR_SPECIFIC:
        if isinstance(value, str):
            return _text(value)
        if isinstance(value, list):
            return _encode_sub_options(value)
        raise ValueError(f"expected a string or a list of sub-options {{code, value}}, got {_show(value)}")
    if code == OPTION_VIVSO:
        return _encode_vivso(value)
    if code in SINGLE_ADDRESS_OPTIONS:
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError(f"takes exactly one IPv4 address, got {_show(value)}")
            value = value[0]
        return _ip(value)
    if code in ADDRESS_LIST_OPTIONS:
        addrs = value if isinstance(value, list) else [value]
        if not addrs:
            raise ValueError("needs at least one IPv4 address, got an empty list")
        return b"".join(_ip(a) for a in addrs)
    if code in TEXT_OPTIONS:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {_show(value)}")
        return _text(value)
    if code in INTEGER_OPTIONS:
        width, signed = INTEGER_OPTIONS[code]
        return _int(value, width, signed)
    # An option this module knows no shape for: plain text or a u32.
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return _int(value, 4, False)
    raise ValueError(
        f"has no known shape; give a string, an int, or one of {{{', '.join(_TYPED_FORMS)}}}, got {_show(value)}"
    )


def _encode_typed(value: Mapping) -> bytes:
    """The explicit forms: exactly one of text/ip/ips/hex/u8/u16/u32."""
    keys = list(value)
    if len(keys) != 1 or keys[0] not in _TYPED_FORMS:
        raise ValueError(f"a typed value has exactly one key out of {', '.join(_TYPED_FORMS)}; got {_show(value)}")
    kind = keys[0]
    inner = value[kind]
    if kind == "text":
        if not isinstance(inner, str):
            raise ValueError(f"text: expected a string, got {_show(inner)}")
        return _text(inner)
    if kind == "ip":
        return _ip(inner)
    if kind == "ips":
        if not isinstance(inner, list) or not inner:
            raise ValueError(f"ips: expected a non-empty list of IPv4 addresses, got {_show(inner)}")
        return b"".join(_ip(a) for a in inner)
    if kind == "hex":
        if not isinstance(inner, str):
            raise ValueError(f"hex: expected a string of hex digits, got {_show(inner)}")
        cleaned = inner.replace(":", "").replace(" ", "")
        try:
            return bytes.fromhex(cleaned)
        except ValueError:
            raise ValueError(f"hex: {inner!r} is not an even number of hex digits") from None
    return _int(inner, _WIDTHS[kind], False)


def _encode_sub_options(items: Any) -> bytes:
    """Option 43 style TLVs from [{code: n, value: ...}, ...]."""
    if not isinstance(items, list):
        raise ValueError(f"sub-options must be a list of {{code, value}}, got {_show(items)}")
    tlvs: list[tuple[int, bytes]] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping) or set(item) != {"code", "value"}:
            raise ValueError(f"sub-option #{index + 1} must be {{code: 1-254, value: ...}}, got {_show(item)}")
        sub_code = item["code"]
        if isinstance(sub_code, bool) or not isinstance(sub_code, int) or not 1 <= sub_code <= 254:
            raise ValueError(f"sub-option #{index + 1}: code must be an int 1-254, got {_show(sub_code)}")
        sub_value = item["value"]
        try:
            if isinstance(sub_value, Mapping):
                payload = _encode_typed(sub_value)
            elif isinstance(sub_value, str):
                payload = _text(sub_value)
            else:
                raise ValueError(f"value must be a string or a typed value like {{hex: ...}}, got {_show(sub_value)}")
        except ValueError as exc:
            raise ValueError(f"sub-option {sub_code}: {exc}") from None
        if len(payload) > 255:
            raise ValueError(f"sub-option {sub_code} is {len(payload)} bytes; a sub-option holds at most 255")
        tlvs.append((sub_code, payload))
    return encode_tlvs(tlvs)


def _encode_vivso(value: Any) -> bytes:
    """RFC 3925 §4: per vendor, enterprise number (4 bytes), data length (1 byte), TLVs."""
    entries = [value] if isinstance(value, Mapping) else value
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"expected [{{enterprise: n, sub_options: [...]}}, ...], got {_show(value)}")
    parts = []
    for entry in entries:
        if not isinstance(entry, Mapping) or set(entry) != {"enterprise", "sub_options"}:
            raise ValueError(f"each vendor entry must be {{enterprise: n, sub_options: [...]}}, got {_show(entry)}")
        enterprise = entry["enterprise"]
        if isinstance(enterprise, bool) or not isinstance(enterprise, int) or not 0 <= enterprise < 2**32:
            raise ValueError(f"enterprise must be an IANA enterprise number (u32), got {_show(enterprise)}")
        try:
            data = _encode_sub_options(entry["sub_options"])
        except ValueError as exc:
            raise ValueError(f"enterprise {enterprise}: {exc}") from None
        if len(data) > 255:
            raise ValueError(f"enterprise {enterprise}: its sub-options are {len(data)} bytes; at most 255 fit")
        parts.append(enterprise.to_bytes(4, "big") + bytes((len(data),)) + data)
    return b"".join(parts)


def _ip(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"expected an IPv4 address string, got {_show(value)}")
    try:
        return ipaddress.IPv4Address(value.strip()).packed
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


def _text(value: str) -> bytes:
    if value == "":
        raise ValueError("empty text (RFC 2132 text options are at least one byte)")
    try:
        return value.encode("ascii")
    except UnicodeEncodeError:
        # Phones' DHCP stacks expect ASCII; UTF-8 is the least surprising fallback.
        return value.encode("utf-8")


def _int(value: Any, width: int, signed: bool) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {_show(value)}")
    try:
        return value.to_bytes(width, "big", signed=signed)
    except OverflowError:
        kind = f"{'signed' if signed else 'unsigned'} {width * 8}-bit"
        raise ValueError(f"{value} does not fit a {kind} integer") from None


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"

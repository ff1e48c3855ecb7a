"""Field types every section of the scenario file shares: strict models, addresses,
ports, MAC addresses, interface names.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field


MAC_PATTERN = re.compile(r"^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _model_name(value):
    # Some model names are numbers (Avaya's 1220, Snom's 710): YAML reads `model: 710`
    # as an int, and the user meant the name.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


ModelName = Annotated[str, BeforeValidator(_model_name)]


def _ipv4(value: str) -> str:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None
    return value


IPv4 = Annotated[str, AfterValidator(_ipv4), Field(description="an IPv4 address")]
Port = Annotated[int, Field(ge=0, le=65535)]


def _check_interface_name(name: str) -> str:
    # Linux interface names: 1-15 bytes, no '/', no whitespace.
    if not 0 < len(name.encode()) <= 15 or "/" in name or any(c.isspace() for c in name):
        raise ValueError(f"{name!r} is not a network interface name (1-15 characters, no '/' or spaces)")
    return name


def _network_or_address(value) -> str:
    try:
        return str(ipaddress.ip_network(str(value).strip(), strict=False))
    except ValueError:
        raise ValueError(f"{value!r} is not an address or subnet (10.20.0.5, 10.20.0.0/24)") from None


NetworkOrAddress = Annotated[str, AfterValidator(_network_or_address)]


# A network interface for a service in a namespace lab (services.dhcp.interface, .pnp.interface).
InterfaceName = Annotated[str, AfterValidator(_check_interface_name)]

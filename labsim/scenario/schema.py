"""The scenario file's schema: what a user may write, with defaults and allowed values.

Pydantic models with ``extra="forbid"`` everywhere, so a misspelt key is an error that
names the allowed keys rather than something silently ignored. ``labsim schema`` prints
the JSON Schema generated from these models, for editors.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from labsim.observe.expectations import parse_expectation
from labsim.phones.vendors import VENDORS
from labsim.wire import dhcp_options

MAC_PATTERN = re.compile(r"^[0-9A-Fa-f]{2}([:-]?[0-9A-Fa-f]{2}){5}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ipv4(value: str) -> str:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None
    return value


IPv4 = Annotated[str, AfterValidator(_ipv4), Field(description="an IPv4 address")]
Port = Annotated[int, Field(ge=0, le=65535)]


class AddressPool(Strict):
    start: IPv4
    end: IPv4

    @model_validator(mode="after")
    def _ordered(self):
        if ipaddress.IPv4Address(self.start) > ipaddress.IPv4Address(self.end):
            raise ValueError(f"pool start {self.start} is after its end {self.end}")
        return self


class DhcpService(Strict):
    """labsim's own DHCP server. It answers relayed requests (the fleet is a relay agent)."""

    address: IPv4 = "127.0.0.1"
    port: Port = 6767
    interface: str | None = Field(None, description="serve broadcast clients on this interface (namespace labs)")
    subnet: str = "10.1.0.0/16"
    pool: AddressPool = AddressPool(start="10.1.0.10", end="10.1.255.250")
    lease_time_s: int = Field(3600, ge=60)
    options: dict[Union[int, str], Any] = Field(
        default_factory=dict,
        description="DHCP options by number or name: 66: 'http://...', router: 10.1.0.1, 43: [{code: 1, value: ...}]",
    )
    reservations: dict[str, IPv4] = Field(default_factory=dict, description="MAC -> fixed address")

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        ipaddress.IPv4Network(value, strict=False)
        return value

    @field_validator("options")
    @classmethod
    def _options(cls, options: dict) -> dict:
        problems = []
        for key, value in options.items():
            try:
                dhcp_options.encode_option_value(dhcp_options.option_code(key), value)
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ValueError("; ".join(problems))
        return options

    @field_validator("reservations")
    @classmethod
    def _reservations(cls, reservations: dict) -> dict:
        for mac in reservations:
            if not MAC_PATTERN.match(str(mac)):
                raise ValueError(f"reservation key {mac!r} is not a MAC address")
        return reservations

    @model_validator(mode="after")
    def _pool_in_subnet(self):
        net = ipaddress.IPv4Network(self.subnet, strict=False)
        for end in (self.pool.start, self.pool.end):
            if ipaddress.IPv4Address(end) not in net:
                raise ValueError(f"pool address {end} is outside subnet {self.subnet}")
        return self


class TftpService(Strict):
    address: IPv4 = "127.0.0.1"
    port: Port = 6969
    blksize_max: int = Field(1468, ge=8, le=65464)
    timeout_s: float = Field(1.0, gt=0)
    max_retransmits: int = Field(5, ge=0, le=50)


class HttpService(Strict):
    address: IPv4 = "127.0.0.1"
    port: Port = 8080
    directory_listing: bool = False


class Services(Strict):
    dhcp: DhcpService | None = None
    tftp: TftpService | None = None
    http: HttpService | None = None


class PerPhoneFile(Strict):
    """One file per phone, from a template. Placeholders: {mac} (0015650000a1), {MAC}
    (0015650000A1), {mac_colons} (00:15:65:00:00:a1), {model}, {fleet}, {index} (1-based
    within its fleet)."""

    name: str = Field(description="e.g. '{mac}.cfg'")
    text: str

    @field_validator("name")
    @classmethod
    def _inside_root(cls, name: str) -> str:
        parts = name.replace("\\", "/").split("/")
        if name.startswith("/") or ".." in parts or not name.strip():
            raise ValueError(f"file name {name!r} must be a relative path inside the provisioning root")
        return name
    fleets: list[str] | None = Field(None, description="only for these fleets (default: all)")

    @field_validator("name", "text")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        try:
            value.format(**PLACEHOLDER_EXAMPLE)
        except Exception as exc:  # str.format raises KeyError, IndexError, TypeError, AttributeError ...
            raise ValueError(
                f"bad placeholder {exc}; allowed: {', '.join('{' + k + '}' for k in PLACEHOLDER_EXAMPLE)} "
                "(write {{ and }} for literal braces)"
            ) from None
        return value


PLACEHOLDER_EXAMPLE = {"mac": "0015650000a1", "MAC": "0015650000A1", "mac_colons": "00:15:65:00:00:a1",
                       "model": "T46S", "fleet": "desk", "index": 1}


class Provisioning(Strict):
    directory: str | None = Field(None, description="folder of provisioning files, relative to the scenario file")
    files: dict[str, str] = Field(default_factory=dict, description="file name -> text, written over the folder's files")
    per_phone: list[PerPhoneFile] = Field(default_factory=list, description="files generated for every phone")

    @field_validator("files")
    @classmethod
    def _names(cls, files: dict) -> dict:
        for name in files:
            parts = name.replace("\\", "/").split("/")
            if name.startswith("/") or ".." in parts or not name.strip():
                raise ValueError(f"file name {name!r} must be a relative path inside the provisioning root")
        return files


class StormBoot(Strict):
    pattern: Literal["storm"]
    random_delay_s: float = Field(0.0, ge=0, description="each phone waits a random 0..N seconds before powering on")


class RampBoot(Strict):
    pattern: Literal["ramp"]
    per_second: float = Field(gt=0)


BootPattern = Annotated[Union[StormBoot, RampBoot], Field(discriminator="pattern")]


class Fleet(Strict):
    name: str | None = None
    vendor: str
    model: str | None = None
    count: int | None = Field(None, ge=1, le=100_000)
    models: dict[str, int] | None = Field(None, description="model -> count, instead of model and count")
    first_mac: str
    firmware: str | None = Field(None, description="firmware version the phones start with (vendor default otherwise)")
    boot: BootPattern = StormBoot(pattern="storm")
    boot_time_s: float = Field(1.0, ge=0, description="how long a (re)boot takes before DHCP starts")

    @field_validator("vendor")
    @classmethod
    def _vendor(cls, vendor: str) -> str:
        if vendor not in VENDORS:
            raise ValueError(f"unknown vendor {vendor!r}; allowed: {', '.join(sorted(VENDORS))}")
        return vendor

    @field_validator("first_mac")
    @classmethod
    def _mac(cls, mac: str) -> str:
        if not MAC_PATTERN.match(mac):
            raise ValueError(f"{mac!r} is not a MAC address (e.g. 00:15:65:00:00:01)")
        return mac

    @field_validator("model", "models")
    @classmethod
    def _known_models(cls, value, info: ValidationInfo):
        vendor = info.data.get("vendor")
        if value is None or vendor not in VENDORS:
            return value
        allowed = VENDORS[vendor].MODELS
        for model in ([value] if isinstance(value, str) else value):
            if model not in allowed:
                raise ValueError(f"unknown {vendor} model {model!r}; allowed: {', '.join(allowed)}")
        if isinstance(value, dict) and any(count < 1 for count in value.values()):
            raise ValueError("every model count must be at least 1")
        return value

    @model_validator(mode="after")
    def _model_or_models(self):
        if self.models is None and (self.model is None or self.count is None):
            raise ValueError("give either 'model' and 'count', or 'models' (model -> count)")
        if self.models is not None and (self.model is not None or self.count is not None):
            raise ValueError("give either 'model' and 'count', or 'models', not both")
        return self

    def model_counts(self) -> dict[str, int]:
        return dict(self.models) if self.models is not None else {self.model: self.count}

    @property
    def total(self) -> int:
        return sum(self.model_counts().values())


class FleetNetwork(Strict):
    """Where the fleet sends DHCP: labsim's own server by default, or a real one."""

    dhcp_server: IPv4 | None = Field(None, description="default: services.dhcp.address")
    dhcp_port: Port | None = Field(None, description="default: services.dhcp.port")
    relay_address: IPv4 = Field("127.0.0.2", description="the giaddr the fleet relays from (loopback)")


def _valid_check(check: str) -> str:
    parse_expectation(check)
    return check


Check = Annotated[str, AfterValidator(_valid_check)]


class Expectation(Strict):
    name: str | None = None
    check: Check


class Scenario(Strict):
    name: str
    description: str = ""
    seed: int = 1
    time_limit_s: float = Field(300, gt=0)
    services: Services = Services()
    provisioning: Provisioning = Provisioning()
    network: FleetNetwork = FleetNetwork()
    fleets: list[Fleet] = Field(min_length=1)
    expect: list[Union[Check, Expectation]] = Field(
        default_factory=list, description="'METRIC OP VALUE' strings or {name, check} (see docs/scenarios.md)"
    )

    def expectations(self) -> list[Expectation]:
        return [Expectation(check=i) if isinstance(i, str) else i for i in self.expect]

"""The scenario's ``fleets:`` and ``provisioning:`` sections: which phones, how they
boot, what their provisioning files hold, and the network they see.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import Field, ValidationInfo, field_validator, model_validator

from labsim.phones.vendors import VENDORS
from labsim.scenario.suggest import unknown
from labsim.scenario.fields import IPv4, InterfaceName, MAC_PATTERN, ModelName, NetworkOrAddress, Port, Strict, _ipv4
from labsim.wire.numbers import is_number


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
    yealink_aes_key: str | None = Field(
        None, description="encrypt each file with this 16-character key, as Yealink's Configuration Encryption "
        "Tool (and labsim yealink encrypt) does: MAC-oriented files for phones that hold the key in "
        "static.auto_provision.aes_key_16.mac")

    cisco_key: str | None = Field(
        None, description="encrypt each file with this phrase as `openssl enc -e -aes-256-cbc -md md5 -k PHRASE` "
        "does, the format of Cisco's encrypted profiles: for phones whose rule names it, [--key PHRASE]; the "
        "placeholders work here too, for a key per phone ('Desk {mac}' and the rule's [--key \"Desk $MA\"])")

    @field_validator("yealink_aes_key")
    @classmethod
    def _a_yealink_key(cls, key: str | None) -> str | None:
        if key is not None and (len(key) != 16 or not all(32 < ord(c) < 127 for c in key)):
            raise ValueError(f"a Yealink AES key is 16 printable ASCII characters, no space; got {len(key)}: {key!r}")
        return key

    @field_validator("cisco_key")
    @classmethod
    def _a_phrase(cls, phrase: str | None) -> str | None:
        if phrase is not None and not phrase:
            raise ValueError("a Cisco key is a phrase of at least one character")
        return phrase

    @model_validator(mode="after")
    def _one_encryption(self):
        if self.yealink_aes_key is not None and self.cisco_key is not None:
            raise ValueError("a file is encrypted one way: give yealink_aes_key or cisco_key, not both")
        return self

    @field_validator("name", "text", "cisco_key")
    @classmethod
    def _placeholders(cls, value: str | None) -> str | None:
        if value is None:
            return value
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


class PoissonBoot(Strict):
    pattern: Literal["poisson"]
    per_second: float = Field(gt=0, description="mean arrivals per second (exponential gaps)")


BootPattern = Annotated[Union[StormBoot, RampBoot, PoissonBoot], Field(discriminator="pattern")]


class PreloadedFlash(Strict):
    """What the phones' flash holds before the run (default: factory-fresh)."""

    settings: dict[str, str] = Field(default_factory=dict)
    file_md5: dict[str, str] = Field(default_factory=dict)
    firmware: str | None = None
    provisioning_url: str = ""

    @field_validator("settings", mode="before")
    @classmethod
    def _text_values(cls, settings):
        # YAML reads `1` as an int; a phone's settings are text.
        if isinstance(settings, dict):
            return {str(k): ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v))
                    for k, v in settings.items()}
        return settings


class Fleet(Strict):
    name: str | None = None
    vendor: str
    model: ModelName | None = None
    count: int | None = Field(None, ge=1, le=100_000)
    models: dict[ModelName, int] | None = Field(None, description="model -> count, instead of model and count")
    first_mac: str
    firmware: str | None = Field(None, description="firmware version the phones start with (vendor default otherwise)")
    boot: BootPattern = StormBoot(pattern="storm")
    boot_time_s: float = Field(1.0, ge=0, description="how long a (re)boot takes before DHCP starts")
    start_at_s: float = Field(0.0, ge=0, description="when this fleet's first phone may power on")
    until: Literal["dhcp", "config", "ready"] = Field(
        "ready", description="the stage at which a phone of this fleet is done (counted `ready`) and stops: "
        "'dhcp' once it has a lease (a DHCP load test: no other server needed), 'config' once its first "
        "provisioning pass is over (files downloaded and applied; no reboot), 'ready' the whole cycle")
    flash: PreloadedFlash | None = Field(None, description="pre-loaded flash (default: factory-fresh)")
    behaviour: dict[str, Any] = Field(
        default_factory=dict,
        description="vendor behaviour the manuals leave open (see docs/phones.md), e.g. {retry_delay_s: 5}",
    )

    @field_validator("behaviour")
    @classmethod
    def _behaviour(cls, behaviour: dict, info: ValidationInfo) -> dict:
        vendor = info.data.get("vendor")
        if vendor in VENDORS and behaviour:
            from labsim.phones.vendors import behaviour_for

            behaviour_for(vendor, behaviour)  # raises ValueError naming the allowed knobs
        return behaviour

    @field_validator("vendor")
    @classmethod
    def _vendor(cls, vendor: str) -> str:
        if vendor not in VENDORS:
            raise ValueError(unknown("vendor", vendor, sorted(VENDORS)))
        return vendor

    @field_validator("first_mac")
    @classmethod
    def _mac(cls, mac: str) -> str:
        if not MAC_PATTERN.match(mac):
            raise ValueError(f"{mac!r} is not a MAC address (e.g. 00:15:65:00:00:01)")
        if int(mac[:2], 16) & 1:  # the I/G bit: a group address, never a device's own
            raise ValueError(f"{mac!r} is a multicast (group) address; a phone's MAC has the first byte even")
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
                raise ValueError(unknown(f"{vendor} model", model, allowed))
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
    # Real-network mode (README: Testing your own servers): both keys, or loopback only.
    # Where the run may send is checked in scenario/network_rules.py.
    interface: InterfaceName | None = Field(
        None, description="real-network mode: the interface the phones broadcast DHCP on and download through "
        "(root); needs 'allow'")
    allow: list[NetworkOrAddress] | None = Field(
        None, description="real-network mode: the addresses and subnets (10.20.0.5, 10.20.0.0/24) the phones may "
        "send to; nothing else is ever sent to, whatever a provisioning file says")
    dhcp_mode: Literal["broadcast", "relay"] = Field(
        "broadcast", description="real-network mode: 'broadcast' (each phone's own DISCOVER on the segment) or "
        "'relay' (to dhcp_server on another subnet, giaddr = the interface's address)")
    dhcp_rate: float = Field(100, gt=0, description="real-network mode: at most this many DHCP messages per "
                                                    "second leave the interface (raise it for a load test)")
    source: Literal["interface", "leased"] = Field(
        "interface", description="real-network mode: downloads come from the interface's address, or from each "
        "phone's leased address (added to the interface for the run; root)")
    release: bool = Field(True, description="real-network mode: send DHCPRELEASE for every lease when the run "
                                            "ends (normally, time limit, Ctrl-C/SIGTERM)")
    http_connections: Literal["per_request", "pooled"] = Field(
        "per_request", description="'per_request': each phone fetches each file on a TCP (and TLS) connection of "
        "its own, closed after it (Connection: close), so a server sees a storm's handshakes; 'pooled': the "
        "fleet's requests ride one pool of keep-alive connections to each server (up to 512), which no real "
        "phones can do: fewer handshakes, more requests a second from labsim (sockets only)")
    pnp_server: str | None = Field(
        None, description="HOST[:PORT] the phones' PnP SUBSCRIBE goes to, unicast, instead of multicast "
        "224.0.1.75:5060 (default: services.pnp when given; otherwise no PnP answer on loopback)")

    dns_server: str | None = Field(
        None, description="HOST[:PORT] of the DNS server phones resolve names with (default: services.dns; "
        "without one, a host name in a URL cannot be resolved and the download is refused); a phone asks it "
        "only when its lease's option 6 names its address (on a real network, one of the lease's other DNS "
        "servers inside allow is asked on port 53 instead)")

    @field_validator("dns_server")
    @classmethod
    def _dns_host_port(cls, value: str | None) -> str | None:
        if value is not None:
            parse_host_port(value, 53)
        return value

    @field_validator("pnp_server")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            parse_host_port(value, 5060)
        return value


def parse_host_port(value: str, default_port: int) -> tuple[str, int]:
    """``127.0.0.1:5070`` -> ("127.0.0.1", 5070); ValueError naming the problem."""
    host, _, port = value.strip().partition(":")
    _ipv4(host)
    if port and not (is_number(port) and 0 < int(port) < 65536):
        raise ValueError(f"{value!r}: bad port {port!r}")
    return host, int(port) if port else default_port

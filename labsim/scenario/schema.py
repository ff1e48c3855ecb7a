"""The scenario file's schema: what a user may write, with defaults and allowed values.

Pydantic models with ``extra="forbid"`` everywhere, so a misspelt key is an error that
names the allowed keys rather than something silently ignored. ``labsim schema`` prints
the JSON Schema generated from these models, for editors.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal, Union

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, ValidationInfo,
                      field_validator, model_validator)

from labsim.observe.expectations import parse_expectation
from labsim.phones.vendors import VENDORS
from labsim.scenario.durations import parse_duration
from labsim.wire import dhcp_options

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


class AddressPool(Strict):
    start: IPv4
    end: IPv4

    @model_validator(mode="after")
    def _ordered(self):
        if ipaddress.IPv4Address(self.start) > ipaddress.IPv4Address(self.end):
            raise ValueError(f"pool start {self.start} is after its end {self.end}")
        return self


class DhcpService(Strict):
    """labsim's own DHCP server. It answers relayed requests (the fleet is a relay agent),
    and with ``interface`` also broadcast clients on that interface."""

    class VendorClassMatch(Strict):
        """How option 60 is matched: exactly one of equals / prefix / regex. Trailing NULs
        of option 60 are ignored, comparison is case-sensitive, regex is searched anywhere
        (anchor with ^ and $) -- see labsim/services/dhcp_classes.py."""

        equals: str | None = Field(None, min_length=1)
        prefix: str | None = Field(None, min_length=1)
        regex: str | None = Field(None, min_length=1)

        @field_validator("regex")
        @classmethod
        def _compiles(cls, pattern: str | None) -> str | None:
            if pattern is not None:
                from labsim.services.dhcp_classes import compile_vendor_regex

                compile_vendor_regex(pattern)
            return pattern

        @model_validator(mode="after")
        def _exactly_one(self):
            given = [kind for kind in ("equals", "prefix", "regex") if getattr(self, kind) is not None]
            if len(given) != 1:
                raise ValueError("give exactly one of equals, prefix, regex"
                                 + (f", not {' and '.join(given)}" if given else ""))
            return self

        def kind_and_value(self) -> tuple[str, str]:
            kind = next(k for k in ("equals", "prefix", "regex") if getattr(self, k) is not None)
            return kind, getattr(self, kind)

    class ClassMatch(Strict):
        vendor_class: "DhcpService.VendorClassMatch" = Field(description="option 60")

    class ClientClass(Strict):
        """Options for the clients whose option 60 matches; they are added to the global
        options and override them code by code. The first matching class wins."""

        name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="a label for reports and the live log")
        match: "DhcpService.ClassMatch"
        options: dict[Union[int, str], Any] = Field(default_factory=dict)

        @field_validator("options")
        @classmethod
        def _options(cls, options: dict) -> dict:
            return DhcpService.checked_options(options)

    address: IPv4 = "127.0.0.1"
    port: Port = 6767
    interface: str | None = Field(
        None, description="serve broadcast clients on this network interface too (root; namespace labs)"
    )
    interface_port: Port = Field(67, description="the port broadcast clients send to on the interface")
    server_id: IPv4 | None = Field(
        None, description="option 54 (default: the interface's address with 'interface', else 'address')"
    )
    subnet: str = "10.1.0.0/16"
    pool: AddressPool = AddressPool(start="10.1.0.10", end="10.1.255.250")
    lease_time_s: int = Field(3600, ge=1, le=2**32 - 1, description="option 51; phones renew at T1 (option 58, else half of it)")
    options: dict[Union[int, str], Any] = Field(
        default_factory=dict,
        description="DHCP options by number or name: 66: 'http://...', router: 10.1.0.1, 43: [{code: 1, value: ...}]",
    )
    classes: list["DhcpService.ClientClass"] = Field(
        default_factory=list,
        description="per-vendor options by option 60: [{name, match: {vendor_class: {prefix: ...}}, options}]",
    )
    reservations: dict[str, IPv4] = Field(default_factory=dict, description="MAC -> fixed address")
    lease_file: str | None = Field(
        None, description="keep leases across restarts in this file (relative to the report folder, or absolute)"
    )

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        ipaddress.IPv4Network(value, strict=False)
        return value

    @field_validator("interface")
    @classmethod
    def _interface_name(cls, name: str | None) -> str | None:
        return None if name is None else _check_interface_name(name)

    @field_validator("options")
    @classmethod
    def _options(cls, options: dict) -> dict:
        return DhcpService.checked_options(options)

    @field_validator("classes")
    @classmethod
    def _class_names(cls, classes: list) -> list:
        names = [c.name for c in classes]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"class names must be unique; repeated: {', '.join(repeated)}")
        return classes

    @field_validator("reservations")
    @classmethod
    def _reservations(cls, reservations: dict) -> dict:
        seen: dict[str, str] = {}
        for mac in reservations:
            if not MAC_PATTERN.match(str(mac)):
                raise ValueError(f"reservation key {mac!r} is not a MAC address")
            bare = re.sub("[:-]", "", str(mac)).lower()
            if bare in seen:
                raise ValueError(f"{seen[bare]!r} and {mac!r} are the same MAC address")
            seen[bare] = mac
        return reservations

    @model_validator(mode="after")
    def _pool_in_subnet(self):
        net = ipaddress.IPv4Network(self.subnet, strict=False)
        for end in (self.pool.start, self.pool.end):
            if ipaddress.IPv4Address(end) not in net:
                raise ValueError(f"pool address {end} is outside subnet {self.subnet}")
            if net.prefixlen < 31 and ipaddress.IPv4Address(end) in (net.network_address, net.broadcast_address):
                raise ValueError(f"pool address {end} is the network or broadcast address of {net}")
        owners: dict[str, str] = {}
        for mac, ip in self.reservations.items():
            if ipaddress.IPv4Address(ip) not in net:
                raise ValueError(f"reservation {mac} -> {ip} is outside subnet {self.subnet}")
            if ip in owners:
                raise ValueError(f"{ip} is reserved for both {owners[ip]} and {mac}")
            owners[ip] = mac
        return self

    @staticmethod
    def checked_options(options: dict) -> dhcp_options.EncodedOptions:
        """The options checked and encoded, once, here (``dhcp_options.encode_options``):
        after loading, ``options`` holds {code: payload}."""
        return dhcp_options.encode_options(options)


class TftpService(Strict):
    address: IPv4 = "127.0.0.1"
    port: Port = 6969
    blksize_max: int = Field(1468, ge=8, le=65464)
    timeout_s: float = Field(1.0, gt=0)
    max_retransmits: int = Field(5, ge=0, le=50)
    # --- uploads: WRQ (phones' logs, backups) stored under upload_dir only; off: ERROR 4.
    uploads: bool = Field(False, description="accept TFTP WRQ into upload_dir")
    upload_dir: str = Field("uploads", description="folder inside the provisioning root that WRQ writes to")

    @field_validator("upload_dir")
    @classmethod
    def _upload_dir_inside(cls, name: str) -> str:
        return _relative_inside(name)
    # --- end uploads


class HttpAuth(Strict):
    """Requests whose path matches ``path`` (a glob, e.g. '/secure/*') need one of ``users``."""

    path: str = "*"
    scheme: Literal["basic", "digest"] = "digest"
    users: dict[str, str]
    realm: str = "labsim"

    @field_validator("users", mode="before")
    @classmethod
    def _text(cls, users):
        return _text_values(users)


class HttpService(Strict):
    address: IPv4 = "127.0.0.1"
    port: Port = 8080
    directory_listing: bool = False
    auth: list[HttpAuth] = Field(default_factory=list, description="Basic or Digest authentication per path")
    tls: bool = Field(False, description="HTTPS; without cert_file a self-signed certificate is made at start "
                                         "and written to the report folder (cert.pem, key.pem)")
    cert_file: str | None = None
    key_file: str | None = None
    idle_timeout_s: float = Field(60.0, gt=0, description="a keep-alive connection idle this long is closed")
    header_timeout_s: float = Field(10.0, gt=0, description="a request whose headers have not all arrived this long "
                                    "after its first byte is dropped (slow clients cannot hold connections)")
    # --- uploads: phones (Polycom) PUT their logs; stored under upload_dir only.
    uploads: bool = Field(False, description="accept HTTP PUT into upload_dir")
    upload_dir: str = Field("uploads", description="folder inside the provisioning root that PUT writes to")

    @field_validator("upload_dir")
    @classmethod
    def _upload_dir_inside(cls, name: str) -> str:
        return _relative_inside(name)
    # --- end uploads


# --- FTP and PnP services (labsim/services/ftp.py, labsim/services/pnp.py) ---------------


def _text_values(mapping):
    # YAML reads a password such as 1234 as a number; passwords and URLs are text.
    if isinstance(mapping, dict):
        return {str(key): str(value) for key, value in mapping.items()}
    return mapping


def _relative_inside(name: str) -> str:
    parts = name.replace("\\", "/").split("/")
    if name.startswith("/") or ".." in parts or not name.strip():
        raise ValueError(f"{name!r} must be a relative path inside the provisioning root")
    return name


class FtpService(Strict):
    """labsim's FTP server: the provisioning root, read-only; uploads (when on) go into
    ``upload_dir`` only."""

    address: IPv4 = "127.0.0.1"
    port: Port = 2121
    users: dict[str, str] = Field(default_factory=dict, description="user name -> password")
    anonymous: bool = Field(False, description="allow login as 'anonymous' (any password)")
    passive_ports: tuple[Port, Port] | None = Field(None, description="[first, last] passive data ports")
    uploads: bool = Field(False, description="accept STOR into upload_dir")
    upload_dir: Annotated[str, AfterValidator(_relative_inside)] = "uploads"
    idle_timeout_s: float = Field(60.0, gt=0, description="a session with no command this long is closed")
    max_connections_per_address: int = Field(
        256, ge=0, description="open sessions from one client address at most (then 421); 0: no limit. "
        "labsim run's phones all connect from 127.0.0.1")

    @field_validator("users", mode="before")
    @classmethod
    def _users_as_text(cls, users):
        return _text_values(users)

    @field_validator("passive_ports")
    @classmethod
    def _ordered_ports(cls, ports):
        if ports is not None and not 0 < ports[0] <= ports[1]:
            raise ValueError(f"passive_ports {list(ports)} must be [first, last] with 0 < first <= last")
        return ports


def _pnp_url(url: str) -> str:
    from labsim.wire.provisioning_url import parse_server

    example = url.replace("{mac}", "001565aa0001").replace("{MAC}", "001565AA0001")
    parse_server(example.replace("{model}", "T46S").replace("{vendor}", "Yealink"))  # ValueError if bad
    return url


PnpUrl = Annotated[str, AfterValidator(_pnp_url)]


class PnpService(Strict):
    """labsim's PnP responder: answers a phone's SIP SUBSCRIBE (Event: ua-profile) with a
    NOTIFY whose body is its provisioning URL. ``{mac}``, ``{MAC}``, ``{model}`` and
    ``{vendor}`` in a URL are filled in per phone. It listens unicast on ``address:port``
    (loopback labs: the phones send there), and with ``interface`` also on the multicast
    group 224.0.1.75 on that interface (namespace labs); replies go unicast to the sender."""

    address: IPv4 = "127.0.0.1"
    port: Port = Field(5070, description="the unicast socket's port (unprivileged, for loopback labs)")
    interface: InterfaceName | None = Field(
        None, description="also join 224.0.1.75 on this network interface and answer from its address "
        "(root; namespace labs)"
    )
    interface_port: int = Field(5060, ge=1, le=65535, description="the port phones multicast to on the interface")
    url: PnpUrl | None = Field(None, description="for every phone without a more specific URL")
    per_vendor: dict[str, PnpUrl] = Field(default_factory=dict, description="vendor (any case) -> URL")
    per_model: dict[ModelName, PnpUrl] = Field(default_factory=dict, description="model -> URL (wins over per_vendor)")

    @model_validator(mode="after")
    def _some_url(self):
        if not (self.url or self.per_vendor or self.per_model):
            raise ValueError("give url, per_vendor or per_model: without a URL the responder answers nobody")
        return self


class DnsRecord(Strict):
    name: str
    type: Literal["A", "AAAA", "CNAME", "SRV", "TXT"]
    value: str = Field(description="SRV: 'priority weight port target'")
    ttl: int = Field(300, ge=0, lt=2**31)


class DnsService(Strict):
    """labsim's DNS server: phones resolve host names in provisioning URLs through it."""

    address: IPv4 = "127.0.0.1"
    port: Port = 5353
    records: list[DnsRecord] = Field(default_factory=list)
    tcp_idle_timeout_s: float = Field(10.0, gt=0, description="a TCP connection idle this long is closed")
    tcp_max_connections_per_address: int = Field(
        100, ge=0, description="open TCP connections from one client address at most (of 1,000 in all); 0: no limit")

    @model_validator(mode="after")
    def _records_valid(self):
        from labsim.wire.dns_records import DnsRecordConfig, Zone

        Zone([DnsRecordConfig(r.name, r.type, r.value, r.ttl) for r in self.records])  # ValueError names the record
        return self


class Services(Strict):
    dhcp: DhcpService | None = None
    tftp: TftpService | None = None
    http: HttpService | None = None
    ftp: FtpService | None = None
    pnp: PnpService | None = None
    dns: DnsService | None = None


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
            raise ValueError(f"unknown vendor {vendor!r}; allowed: {', '.join(sorted(VENDORS))}")
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
    pnp_server: str | None = Field(
        None, description="HOST[:PORT] the phones' PnP SUBSCRIBE goes to, unicast, instead of multicast "
        "224.0.1.75:5060 (default: services.pnp when given; otherwise no PnP answer on loopback)")

    dns_server: str | None = Field(
        None, description="HOST[:PORT] of the DNS server phones resolve names with (default: services.dns; "
        "without one, a host name in a URL cannot be resolved and the download is refused)")

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
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{value!r}: bad port {port!r}")
    return host, int(port) if port else default_port


def _valid_check(check: str) -> str:
    parse_expectation(check)
    return check


Check = Annotated[str, AfterValidator(_valid_check)]


class Expectation(Strict):
    name: str | None = None
    check: Check


class FlashCheck(Strict):
    key: str = Field(description="a setting in the phones' flash, e.g. account.1.user_name")
    equals: str | None = Field(None, description="the value every selected phone must hold")
    set: bool | None = Field(None, description="true: must have a non-empty value; false: must not")
    model: ModelName | None = None
    fleet: str | None = None

    @model_validator(mode="after")
    def _one_test(self):
        if (self.equals is None) == (self.set is None):
            raise ValueError("give either 'equals' or 'set' (true/false)")
        return self

    def describe(self) -> str:
        who = " ".join(filter(None, [self.fleet and f"fleet {self.fleet}", self.model])) or "every phone"
        test = f"== {self.equals!r}" if self.equals is not None else ("is set" if self.set else "is not set")
        return f"{who}: flash {self.key} {test}"


class FlashExpectation(Strict):
    """A check of every selected phone's flash (applied settings)."""

    name: str | None = None
    flash: FlashCheck

    @property
    def check(self) -> str:
        return self.flash.describe()


Probability = Annotated[float, Field(ge=0, le=1)]


# Which services each fault key applies to: what the transport allows and labsim builds.
# Datagram faults need datagrams: TCP (http, ftp, dns over TCP) delivers every byte, in
# order, or none. dns takes them on its UDP side; on its TCP side only down and delays.
DATAGRAM_FAULT_SERVICES = ("dhcp", "tftp", "dns", "pnp")
FAULT_SERVICES = ("dhcp", "tftp", "http", "dns", "pnp", "ftp")
FAULT_KEY_SERVICES = {
    "loss": DATAGRAM_FAULT_SERVICES + ("http",),
    "delay_s": FAULT_SERVICES,
    "jitter_s": FAULT_SERVICES,
    "duplicate": DATAGRAM_FAULT_SERVICES,
    "reorder": DATAGRAM_FAULT_SERVICES,
    "corrupt": DATAGRAM_FAULT_SERVICES,
    "bandwidth_kbps": DATAGRAM_FAULT_SERVICES + ("ftp",),
    "drop_dhcp": ("dhcp",),
    "http_status": ("http",),
    "path": ("http",),
    "slow_s": ("http", "ftp"),
    "down": FAULT_SERVICES,
}
# Why a key does not fit a service, where the reason is not obvious.
_NOT_FOR = {
    ("loss", "ftp"): "a TCP stream delivers every byte or none",
    ("duplicate", "ftp"): "a TCP stream delivers every byte once",
    ("duplicate", "http"): "a TCP stream delivers every byte once",
    ("reorder", "ftp"): "a TCP stream delivers bytes in order",
    ("reorder", "http"): "a TCP stream delivers bytes in order",
    ("corrupt", "ftp"): "TCP checksums every segment",
    ("corrupt", "http"): "TCP checksums every segment",
    ("bandwidth_kbps", "http"): "not built for http",
    ("slow_s", "dns"): "use delay_s: it delays UDP datagrams and TCP answers",
}


# Keys that act on datagrams alone: on dns they reach its UDP side only.
_UDP_ONLY_ON_DNS = ("loss", "duplicate", "reorder", "corrupt", "bandwidth_kbps")


def _for(key: str, what: str) -> str:
    services = ["dns over UDP" if name == "dns" and key in _UDP_ONLY_ON_DNS else name
                for name in FAULT_KEY_SERVICES[key]]
    return f"{what} ({', '.join(services)})"


class Fault(Strict):
    """A fault between the phones and one service. Direction is seen from the service:
    'in' is requests towards it, 'out' its replies. Each key says the services it applies
    to; any other is an error. Datagram services (dhcp, tftp, pnp, and dns over UDP) take
    the faults per datagram and direction. Stream services (ftp, and dns over TCP) take
    down (a new connection is closed at once), delays (each answer held delay_s + jitter_s
    + slow_s, whatever the direction) and, for ftp, bandwidth_kbps on the data connection
    (out: downloads, in: uploads). http takes a forced status, slow answers, loss (answered
    503) and down (503)."""

    name: str | None = None
    service: Literal["dhcp", "tftp", "http", "dns", "pnp", "ftp"]
    direction: Literal["in", "out", "both"] = Field(
        "both", description="datagrams and ftp's bandwidth in this direction; http: out or both")
    loss: Probability = Field(0.0, description=_for("loss", "probability a datagram is lost; http: answered 503"))
    delay_s: float = Field(
        0.0, ge=0, description=_for("delay_s", "datagrams, or each answer on a stream, this much later"))
    jitter_s: float = Field(0.0, ge=0, description=_for("jitter_s", "delay_s varies by up to this much either way"))
    duplicate: Probability = Field(0.0, description=_for("duplicate", "probability a datagram arrives twice"))
    reorder: Probability = Field(
        0.0, description=_for("reorder", "probability a datagram is held back for later ones to overtake"))
    corrupt: Probability = Field(0.0, description=_for("corrupt", "probability a datagram has one bit flipped"))
    bandwidth_kbps: float | None = Field(
        None, gt=0,
        description=_for("bandwidth_kbps", "a line this fast: datagrams queue; ftp's data connection is paced"))
    drop_dhcp: list[Literal["DISCOVER", "OFFER", "REQUEST", "DECLINE", "ACK", "NAK", "RELEASE", "INFORM"]] = Field(
        default_factory=list, description=_for("drop_dhcp", "drop every message of these types"))
    http_status: int | None = Field(
        None, ge=100, le=599, description=_for("http_status", "answer this status instead"))
    path: str = Field("*", description=_for("path", "the paths (glob) the fault applies to, e.g. '/*.cfg'"))
    slow_s: float = Field(
        0.0, ge=0, description=_for("slow_s", "answer each request (ftp: each command) this much later"))
    down: bool = Field(False, description=_for(
        "down", "the service answers nothing: datagrams dropped; TCP connections closed at once; http 503"))

    @field_validator(*FAULT_KEY_SERVICES)
    @classmethod
    def _fits_service(cls, value, info: ValidationInfo):
        """A key given (not its default) for a service it does not apply to is an error
        at that key, naming the services it does apply to."""
        service = info.data.get("service")  # absent when the service itself was invalid
        key = info.field_name
        if service is None or value == cls.model_fields[key].get_default(call_default_factory=True):
            return value
        allowed = FAULT_KEY_SERVICES[key]
        if service not in allowed:
            why = _NOT_FOR.get((key, service))
            services = f"service {allowed[0]}" if len(allowed) == 1 else f"services {', '.join(allowed)}"
            raise ValueError(f"{key} applies to {services} only, not {service}"
                             + (f" ({why})" if why else ""))
        return value

    @field_validator("direction")
    @classmethod
    def _direction_fits_service(cls, value, info: ValidationInfo):
        if value == "in" and info.data.get("service") == "http":
            raise ValueError("direction 'in' does not apply to http: its faults act on the answers (out or both)")
        return value


def _expectation_kind(value) -> str:
    # Pick the branch from what the user wrote, so errors come from that branch alone.
    if isinstance(value, dict):
        return "FlashExpectation" if "flash" in value else "Expectation"
    if isinstance(value, BaseModel):
        return type(value).__name__
    return "Text"


ExpectationItem = Annotated[
    Union[Annotated[Check, Tag("Text")], Annotated[Expectation, Tag("Expectation")],
          Annotated[FlashExpectation, Tag("FlashExpectation")]],
    Discriminator(_expectation_kind),
]


class PhoneSelection(Strict):
    """Which phones an action affects: all, a count or a percentage, optionally narrowed
    to a fleet or a model, or a list of MACs. The choice is reproducible (the seed)."""

    phones: Union[Literal["all"], int, Annotated[str, Field(pattern=r"^\d+(\.\d+)?%$")]] = "all"
    fleet: str | None = None
    model: ModelName | None = None
    macs: list[str] | None = None

    @field_validator("macs")
    @classmethod
    def _macs(cls, macs):
        for mac in macs or []:
            if not MAC_PATTERN.match(mac):
                raise ValueError(f"{mac!r} is not a MAC address")
        return macs


class CheckSyncAction(PhoneSelection):
    reboot: bool = Field(False, description="send ';reboot=true' with the check-sync NOTIFY")


class EditFile(Strict):
    name: str
    set: dict[str, Any] = Field(default_factory=dict, description="key -> value (Yealink 'key = value' files)")
    remove: list[str] = Field(default_factory=list)


class ReplaceFile(Strict):
    name: str
    text: str


class BumpVersion(Strict):
    name: str = Field(description="an Avaya model file such as 1220SIP.cfg")
    section: str | None = Field(None, description="only this [SECTION] (default: every section)")


SERVICE_NAMES = ("dhcp", "tftp", "http", "ftp", "dns", "pnp")
ServiceName = Literal["dhcp", "tftp", "http", "ftp", "dns", "pnp"]


class Action(Strict):
    """Exactly one of these keys."""

    edit_file: EditFile | None = None
    replace_file: ReplaceFile | None = None
    delete_file: str | None = None
    bump_version: BumpVersion | None = None
    stop_service: ServiceName | None = None
    start_service: ServiceName | None = None
    restart_service: ServiceName | None = None
    add_fault: Fault | None = None
    remove_fault: str | None = Field(None, description="a fault's name, or 'all'")
    power_cycle: PhoneSelection | None = None
    factory_reset: PhoneSelection | None = None
    check_sync: CheckSyncAction | None = None
    set_dhcp_option: dict[Union[int, str], Any] | None = None
    remove_dhcp_option: list[Union[int, str]] | None = None

    @field_validator("set_dhcp_option")
    @classmethod
    def _options_encode(cls, options):
        return None if options is None else DhcpService.checked_options(options)

    @field_validator("remove_dhcp_option")
    @classmethod
    def _options_named(cls, keys):
        for key in keys or []:
            dhcp_options.option_code(key)
        return keys

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"an action has exactly one of: {', '.join(type(self).model_fields)}"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> str:
        return next(name for name in type(self).model_fields if getattr(self, name) is not None)

    @property
    def argument(self):
        return getattr(self, self.kind)


class TimelineEntry(Strict):
    at: float | None = Field(None, ge=0, description="seconds after the fleet starts")
    when: Check | None = Field(None, description="a condition, e.g. 'phones.ready >= 50%' (checked twice a second)")
    do: Union[Action, list[Action]]
    name: str | None = None

    @model_validator(mode="after")
    def _at_or_when(self):
        if (self.at is None) == (self.when is None):
            raise ValueError("give either 'at' (seconds) or 'when' (a condition)")
        return self

    def actions(self) -> list[Action]:
        return self.do if isinstance(self.do, list) else [self.do]


class Lab(Strict):
    """A training exercise shown on the dashboard (``run --ui``): the task, hints the
    student reveals one by one, and a check the student runs from the page."""

    task: str = Field(description="what the student is asked to do (markdown)")
    hints: list[str] = Field(default_factory=list, description="revealed one at a time, in order (markdown)")
    check: list[ExpectationItem] = Field(
        default_factory=list, description="expectations judged on the lab as it is when the student asks "
        "(default: the scenario's expect)")

    def expectations(self) -> list[Expectation]:
        return [Expectation(check=i) if isinstance(i, str) else i for i in self.check]

    def public(self) -> dict:
        return {"task": self.task, "hints": list(self.hints),
                "check": [e.check for e in self.expectations()]}


class Scenario(Strict):
    name: str = Field(description="shown in the report and the summary")
    description: str = ""
    seed: int = Field(1, description="the same seed, the same run: per-phone randomness, boot spread, faults")
    time_limit_s: float = Field(300, gt=0, description="the run stops here; unfinished phones are reported "
                                                       "in the state they were stuck in")
    # --- virtual time (issue 15): how much time to simulate, and on which clock
    duration: Annotated[float, BeforeValidator(parse_duration)] | None = Field(
        None, description="run this long (90s, 15m, 12h, 7d), whether or not the phones settle; "
        "with clock: virtual, simulated time (time_limit_s stays wall-clock)")
    clock: Literal["real", "virtual"] = Field(
        "real", description="virtual: an in-memory lab whose time jumps from event to event (labsim's own "
        "DHCP, HTTP, TFTP and PnP; see docs/virtual-time.md)")
    # --- end virtual time
    services: Services = Services()
    provisioning: Provisioning = Provisioning()
    network: FleetNetwork = FleetNetwork()
    fleets: list[Fleet] = Field(min_length=1)
    timeline: list[TimelineEntry] = Field(default_factory=list, description="actions at a time or on a condition")
    faults: list[Fault] = Field(default_factory=list, description="faults active from the start")
    expect: list[ExpectationItem] = Field(
        default_factory=list, description="'METRIC OP VALUE' strings (e.g. 'phones.ready == 100%'), "
        "{name, check}, or {flash: {...}} (see README: Expectations)"
    )
    lab: Lab | None = Field(None, description="a training exercise for the dashboard (docs/dashboard.md)")

    def expectations(self) -> list[Expectation]:
        return [Expectation(check=i) if isinstance(i, str) else i for i in self.expect]

"""The scenario's ``services:`` section: labsim's DHCP, TFTP, HTTP, FTP, PnP and DNS
servers and their settings.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, Field, field_validator, model_validator

from labsim.scenario.fields import IPv4, InterfaceName, MAC_PATTERN, ModelName, Port, Strict, _check_interface_name
from labsim.wire import dhcp_options


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
        None, description="keep leases across restarts in this file (relative to the report folder, or absolute); "
        "with clock: virtual its times are simulated (docs/virtual-time.md)"
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
    max_connections_per_address: int | None = Field(
        None, ge=0, description="open sessions from one client address at most (then 421); 0: no limit. "
        "Default: 256 under labsim serve; no limit under labsim run, whose phones all connect from 127.0.0.1")

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
    type: Literal["A", "AAAA", "CNAME", "SRV", "TXT", "SOA"]
    value: str = Field(description="SRV: 'priority weight port target'; SOA: 'mname rname serial refresh retry "
                       "expire minimum', which puts names at and below it in a zone whose negative answers carry "
                       "it, so phones that keep them (RFC 2308) do, for the smaller of its ttl and minimum")
    ttl: int = Field(300, ge=0, lt=2**31)

    @model_validator(mode="after")
    def _a_record_the_server_can_serve(self):
        from labsim.wire.dns_records import DnsRecordConfig

        DnsRecordConfig(self.name, self.type, self.value, self.ttl).to_rr()  # ValueError: what is wrong
        return self


class DnsService(Strict):
    """labsim's DNS server: phones resolve host names in provisioning URLs through it, when
    their lease names it in option 6 (labsim's DHCP gives its address as option 6 unless
    services.dhcp.options sets option 6)."""

    address: IPv4 = "127.0.0.1"
    port: Port = 5353
    records: list[DnsRecord] = Field(default_factory=list)
    tcp_idle_timeout_s: float = Field(10.0, gt=0, description="a TCP connection idle this long is closed")
    tcp_max_connections_per_address: int | None = Field(
        None, ge=0, description="open TCP connections from one client address at most (of 1,000 in all); "
        "0: no limit. Default: 100 under labsim serve; no limit under labsim run, whose phones all connect "
        "from 127.0.0.1")

    def record_configs(self) -> list:
        """The records as the DNS code takes them (wire.dns_records.DnsRecordConfig)."""
        from labsim.wire.dns_records import DnsRecordConfig

        return [DnsRecordConfig(r.name, r.type, r.value, r.ttl) for r in self.records]

    @model_validator(mode="after")
    def _records_valid(self):
        from labsim.wire.dns_records import Zone

        Zone(self.record_configs())  # what spans records (a CNAME beside other data, two SOAs): names them
        return self


class Services(Strict):
    dhcp: DhcpService | None = None
    tftp: TftpService | None = None
    http: HttpService | None = None
    ftp: FtpService | None = None
    pnp: PnpService | None = None
    dns: DnsService | None = None

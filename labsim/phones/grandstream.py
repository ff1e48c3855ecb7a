"""Grandstream phones (GXP16xx, GXP21xx, GRP26xx, GXV32xx), as the Grandstream
administration guides describe them. Settings are P-values (``P237``, ``P212`` …).

The config server: DHCP option 66 when ``P145`` ("Allow DHCP Option 66 to override
server") is 1, the factory value; else ``P237`` (Config Server Path). A value with a
scheme is a URL; a bare ``host[:port][/path]`` uses the protocol in ``P212`` (Config
Upgrade Via: 0 TFTP, 1 HTTP, 2 HTTPS, 3 FTP, 4 FTPS). The factory ``P237`` is a
Grandstream cloud host: labsim must never leave loopback, so its factory value is empty.

Each provisioning pass asks for ``cfg<mac>`` (the legacy binary file), ``cfg<mac>.xml``,
``cfg<model>.xml`` (``cfggxp2170.xml``) and ``cfg.xml``, each with the ``P234`` prefix
and ``P235`` postfix. Every file found is applied and the MAC file's values win over the
model file's, which win over ``cfg.xml``'s; with ``P8467`` 0 the phone stops at the first
file found. The files are ``<gs_provision>`` XML (labsim.wire.grandstream_cfg); one whose
``<mac>`` names another phone is refused. Values stay in flash until a file changes them.

Then the firmware: ``<P232><image><P233>`` (``gxp2170fw.bin``) from ``P192`` (Firmware
Server Path), checked by ``P238`` (0 always, 1 only when the prefix/postfix changed,
2 never); an image of another version is flashed and the phone reboots. A pass that
changed any P-value reboots the phone too; a pass that changed nothing does not.

When: at power-on; by ``P194`` Automatic Upgrade (0 no, 1 every ``P193`` minutes,
2 daily at hour ``P285``, 3 weekly on day ``P286`` at hour ``P285``, hours of the phone's
own clock: UTC moved by ``P64``, a POSIX time zone such as ``EST5EDT``, or by the DHCP
server's option 2 when it sends one, which ``P143`` lets override ``P64`` by factory
default); on a SIP NOTIFY check-sync.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from labsim.phones.dhcp_client import DhcpIdentity
from labsim.phones.events import Credentials, Download, ProvisioningOutcome
from labsim.phones.kit import bare_mac, option_text, parse_int, pass_outcome, url_credentials
from labsim.phones.local_time import Zone, dhcp_time_offset_s, hours_text, is_posix_zone, posix_zone, summer_words
from labsim.wire import dhcp, grandstream_cfg
from labsim.wire.provisioning_url import BadProvisioningUrl, ServerUrl, parse_server

VENDOR = "grandstream"


@dataclass(frozen=True)
class Model:
    image: str  # the firmware file the model asks for (unverified for some models)
    firmware: str  # the default running version (unverified: a plausible release)


def _gxp16(number: str) -> Model:
    return Model("gxp1600fw.bin", "1.0.7.13")  # one image for the GXP16xx series


def _gxp21(number: str) -> Model:
    return Model("gxp2135fw.bin" if number == "2135" else "gxp2170fw.bin", "1.0.11.3")


def _grp26(number: str) -> Model:
    return Model("grp2600fw.bin", "1.0.5.67")


# labsim's model name (upper case, as in the User-Agent) -> model.
MODEL_INFO = {
    **{f"GXP{n}": _gxp16(n) for n in ("1610", "1615", "1620", "1625", "1628", "1630")},
    **{f"GXP{n}": _gxp21(n) for n in ("2130", "2135", "2140", "2160", "2170")},
    **{f"GRP{n}": _grp26(n) for n in ("2612", "2614", "2615", "2616")},
    "GXV3240": Model("gxv3240fw.bin", "1.0.3.219"), "GXV3275": Model("gxv3275fw.bin", "1.0.3.219"),
}
MODELS = tuple(MODEL_INFO)
MAC_PREFIXES = ("00:0b:82", "c0:74:ad", "ec:74:d7")
STAGES = ("mac_cfg", "model_cfg", "common_cfg", "firmware")  # kit.VendorProfile.STAGES (config_files)

# Option 55. Option 2 (Time Offset, which overrides P64 by factory default, P143): the
# captures of Grandstream phones' requests ask for it ("1,2,3,6,12,15,28,42,43,66,120,125",
# Fingerbank, 2014), as Grandstream's DHCP options guide shows. (unverified) The rest: the
# standard set and the options the phone reads servers from.
PARAMETER_REQUEST_LIST = bytes([1, 2, 3, 6, 12, 15, 28, 42, 43, 66, 120, 150, 160])

# The P-values that steer provisioning, with their factory values (the guides'
# defaults, except P237/P192: a Grandstream cloud host there, empty in labsim).
ALLOW_DHCP_66, CONFIG_VIA, CONFIG_SERVER = "P145", "P212", "P237"
CONFIG_PREFIX, CONFIG_POSTFIX, HTTP_USER, HTTP_PASSWORD = "P234", "P235", "P1360", "P1361"
PROCESS_ALL_FILES = "P8467"  # "Download and process all available config files" (unverified number)
FIRMWARE_SERVER, FIRMWARE_VIA, FIRMWARE_PREFIX, FIRMWARE_POSTFIX = "P192", "P6767", "P232", "P233"
FIRMWARE_CHECK = "P238"  # 0 always, 1 when the prefix/postfix changed, 2 never
AUTO_UPGRADE, AUTO_UPGRADE_MINUTES, AUTO_UPGRADE_HOUR, AUTO_UPGRADE_DAY = "P194", "P193", "P285", "P286"
# The phone's time zone as a POSIX TZ string ("EST5EDT", "CET-1CEST-2,M3.5.0/02:00:00,M10.5.0/03:00:00"),
# the form provisioning systems write into P64 (unverified against a Grandstream guide).
TIME_ZONE = "P64"
CUSTOM_TIME_ZONE = "P246"  # the self-defined zone, a POSIX TZ string, when P64 is "customize"
# "Allow DHCP Option 2 to override Time Zone setting. 0 - No, 1 - Yes. Default is 1"
# (Grandstream's configuration template, GXP17xx 1.0.1.133; (unverified) for other models).
DHCP_OVERRIDES_TIME_ZONE = "P143"
# A pass that changes one of these notes what the phone's clock keeps.
CLOCK_KEYS = frozenset({TIME_ZONE, CUSTOM_TIME_ZONE, DHCP_OVERRIDES_TIME_ZONE, AUTO_UPGRADE, AUTO_UPGRADE_HOUR,
                        AUTO_UPGRADE_DAY})
HOSTNAME, VENDOR_CLASS_ID = "P146", "P148"  # (unverified) options 12 and 60 when set

DEFAULTS = {
    ALLOW_DHCP_66: "1",
    CONFIG_VIA: "2",  # HTTPS on current firmware (TFTP on old releases) (unverified)
    CONFIG_SERVER: "",  # factory: fm.grandstream.com/gs, never contacted by labsim
    FIRMWARE_SERVER: "",  # factory: fm.grandstream.com/gs, never contacted by labsim
    FIRMWARE_CHECK: "0",
    AUTO_UPGRADE: "0",
    AUTO_UPGRADE_MINUTES: "10080",
    AUTO_UPGRADE_HOUR: "1",
    AUTO_UPGRADE_DAY: "1",
    TIME_ZONE: "auto",  # "Automatic": what it follows is not documented; labsim keeps the lab's clock
    DHCP_OVERRIDES_TIME_ZONE: "1",
}
SCHEMES_BY_VIA = {"0": "tftp", "1": "http", "2": "https", "3": "ftp"}  # 4 (FTPS) is not simulated
# Where flash remembers the firmware prefix/postfix last checked (for P238 = 1).
FIRMWARE_CHECKED_WITH = "firmware_prefix_postfix"
DAY_S, WEEK_S = 86_400, 7 * 86_400


@dataclass(frozen=True)
class GrandstreamBehaviour:
    """Behaviour the guides leave open: settings, defaults *(unverified)*."""

    # DHCP options read for the config server, in order (with P145 = 1). Some firmware
    # reads option 43 too ("43,66"): plain text, or sub-option 66 of encapsulated TLVs.
    dhcp_server_options: str = "66"
    # Without P8467 in flash: True = every file found is applied (MAC wins), as the
    # GXP 1.0.x guides describe; False = the phone stops at the first file found.
    process_all_files: bool = True
    reboot_on_change: bool = True  # a pass that changed any P-value reboots the phone
    check_sync: str = "resync"  # a SIP NOTIFY check-sync: "resync", "reboot" or "ignore"
    # Where the simulated wall clock starts, seconds after Sunday 00:00 (P194 daily/weekly).
    clock_start_s: float = 0.0

    def __post_init__(self):
        if self.check_sync not in ("resync", "reboot", "ignore"):
            raise ValueError(f"grandstream behaviour check_sync: {self.check_sync!r}; allowed: resync, reboot, ignore")
        for part in self.dhcp_server_options.split(","):
            if part.strip() not in ("43", "66", "160"):
                raise ValueError(f"grandstream behaviour dhcp_server_options: {part.strip()!r}; allowed: 43, 66, 160")


DEFAULT_BEHAVIOUR = GrandstreamBehaviour()


def default_firmware(model: str) -> str:
    return MODEL_INFO[model].firmware


def setting(phone, name: str) -> str:
    """A P-value as the phone runs with it: flash, else its factory value."""
    return phone.flash.settings.get(name, DEFAULTS.get(name, ""))


def user_agent(phone, behaviour: GrandstreamBehaviour = DEFAULT_BEHAVIOUR) -> str:
    """``Grandstream Model HW GXP2170 SW 1.0.11.3 DevId 000b82abcdef``."""
    return f"Grandstream Model HW {phone.model} SW {phone.flash.firmware} DevId {bare_mac(phone.mac)}"


def dhcp_identity(phone, behaviour: GrandstreamBehaviour = DEFAULT_BEHAVIOUR) -> DhcpIdentity:
    """Option 60 ``Grandstream GXP2170`` and option 12 the model, unless ``P148``/``P146``
    say otherwise (unverified)."""
    return DhcpIdentity(
        vendor_class=(setting(phone, VENDOR_CLASS_ID) or f"Grandstream {phone.model}").encode(),
        parameter_request_list=PARAMETER_REQUEST_LIST,
        hostname=(setting(phone, HOSTNAME) or phone.model).encode(),
    )


def check_sync_action(phone, reboot_requested: bool, behaviour: GrandstreamBehaviour = DEFAULT_BEHAVIOUR) -> str:
    """SIP NOTIFY check-sync: the ``check_sync`` setting (resync); ``;reboot=true`` reboots."""
    if reboot_requested:
        return "reboot"
    return behaviour.check_sync


# --- the config server ---------------------------------------------------------------------


def server_url(value: str, via: str) -> ServerUrl:
    """A server value as a folder: a URL keeps its scheme; a bare ``host[:port][/path]``
    gets the scheme ``via`` (P212/P6767) names. Raises BadProvisioningUrl."""
    value = value.strip()
    if "://" not in value:
        via = via.strip()
        if via == "4":
            raise BadProvisioningUrl("FTPS (Upgrade Via 4) is not simulated")
        if via not in SCHEMES_BY_VIA:
            raise BadProvisioningUrl(f"Upgrade Via {via!r} is not 0-4")
        value = f"{SCHEMES_BY_VIA[via]}://{value}"
    return parse_server(value)


def option_43_server(payload: bytes) -> str:
    """Option 43 as some firmware reads it (unverified): printable text is the server;
    otherwise encapsulated TLVs, sub-option 66 the server."""
    if all(32 <= byte < 127 for byte in payload.rstrip(b"\x00")):
        return payload.decode("ascii").strip("\x00 ")
    try:
        sub_options = dict(dhcp.decode_tlvs(payload))
    except dhcp.DhcpDecodeError:
        return ""
    return sub_options.get(66, b"").decode("latin-1").strip("\x00 ")


def find_server(phone, behaviour: GrandstreamBehaviour = DEFAULT_BEHAVIOUR) -> tuple[str, str] | None:
    """(server value, where from): DHCP when P145 is 1, else P237; None when neither."""
    options = phone.lease.options if phone.lease else {}
    if setting(phone, ALLOW_DHCP_66).strip() == "1":
        for part in behaviour.dhcp_server_options.split(","):
            code = int(part)
            payload = options.get(code)
            if not payload:
                continue
            value = option_43_server(payload) if code == 43 else option_text(payload)
            if value:
                return value, f"DHCP option {code}"
    configured = setting(phone, CONFIG_SERVER).strip()
    if configured:
        return configured, CONFIG_SERVER
    return None


def config_files(phone) -> list[tuple[str, str, bool]]:
    """(file name, stage, optional) in the order the phone asks for them. Only cfg<mac>.xml
    is one a deployment is expected to have: the legacy binary cfg<mac> and the model's
    and common files are only looked for (a 404 of theirs is no error)."""
    mac, model = bare_mac(phone.mac), phone.model.lower()
    prefix, postfix = setting(phone, CONFIG_PREFIX), setting(phone, CONFIG_POSTFIX)
    return [(f"{prefix}cfg{mac}{postfix}", "mac_cfg", True), (f"{prefix}cfg{mac}.xml{postfix}", "mac_cfg", False),
            (f"{prefix}cfg{model}.xml{postfix}", "model_cfg", True), (f"{prefix}cfg.xml{postfix}", "common_cfg", True)]


def _credentials(server: ServerUrl, phone) -> Credentials | None:
    """The URL's login, else P1360/P1361 (HTTP and HTTPS only)."""
    http_login = setting(phone, HTTP_USER) and server.scheme in ("http", "https")
    return url_credentials(server, Credentials(setting(phone, HTTP_USER), setting(phone, HTTP_PASSWORD))
                           if http_login else None)


# --- the provisioning pass ------------------------------------------------------------------


def provision(phone, behaviour: GrandstreamBehaviour = DEFAULT_BEHAVIOUR):
    found = find_server(phone, behaviour)
    if found is None:
        layers, tried = [], "no config server: no DHCP option 66 and P237 is empty"
    else:
        value, origin = found
        try:
            server = server_url(value, setting(phone, CONFIG_VIA))
        except BadProvisioningUrl as exc:
            server, layers, tried = None, [], f"{origin}: {exc}"
        if server is not None:
            phone.server_from(server, origin, "config server")
            phone.flash.provisioning_url = str(server)
            layers, tried = yield from _config_files(phone, server, behaviour)

    before = dict(phone.flash.settings)
    merged: dict[str, str] = {}
    for _name, values in layers:
        for key, value in values.items():
            merged.setdefault(key, value)  # files come MAC first: the first to set a value wins
    phone.flash.settings.update(merged)
    changed = [key for key in merged if before.get(key) != merged[key]]
    if not CLOCK_KEYS.isdisjoint(changed):
        phone.note(describe_clock(phone))

    flashed = yield from _firmware(phone)

    if flashed:
        return pass_outcome(changed, noun="P-value", reboot_for=f"firmware {phone.flash.firmware}")
    if changed and behaviour.reboot_on_change:
        return pass_outcome(changed, noun="P-value", reboot_for="the changed P-values")
    if not layers:
        return ProvisioningOutcome("failed", reason=f"no configuration file applied ({tried})",
                                   next_check_s=next_check_s(phone, behaviour))
    return pass_outcome(changed, noun="P-value", next_check_s=next_check_s(phone, behaviour))


def _config_files(phone, server: ServerUrl, behaviour: GrandstreamBehaviour):
    """Fetch and read the config files: ([(name, values)] MAC first, what was tried)."""
    process_all = setting(phone, PROCESS_ALL_FILES).strip()
    process_all = process_all == "1" if process_all in ("0", "1") else behaviour.process_all_files
    credentials = _credentials(server, phone)
    layers: list[tuple[str, dict[str, str]]] = []
    outcomes: list[str] = []
    have_mac_file = False
    for name, stage, optional in config_files(phone):
        if stage == "mac_cfg" and have_mac_file:
            continue  # cfg<mac> was read: cfg<mac>.xml is not asked for
        result = yield Download(server.file_url(name), credentials, stage, optional)
        if not result.ok:
            outcomes.append(f"{name}: {result.status}")
            phone.note(f"{name}: {result.status} {result.detail}".rstrip())
            continue
        values = _read(phone, name, result.body)
        if values is None:
            outcomes.append(f"{name}: refused")
            continue
        layers.append((name, values))
        phone.flash.file_md5[name] = hashlib.md5(result.body).hexdigest()
        have_mac_file = have_mac_file or stage == "mac_cfg"
        if not process_all:
            phone.note(f"one file only (P8467 0 or the process_all_files setting): stop after {name}")
            break
    return layers, "; ".join(outcomes)


def _read(phone, name: str, body: bytes) -> dict[str, str] | None:
    """A file's values, or None (noted) when the phone refuses it."""
    if not grandstream_cfg.is_xml(body):
        phone.note(f"{name}: legacy binary (encrypted) configuration: labsim cannot read it, skipped")
        return None
    try:
        config = grandstream_cfg.parse_provision(body)
    except grandstream_cfg.NotAGrandstreamFile as exc:
        phone.note(f"{name}: refused: {exc}")
        return None
    if not config.is_for(phone.mac):
        phone.note(f"{name}: refused: <mac> {config.mac} is not this phone")
        return None
    extra = f"; ignored {', '.join(config.ignored[:3])}" if config.ignored else ""
    phone.note(f"{name}: {len(config.values)} values (config version {config.config_version}){extra}")
    return config.values


# --- firmware -------------------------------------------------------------------------------------


def firmware_file(phone) -> str:
    return f"{setting(phone, FIRMWARE_PREFIX)}{MODEL_INFO[phone.model].image}{setting(phone, FIRMWARE_POSTFIX)}"


def _firmware(phone):
    """P238 allowing, fetch the image from P192; another version: flash it, True."""
    mode = setting(phone, FIRMWARE_CHECK).strip()
    if mode == "2":
        return False
    pair = f"{setting(phone, FIRMWARE_PREFIX)}|{setting(phone, FIRMWARE_POSTFIX)}"
    if mode == "1" and phone.flash.versions.get(FIRMWARE_CHECKED_WITH, "|") == pair:
        phone.note("P238 1: firmware prefix/postfix unchanged: no firmware check")
        return False
    path = setting(phone, FIRMWARE_SERVER).strip()
    if not path:
        phone.note("P192 is empty: no firmware check (the factory server is never contacted)")
        return False
    try:
        server = server_url(path, setting(phone, FIRMWARE_VIA) or setting(phone, CONFIG_VIA))
    except BadProvisioningUrl as exc:
        phone.note(f"P192: {exc}")
        return False
    name = firmware_file(phone)
    result = yield Download(server.file_url(name), _credentials(server, phone), "firmware")
    if not result.ok:
        phone.note(f"firmware {name}: {result.status} {result.detail}".rstrip())
        return False
    phone.flash.versions[FIRMWARE_CHECKED_WITH] = pair
    version = grandstream_cfg.image_version(result.body)
    if version is None:
        phone.note(f"firmware {name}: no version in its header: not flashed")
        return False
    if version == phone.flash.firmware:
        phone.note(f"firmware {name}: {version} is running")
        return False
    old, phone.flash.firmware = phone.flash.firmware, version
    phone.note(f"firmware {name}: flashed {version} (was {old})")
    return True


# --- when to provision again ------------------------------------------------------------------


def next_check_s(phone, behaviour: GrandstreamBehaviour = DEFAULT_BEHAVIOUR) -> float | None:
    """P194: 1 every P193 minutes; 2 daily at hour P285; 3 weekly on day P286 (0 Sunday)
    at hour P285; 0 never. The hours are the phone's local time (P64). A failed pass
    waits for the same schedule."""
    mode = setting(phone, AUTO_UPGRADE).strip()
    if mode == "1":
        return 60.0 * max(1, parse_int(setting(phone, AUTO_UPGRADE_MINUTES), 10080))
    hour = min(23, parse_int(setting(phone, AUTO_UPGRADE_HOUR), 1))
    lab_now = behaviour.clock_start_s + phone.now
    zone = phone_zone(phone)
    now = zone.local_s(lab_now)
    if mode == "2":
        return zone.wait_s(lab_now, _until(now, hour * 3600, DAY_S))
    if mode == "3":
        day = min(6, parse_int(setting(phone, AUTO_UPGRADE_DAY), 1))
        return zone.wait_s(lab_now, _until(now, day * DAY_S + hour * 3600, WEEK_S))
    return None


def phone_zone(phone) -> Zone:
    """The DHCP server's option 2 with ``P143`` 1 (the factory value), a fixed offset; else
    ``P64`` as a POSIX TZ string, summer time included (``customize`` reads the
    self-defined zone in ``P246``); a ``P64`` that is not one (``auto``) keeps the lab's clock."""
    return _zone_and_source(phone)[0]


def describe_clock(phone) -> str:
    """What the phone's clock keeps, for its timeline: ``clock EST5EDT: summer time +60 min``."""
    zone, source = _zone_and_source(phone)
    return f"clock {source}: {summer_words(zone)}"


def _zone_and_source(phone) -> tuple[Zone, str]:
    offset_s = None
    if setting(phone, DHCP_OVERRIDES_TIME_ZONE).strip() == "1" and phone.lease is not None:
        offset_s = dhcp_time_offset_s(phone.lease.options)
    return _read_zone(offset_s, setting(phone, TIME_ZONE).strip(), setting(phone, CUSTOM_TIME_ZONE).strip())


# Remembered: a phone with a daily or weekly check asks at every pass.
@functools.lru_cache(maxsize=1024)
def _read_zone(dhcp_offset_s: int | None, zone: str, custom: str) -> tuple[Zone, str]:
    if dhcp_offset_s is not None:
        return Zone(dhcp_offset_s), f"{hours_text(dhcp_offset_s)} from DHCP option 2 ({DHCP_OVERRIDES_TIME_ZONE} 1)"
    key, text = (CUSTOM_TIME_ZONE, custom) if zone == "customize" else (TIME_ZONE, zone)
    if is_posix_zone(text):
        return posix_zone(text), text
    return Zone(), f"UTC, the lab's ({key} {text!r} is no POSIX time zone)"


def _until(now: float, moment: float, period: float) -> float:
    """Seconds from ``now`` to the next ``moment`` (seconds into each ``period``)."""
    into = now % period
    return moment - into if into < moment else period - into + moment


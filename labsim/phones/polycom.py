"""Polycom/Poly UC Software phones (VVX, SoundPoint IP), as the UC Software
administrator guides describe them.

The boot server comes from DHCP: by default the custom option (160) and then option 66
(``device.dhcp.bootSrvUseOpt``: 0 option 66 only, 1 custom option only, 2 the static
``device.prov.serverName``, 3 custom then 66). A value that names a ``.cfg`` file names the
master configuration file; otherwise the phone asks for ``<mac>.cfg`` and then for
``000000000000.cfg``.

The master file (XML ``<APPLICATION APP_FILE_PATH=… CONFIG_FILES="a.cfg, b.cfg" …>``)
names the application image and the configuration files. The application comes first:
a new one is flashed and the phone restarts into it before it reads any configuration.
Then the phone reads ``<mac>-phone.cfg`` from ``OVERRIDES_DIRECTORY`` (changes made on
the phone itself: they win over everything) and every file in ``CONFIG_FILES``, where
the **first** file that sets a parameter wins. ``device.*`` parameters apply only with
``device.set="1"`` and ``device.<name>.set="1"``; a change to one restarts the phone.
Finally the phone uploads its log (``<mac>-app.log`` into ``LOG_FILE_DIRECTORY``) and,
when the server had none, its overrides file, with HTTP PUT.

Polling (``prov.polling.*``) re-runs the same procedure without a reboot.
"""

from __future__ import annotations

import functools
import hashlib
import posixpath
import re
from dataclasses import dataclass

from labsim.phones import local_time
from labsim.phones.dhcp_client import DhcpIdentity
from labsim.phones.dns_client import PhoneDns
from labsim.phones.events import Credentials, ProvisioningOutcome, Upload
from labsim.phones.kit import (bare_mac, clock_s, download, next_mac_day_moment_s, option_text, parse_int,
                               pass_outcome, url_credentials)
from labsim.phones.local_time import DayRule, Zone, dhcp_time_offset_s, seconds_offset_s, summer_words, zone_from
from labsim.wire import polycom_cfg
from labsim.wire.numbers import is_number
from labsim.wire.provisioning_url import BadProvisioningUrl, ServerUrl, parse_server, url_part

VENDOR = "polycom"


@dataclass(frozen=True)
class Model:
    family: str  # the User-Agent's product: "PolycomVVX"
    short_family: str  # option 60 sub-option 2's prefix: "VVX"
    token: str  # "VVX_400": User-Agent and option 60
    part_number: str  # option 60 sub-option 3 (unverified: as phones of that model report it)
    firmware: str  # the default application version


def _vvx(number: str, part: str) -> Model:
    return Model("PolycomVVX", "VVX", f"VVX_{number}", part, "4.1.4.7430")


def _spip(number: str, part: str) -> Model:
    return Model("PolycomSoundPointIP", "SoundPointIP", f"SPIP_{number}", part, "4.0.15.1009")


# labsim's model name (the master file's model token, as in APPLICATION_VVX400) -> model.
MODEL_INFO = {
    "VVX250": _vvx("250", "3111-48820-001"), "VVX300": _vvx("300", "3111-46135-002"),
    "VVX310": _vvx("310", "3111-46161-001"), "VVX350": _vvx("350", "3111-48830-001"),
    "VVX400": _vvx("400", "3111-46157-002"), "VVX410": _vvx("410", "3111-46162-001"),
    "VVX450": _vvx("450", "3111-48840-001"), "VVX500": _vvx("500", "3111-44500-001"),
    "VVX600": _vvx("600", "3111-44600-001"), "VVX1500": _vvx("1500", "2345-17960-001"),
    "SPIP331": _spip("331", "2345-12365-001"), "SPIP335": _spip("335", "2345-12375-001"),
    "SPIP450": _spip("450", "2345-12450-001"), "SPIP550": _spip("550", "2345-12500-001"),
    "SPIP650": _spip("650", "2345-12600-001"),
}
MODELS = tuple(MODEL_INFO)
MAC_PREFIXES = ("00:04:f2", "64:16:7f")
# kit.VendorProfile.STAGES: the master file, the phone's overrides file, the files the
# master names (CONFIG_FILES), firmware, and the overrides and log it uploads.
STAGES = ("master_cfg", "overrides", "cfg", "firmware", "upload")

DEFAULT_MASTER_FILE = "000000000000.cfg"
# (unverified) what the phone asks for in option 55: the standard set, 66 and the custom 160.
# Option 55. Option 2 (Time Offset, which stands for gmtOffset by factory default): every
# capture of a Polycom phone's request asks for it (Fingerbank's VVX 310 fingerprint
# "128,66,160,43,7,54,42,15,6,4,3,2,1", 2014; the older SoundPoints'). (unverified) The rest.
PARAMETER_REQUEST_LIST = bytes([1, 2, 3, 6, 12, 15, 42, 43, 66, 150, 151, 160])
DEFAULT_FTP_CREDENTIALS = Credentials("PlcmSpIp", "PlcmSpIp")  # the documented factory boot-server login

# The phone's own settings that steer provisioning (names as in the UC Software guide).
BOOT_SERVER_USE_KEY = "device.dhcp.bootSrvUseOpt"  # 0 66, 1 custom, 2 static, 3 custom+66
BOOT_SERVER_OPTION_KEY = "device.dhcp.bootSrvOpt"  # the custom option's number (160)
STATIC_SERVER_KEY = "device.prov.serverName"
SERVER_USER_KEY, SERVER_PASSWORD_KEY = "device.prov.user", "device.prov.password"
DEVICE_PREFIX, DEVICE_SET_KEY = "device.", "device.set"
POLLING_ENABLED, POLLING_MODE, POLLING_PERIOD = "prov.polling.enabled", "prov.polling.mode", "prov.polling.period"
POLLING_TIME, POLLING_TIME_END = "prov.polling.time", "prov.polling.timeRandomEnd"
GMT_OFFSET = "tcpIpApp.sntp.gmtOffset"  # seconds east of UTC: the clock prov.polling.time is read on
FACTORY_GMT_OFFSET = "0"  # UC Software 5.x's site.cfg template (the SIP 1.4 guide's was -28800)
# 0, the factory value (the same template): the DHCP server's option 2 stands for gmtOffset;
# 1: the configured gmtOffset wins. The meaning is *inferred* from the name and from
# provisioning tools' help ("If 'Disabled', the DHCP values for the GMT offset will be used").
GMT_OFFSET_OVERRIDES_DHCP = "tcpIpApp.sntp.gmtOffset.overrideDHCP"
# A pass that changes a setting under these notes what the phone's clock keeps.
CLOCK_PREFIXES = ("tcpIpApp.sntp.gmtOffset", "tcpIpApp.sntp.daylightSavings.", "prov.polling.")
DST = "tcpIpApp.sntp.daylightSavings."
# The SoundPoint guide's factory values: on; the first Sunday (dayOfWeek 1) on or after
# 8 March to the first on or after 1 November, at 02:00; (unverified) one hour.
DST_DEFAULTS = (("enable", "1"), ("fixedDayEnable", "0"),
                ("start.month", "3"), ("start.date", "8"), ("start.time", "2"), ("start.dayOfWeek", "1"),
                ("start.dayOfWeek.lastInMonth", "0"),
                ("stop.month", "11"), ("stop.date", "1"), ("stop.time", "2"), ("stop.dayOfWeek", "1"),
                ("stop.dayOfWeek.lastInMonth", "0"))
CHECK_SYNC_ALWAYS_REBOOT = "voIpProt.SIP.specialEvent.checkSync.alwaysReboot"
BOOT_SERVER_MODES = {"0": "66", "1": "custom", "2": "static", "3": "custom+66"}

APP_LOG_LINES = 500
_VERSION = re.compile(rb"(\d+\.\d+\.\d+\.\d+)")
DAY_S = 86_400


@dataclass(frozen=True)
class PolycomBehaviour:
    """Behaviour the guides leave open: settings, defaults *(unverified)*."""

    boot_server_mode: str = "custom+66"  # (unverified) without device.dhcp.bootSrvUseOpt: "66", "custom", "static", "custom+66"
    custom_option: int = 160  # (unverified) without device.dhcp.bootSrvOpt
    # (unverified) a bare host or IP: the guides make it device.prov.serverType's protocol
    # (FTP on old software, HTTP on newer); labsim follows the common rule: TFTP.
    bare_host_scheme: str = "tftp"
    use_stored_server: bool = True  # (unverified) without a DHCP value, the server the phone used last
    attempts_per_file: int = 1  # (unverified) requests per file before it is given up
    retry_delay_s: float = 1.0  # (unverified) between them
    missing_config_file_fails: bool = False  # (unverified) a CONFIG_FILES entry that is missing is skipped
    # (unverified) parameters whose change restarts the phone, comma-separated prefixes.
    # device.* is the documented case (the guides mark them "change causes restart").
    restart_prefixes: str = "device."
    upload_log: bool = True  # (unverified) <mac>-app.log after every pass
    upload_overrides: str = "when_missing"  # (unverified) "when_missing", "always", "never"
    # Where the simulated wall clock starts, seconds after local midnight (absolute and
    # random polling times). (unverified default: the run starts at midnight.)
    clock_start_s: float = 0.0
    retry_after_failure_s: float = 0.0  # (unverified) no retry timer is documented: 0 = none

    def __post_init__(self):
        # A misspelt choice is a scenario error, not a silent fallback.
        choices = {"boot_server_mode": ("66", "custom", "static", "custom+66"),
                   "bare_host_scheme": ("tftp", "ftp", "http", "https"),
                   "upload_overrides": ("when_missing", "always", "never")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"polycom behaviour {name}: {getattr(self, name)!r}; allowed: {', '.join(allowed)}")


DEFAULT_BEHAVIOUR = PolycomBehaviour()


def default_firmware(model: str) -> str:
    return MODEL_INFO[model].firmware


def dns_client(phone, behaviour: PolycomBehaviour = DEFAULT_BEHAVIOUR) -> PhoneDns:
    """The phone's DNS client as it boots. The UC Software guide: "Support for negative
    DNS caching as described in RFC 2308 is also provided": a "no such name" answer that
    carries the zone's SOA is kept as long as the SOA says. How often and how far apart it
    asks is not documented: labsim's default (phones.dns_client)."""
    return PhoneDns(negative_caching=True)


def user_agent(phone, behaviour: PolycomBehaviour = DEFAULT_BEHAVIOUR) -> str:
    """``FileTransport PolycomVVX-VVX_400-UA/4.1.4.7430 Type/Application``."""
    model = MODEL_INFO[phone.model]
    return f"FileTransport {model.family}-{model.token}-UA/{phone.flash.firmware} Type/Application"


def dhcp_identity(phone, behaviour: PolycomBehaviour = DEFAULT_BEHAVIOUR) -> DhcpIdentity:
    """Option 60 in RFC 3925 form (enterprise 13885): "Polycom", ``VVX-VVX_400``, the
    part number, ``SIP/<application version>``."""
    model = MODEL_INFO[phone.model]
    return DhcpIdentity(
        vendor_class=polycom_cfg.vendor_class(f"{model.short_family}-{model.token}", model.part_number,
                                              f"SIP/{phone.flash.firmware}"),
        parameter_request_list=PARAMETER_REQUEST_LIST,
        hostname=f"Polycom_{bare_mac(phone.mac)}".encode(),  # (unverified) device.host.hostname's default
    )


def check_sync_action(phone, reboot_requested: bool, behaviour: PolycomBehaviour = DEFAULT_BEHAVIOUR) -> str:
    """SIP NOTIFY check-sync: with ``…checkSync.alwaysReboot`` 1 the phone always restarts;
    otherwise it re-provisions and restarts only if something changed (see provision)."""
    if phone.flash.settings.get(CHECK_SYNC_ALWAYS_REBOOT) == "1":
        return "reboot"
    return "resync"


# --- finding the boot server -----------------------------------------------------------


def find_server(phone, behaviour: PolycomBehaviour = DEFAULT_BEHAVIOUR) -> tuple[str, str] | None:
    """(server value, where it came from) by ``device.dhcp.bootSrvUseOpt``."""
    settings = phone.flash.settings
    options = phone.lease.options if phone.lease else {}
    mode = BOOT_SERVER_MODES.get(settings.get(BOOT_SERVER_USE_KEY, ""), behaviour.boot_server_mode)
    custom = settings.get(BOOT_SERVER_OPTION_KEY, "")
    custom = int(custom) if is_number(custom) and 128 <= int(custom) <= 254 else behaviour.custom_option
    codes = {"66": [66], "custom": [custom], "custom+66": [custom, 66], "static": []}[mode]
    for code in codes:
        value = option_text(options.get(code))
        if value:
            return value, f"DHCP option {code}"
    if mode == "static" and settings.get(STATIC_SERVER_KEY):
        return settings[STATIC_SERVER_KEY], STATIC_SERVER_KEY
    if behaviour.use_stored_server and phone.flash.provisioning_url:
        return phone.flash.provisioning_url, "flash"
    return None


def named_master_file(value: str) -> str | None:
    """The master file a boot-server URL names (``http://prov/site/lab.cfg`` -> ``lab.cfg``)."""
    path = url_part(value if "://" in value else "x://" + value, "path")
    last = path.rsplit("/", 1)[-1]
    return last if last.lower().endswith(".cfg") else None


# --- the provisioning procedure -----------------------------------------------------------


def provision(phone, behaviour: PolycomBehaviour = DEFAULT_BEHAVIOUR):
    flash = phone.flash
    found = find_server(phone, behaviour)
    if found is None:
        return _ended(phone, "failed", "no boot server: no DHCP option and none stored", behaviour)
    value, source = found
    try:
        server = parse_server(value if "://" in value else f"{behaviour.bare_host_scheme}://{value}")
    except BadProvisioningUrl as exc:
        return _ended(phone, "failed", f"{source}: {exc}", behaviour)
    phone.server_from(server, source, "boot server")
    flash.provisioning_url = str(server)
    credentials = _credentials(server, flash.settings)
    fetch = _Fetcher(phone, server, credentials, behaviour)

    # The master configuration file: the one the URL names, else <mac>.cfg, else 000000000000.cfg.
    named = named_master_file(value)
    candidates = [named] if named else [f"{bare_mac(phone.mac)}.cfg", DEFAULT_MASTER_FILE]
    master_name = master_body = None
    for name in candidates:  # each but the last is only looked for
        master_body = yield from fetch.file(name, "master_cfg", optional=name != candidates[-1])
        if master_body is not None:
            master_name = name
            break
    if master_body is None:
        return _ended(phone, "failed", f"no master configuration file ({' or '.join(candidates)})", behaviour)
    try:
        master = polycom_cfg.parse_master(master_body, phone.model, phone.mac)
    except polycom_cfg.NotAPolycomFile as exc:
        return _ended(phone, "failed", f"{master_name}: {exc}", behaviour)
    phone.note(f"{master_name}: application {master.app_file_path or '(none)'}, "
               f"CONFIG_FILES {', '.join(master.config_files) or '(none)'}")

    # The application first: a new one restarts the phone before any configuration.
    new_application = yield from _application(phone, fetch, master)
    if new_application:
        flash.file_md5[master_name] = hashlib.md5(master_body).hexdigest()
        return ProvisioningOutcome("applied", reboot=True, reason=f"new application {flash.firmware}: restart")

    overrides_name = f"{bare_mac(phone.mac)}-phone.cfg"
    overrides_path = _in_folder(master.overrides_directory, overrides_name)
    # <mac>-phone.cfg exists only once the phone has uploaded changes made at it.
    overrides_body = yield from fetch.file(overrides_path, "overrides", attempts=1, optional=True)
    layers: list[dict[str, str]] = []
    if overrides_body is not None:
        layers.append(_read_config(phone, overrides_name, overrides_body) or {})
    md5s = {master_name: hashlib.md5(master_body).hexdigest()}
    application_key = posixpath.basename(master.app_file_path)
    if application_key in flash.file_md5:  # what the application check remembers
        md5s[application_key] = flash.file_md5[application_key]
    missing = []
    for name in master.config_files:
        body = yield from fetch.file(name, "cfg")
        if body is None:
            missing.append(name)
            continue
        settings = _read_config(phone, name, body)
        if settings is None:
            missing.append(name)
            continue
        layers.append(settings)
        md5s[name] = hashlib.md5(body).hexdigest()
    if missing and behaviour.missing_config_file_fails:
        return _ended(phone, "failed", f"configuration file(s) missing or unreadable: {', '.join(missing)}", behaviour)

    changed = _apply(phone, polycom_cfg.merge_first_wins(layers), behaviour)
    flash.file_md5 = md5s
    if any(key.startswith(CLOCK_PREFIXES) for key in changed):
        phone.note(describe_clock(phone))

    yield from _uploads(phone, fetch, master, overrides_path, overrides_body is None, behaviour)

    restart_keys = [key for key in changed if needs_restart(key, behaviour)]
    if phone.trigger == "check_sync" and changed:
        # checkSync.alwaysReboot 0: a check-sync restarts the phone when its configuration changed.
        return ProvisioningOutcome("applied", reboot=True, changed_keys=changed,
                                   reason=f"check-sync: {len(changed)} changed parameters: restart")
    if restart_keys:
        return pass_outcome(changed, noun="parameter", reboot_for=restart_keys[0], restart_word="restart")
    outcome = pass_outcome(changed, noun="parameter")
    if missing:
        outcome.reason += f" ({len(missing)} configuration file(s) skipped)"
    outcome.next_check_s = next_check_s(phone, outcome.result, behaviour)
    return outcome


class _Fetcher:
    """Downloads from the boot server with the pass's credentials and retry settings."""

    def __init__(self, phone, server: ServerUrl, credentials, behaviour: PolycomBehaviour):
        self.phone, self.server, self.credentials, self.behaviour = phone, server, credentials, behaviour

    def url(self, name: str) -> str:
        return name if "://" in name else self.server.file_url(name)

    def file(self, name: str, stage: str, attempts: int | None = None, optional: bool = False):
        return (yield from download(self.phone, self.url(name), name, self.credentials, stage,
                                    attempts or self.behaviour.attempts_per_file, self.behaviour.retry_delay_s,
                                    optional))


def _credentials(server: ServerUrl, settings: dict) -> Credentials | None:
    if settings.get(SERVER_USER_KEY):
        return url_credentials(server, Credentials(settings[SERVER_USER_KEY], settings.get(SERVER_PASSWORD_KEY, "")))
    return url_credentials(server, DEFAULT_FTP_CREDENTIALS if server.scheme == "ftp" else None)


def _in_folder(folder: str, name: str) -> str:
    """A file in one of the master's folders: relative to the boot server, or a URL."""
    folder = folder.strip()
    if "://" in folder:
        return folder.rstrip("/") + "/" + name
    folder = folder.strip("/")
    return f"{folder}/{name}" if folder else name


def _read_config(phone, name: str, body: bytes) -> dict[str, str] | None:
    try:
        return polycom_cfg.parse_config(body)
    except polycom_cfg.NotAPolycomFile as exc:
        phone.note(f"rejected {name}: {exc}")
        return None


# --- the application ------------------------------------------------------------------------


def application_version(image: bytes) -> str | None:
    """The version stamped in an application image's header: the first dotted four-part
    number in its first 4 KiB (labsim's stand-in for the .ld header)."""
    match = _VERSION.search(image[:4096])
    return match.group(1).decode() if match else None


def _application(phone, fetch: _Fetcher, master: polycom_cfg.MasterFile):
    """Download APP_FILE_PATH and flash it when it is not what runs; True if flashed.
    A missing image leaves the running application in place."""
    if not master.app_file_path:
        return False
    flash = phone.flash
    name = master.app_file_path
    image = yield from fetch.file(name, "firmware", attempts=1)
    if image is None:
        phone.note(f"application {name} unavailable: {flash.firmware} keeps running")
        return False
    version = application_version(image)
    md5 = hashlib.md5(image).hexdigest()
    key = posixpath.basename(name)
    if version is not None and version == flash.firmware:
        phone.note(f"application {name} is {version}, already running")
        return False
    if version is None and flash.file_md5.get(key) == md5:
        phone.note(f"application {name} unchanged (same MD5)")
        return False
    old = flash.firmware
    flash.firmware = version or flash.firmware
    flash.file_md5[key] = md5
    phone.note(f"flashed application {name} ({flash.firmware}, was {old})")
    return True


# --- applying parameters --------------------------------------------------------------------


def device_parameter_applies(key: str, merged: dict[str, str]) -> bool:
    """``device.*`` parameters apply only with ``device.set="1"`` and their own
    ``device.<name>.set="1"``; the ``.set`` switches themselves are ordinary parameters."""
    if not key.startswith(DEVICE_PREFIX) or key == DEVICE_SET_KEY or key.endswith(".set"):
        return True
    return merged.get(DEVICE_SET_KEY) == "1" and merged.get(key + ".set") == "1"


def _apply(phone, merged: dict[str, str], behaviour: PolycomBehaviour) -> list[str]:
    """Parameters come from the files as a whole: one no file sets any more goes back to
    its default (leaves flash). Applied ``device.*`` values stay in the device's own
    settings until a file changes them."""
    flash = phone.flash
    old = flash.settings
    new = {key: value for key, value in old.items()
           if key.startswith(DEVICE_PREFIX) and not key.endswith(".set") and key != DEVICE_SET_KEY}
    ignored = []
    for key, value in merged.items():
        if device_parameter_applies(key, merged):
            new[key] = value
        else:
            ignored.append(key)
    if ignored:
        phone.note(f"{len(ignored)} device parameter(s) not applied without device.set and their .set: "
                   + ", ".join(ignored[:3]) + ("…" if len(ignored) > 3 else ""))
    changed = [key for key in {**old, **new} if old.get(key) != new.get(key)]
    flash.settings = new
    return changed


def needs_restart(key: str, behaviour: PolycomBehaviour = DEFAULT_BEHAVIOUR) -> bool:
    prefixes = tuple(part.strip() for part in behaviour.restart_prefixes.split(",") if part.strip())
    return bool(prefixes) and key.startswith(prefixes) and not key.endswith(".set") and key != DEVICE_SET_KEY


# --- uploads -------------------------------------------------------------------------------


def _uploads(phone, fetch: _Fetcher, master: polycom_cfg.MasterFile, overrides_path: str, overrides_missing: bool,
             behaviour: PolycomBehaviour):
    """``<mac>-app.log`` into LOG_FILE_DIRECTORY, and the overrides file when the server
    had none (the phone creates it). A refused upload is noted, never a failure."""
    mac = bare_mac(phone.mac)
    uploads = []
    if behaviour.upload_overrides == "always" or (behaviour.upload_overrides == "when_missing" and overrides_missing):
        uploads.append((overrides_path, polycom_cfg.render_config({}, "PHONE_CONFIG", "OVERRIDES")))
    if behaviour.upload_log:
        uploads.append((_in_folder(master.log_file_directory, f"{mac}-app.log"), app_log(phone)))
    for path, body in uploads:
        result = yield Upload(fetch.url(path), body, fetch.credentials, "upload")
        if result.ok:
            phone.note(f"uploaded {path} ({len(body)} bytes)")
        else:
            phone.note(f"upload of {path} failed: {result.status} {result.detail}".rstrip())


def app_log(phone) -> bytes:
    """The phone's recent log: one line per step, ``seconds|state|detail`` (the last
    APP_LOG_LINES, as a phone's log buffer is bounded)."""
    lines = [f"{moment:010.3f}|{state:<12}|{detail}" for moment, state, detail, _kind in phone.events[-APP_LOG_LINES:]]
    return ("\n".join(lines) + "\n").encode("utf-8", errors="replace")


# --- when to provision again ------------------------------------------------------------------


def next_check_s(phone, result: str, behaviour: PolycomBehaviour = DEFAULT_BEHAVIOUR) -> float | None:
    """``prov.polling.*``: mode ``rel`` every ``period`` seconds; ``abs`` daily (every
    ``period`` days, rounded up) at ``time``; ``random`` at the phone's moment between
    ``time`` and ``timeRandomEnd`` (drawn once a boot), on its MAC's day of a period of
    several days. A failed pass retries after ``retry_after_failure_s`` if set."""
    settings = phone.flash.settings
    candidates = []
    if result == "failed" and behaviour.retry_after_failure_s > 0:
        candidates.append(behaviour.retry_after_failure_s)
    if settings.get(POLLING_ENABLED) == "1":
        polling = _next_poll(phone, settings, behaviour)
        if polling is not None:
            candidates.append(polling)
    return min(candidates) if candidates else None


RANDOM_POLL_OFFSET = "random_poll_offset_s"  # in Phone.vendor_ram: the boot's moment in the random window


def _next_poll(phone, settings: dict, behaviour: PolycomBehaviour) -> float | None:
    mode = settings.get(POLLING_MODE, "abs")
    period = parse_int(settings.get(POLLING_PERIOD), DAY_S)
    if mode == "rel":
        return float(max(1, period))
    start = clock_s(settings.get(POLLING_TIME, "03:00"))
    if start is None:
        return None
    # "The polling period is rounded up to the nearest number of days in absolute and random
    # mode" (the UC Software guides): 86401 s is two days.
    days = max(1, -(-period // DAY_S))
    lab_now = behaviour.clock_start_s + phone.now
    zone = phone_zone(phone)
    local_now = zone.local_s(lab_now)
    if mode == "random":
        end = clock_s(settings.get(POLLING_TIME_END, "")) or start
        # At the phone's moment between time and timeRandomEnd, "calculated again with every
        # reboot"; over several days on the day "determined by the phone's MAC address",
        # which "does not change with a reboot" (the UC Software parameter table).
        wait = next_mac_day_moment_s(phone, local_now, start, (end - start) % DAY_S, days, RANDOM_POLL_OFFSET)
        return zone.wait_s(lab_now, wait)
    now_of_day = local_now % DAY_S
    until = start - now_of_day if now_of_day < start else days * DAY_S - now_of_day + start
    return zone.wait_s(lab_now, until)


def phone_zone(phone) -> Zone:
    """:func:`standard_offset` and the ``tcpIpApp.sntp.daylightSavings.*`` summer time (on
    by factory default, with the United States' rule)."""
    settings = phone.flash.settings
    return _zone(standard_offset(phone)[0], *(settings.get(DST + name, default) for name, default in DST_DEFAULTS))


def standard_offset(phone) -> tuple[int, str]:
    """The phone's standard offset and where it comes from in words: the lease's option 2
    with ``tcpIpApp.sntp.gmtOffset.overrideDHCP`` 0 (the factory value), else
    ``tcpIpApp.sntp.gmtOffset``, else the factory ``0``."""
    settings = phone.flash.settings
    dhcp_offset_s = None
    if settings.get(GMT_OFFSET_OVERRIDES_DHCP, "0").strip() != "1" and phone.lease is not None:
        dhcp_offset_s = dhcp_time_offset_s(phone.lease.options)
    return local_time.standard_offset(GMT_OFFSET, settings.get(GMT_OFFSET), FACTORY_GMT_OFFSET, dhcp_offset_s,
                                      f"{GMT_OFFSET_OVERRIDES_DHCP} 0", read=seconds_offset_s)


def describe_clock(phone) -> str:
    """What the phone's clock keeps, for its timeline: ``clock -18000: summer time +60 min``."""
    return f"clock {standard_offset(phone)[1]}: {summer_words(phone_zone(phone))}"


@functools.lru_cache(maxsize=1024)
def _zone(standard_s: int, enable: str, fixed_day: str, *days: str) -> Zone:
    if enable.strip() != "1":
        return Zone(standard_s)
    return zone_from(standard_s, _dst_day(fixed_day, *days[:5]), _dst_day(fixed_day, *days[5:]), 3600)


def _dst_day(fixed_day: str, month: str, date: str, hour: str, weekday: str, last_in_month: str) -> DayRule | None:
    """With ``fixedDayEnable`` 1 the date itself; else the ``dayOfWeek`` (1 Sunday … 7
    Saturday) on or after the date (1, 8, 15, 22: the first … fourth), or with
    ``lastInMonth`` 1 the month's last such day."""
    month, date, hour, weekday = (parse_int(value, -1) for value in (month, date, hour, weekday))
    if not 1 <= month <= 12 or not 1 <= date <= 31 or not 0 <= hour <= 23:
        return None
    if fixed_day.strip() == "1":
        return DayRule(month, date, None, hour * 3600)
    if not 1 <= weekday <= 7:
        return None
    return DayRule(month, -7 if last_in_month.strip() == "1" else date, weekday - 1, hour * 3600)


def _ended(phone, result: str, reason: str, behaviour: PolycomBehaviour) -> ProvisioningOutcome:
    return ProvisioningOutcome(result, reason=reason, next_check_s=next_check_s(phone, result, behaviour))

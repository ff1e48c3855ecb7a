"""Yealink T2x / T4x / T5x phones, as the Yealink auto-provisioning guide describes them.

Sources of the provisioning server, first that answers wins: PnP (at boot, with
``static.auto_provision.pnp_enable`` on: a SIP SUBSCRIBE ``Event: ua-profile`` to
224.0.1.75:5060, the NOTIFY's body is the URL) -> DHCP custom options
(``static.auto_provision.dhcp_option.list_user_options``) -> option 66 -> option 43 ->
the URL stored in flash (``static.auto_provision.server.url``). A URL from PnP serves
every provisioning pass until the next boot asks again.

Files, in order. Firmware 81 and later first asks for ``<mac>.boot``, then
``y000000000000.boot``; a boot file lists ``include:config`` files, fetched top to
bottom, later ones overriding earlier ones. Without a boot file: the Common CFG
``y0000000000XX.cfg`` (XX: the model's code), then the MAC-oriented CFG ``<mac>.cfg``,
then ``<mac>-local.cfg`` when ``static.auto_provision.custom.protect`` is on. A missing
file is asked for ``attempt_before_failed`` times (3), then skipped.

Change detection: if the MD5 of every file equals what flash remembers, provisioning
ends there: nothing is applied and the phone does not reboot. Otherwise: decrypt what is
encrypted, apply every file's settings, download the resource files the configuration
names, then the firmware; reboot only if a changed setting needs it or firmware was
flashed.
"""

from __future__ import annotations

import posixpath
import re
import sys
from dataclasses import dataclass
from functools import partial

from labsim.phones import yealink_summer_time as summer_time
from labsim.phones.dhcp_client import DhcpIdentity
from labsim.phones.dns_client import PhoneDns
from labsim.phones.events import Credentials, PnpQuery, ProvisioningOutcome
from labsim.phones.kit import (bare_mac, clock_s, download, next_mac_day_moment_s, next_window_moment_s, option_text,
                               parse_int, pass_outcome, url_credentials)
from labsim.phones.local_time import Zone, dhcp_time_offset_s
from labsim.phones.packed import SharedValues, md5_hex
from labsim.wire import dhcp, yealink_aes, yealink_cfg
from labsim.wire.numbers import is_number
from labsim.wire.provisioning_url import BadProvisioningUrl, ServerUrl, parse_server

VENDOR = "yealink"

# Model -> the code in its Common CFG name and firmware version (T46S: y000000000066.cfg).
MODEL_CODES = {
    "T46S": 66, "T48S": 65, "T42S": 67, "T41S": 68, "T54S": 70, "T52S": 74,
    "T46G": 28, "T48G": 35, "T42G": 29, "T21P_E2": 52, "T19P_E2": 53, "T23G": 44,
    "T27G": 69, "T40G": 76, "T53W": 95, "T54W": 96, "T57W": 97, "T58A": 58,
    "T46U": 108, "T48U": 109, "T43U": 107, "T31G": 123, "T33G": 124,
}
MODELS = tuple(MODEL_CODES)
MAC_PREFIXES = ("00:15:65", "80:5e:c0", "24:9a:d8", "44:db:d2", "80:5e:0c")
# The stages a pass times its downloads as (kit.VendorProfile.STAGES): the boot file, its
# common and MAC files (others it names: "cfg"), an AES key file, resources, firmware.
STAGES = ("boot_file", "common_cfg", "mac_cfg", "cfg", "key", "resource", "firmware")

DEFAULT_VENDOR_CLASS = "yealink"
# Option 55. Option 2 (Time Offset, for local_time.dhcp_time): every capture of a Yealink
# phone's request asks for it (Fingerbank's fingerprint "1,2,3,4,6,7,12,15,28,42,66,67,43,120",
# 2014, model not given). (unverified) The rest: the options the phone reads.
PARAMETER_REQUEST_LIST = bytes([1, 2, 3, 6, 15, 42, 43, 44, 66, 67, 120, 125, 150, 160, 161])
COMMON_BOOT_FILE = "y000000000000.boot"
BOOT_FILES_SINCE_FIRMWARE = 81  # the second number of the firmware version (66.85.0.5 -> 85)

# Settings whose change makes the phone reboot (network settings and the like).
REBOOT_KEY_PREFIXES = ("static.network.",)
REBOOT_KEYS = frozenset({
    "static.auto_provision.connect.keep_alive",
    "static.wui.http_enable",
    "static.wui.https_enable",
})

# The phone's own settings that steer provisioning (names as in the Yealink guide).
AP = "static.auto_provision."
SERVER_URL_KEY = AP + "server.url"
SERVER_USER_KEY = AP + "server.username"
SERVER_PASSWORD_KEY = AP + "server.password"
USER_OPTIONS_KEY = AP + "dhcp_option.list_user_options"
USER_OPTIONS_ENABLE_KEY = AP + "dhcp_option.enable"
OPTION60_KEY = AP + "dhcp_option.option60_value"
POWER_ON_KEY = AP + "power_on"
PNP_ENABLE_KEY = AP + "pnp_enable"
REPEAT_ENABLE_KEY = AP + "repeat.enable"
REPEAT_MINUTES_KEY = AP + "repeat.minutes"
WEEKLY_ENABLE_KEY = AP + "weekly.enable"
WEEKLY_DAYS_KEY = AP + "weekly.dayofweek"
WEEKLY_BEGIN_KEY = AP + "weekly.begin_time"
WEEKLY_END_KEY = AP + "weekly.end_time"
WEEKLY_INTERVAL_KEY = AP + "weekly_upgrade_interval"
FLEXIBLE_ENABLE_KEY = AP + "flexible.enable"
FLEXIBLE_INTERVAL_KEY = AP + "flexible.interval"
FLEXIBLE_BEGIN_KEY = AP + "flexible.begin_time"
FLEXIBLE_END_KEY = AP + "flexible.end_time"
ATTEMPTS_KEY = AP + "attempt_before_failed"
RETRY_DELAY_KEY = AP + "retry_delay_after_file_transfer_failed"
PROTECT_KEY = AP + "custom.protect"
AES_IN_FILE_KEY = AP + "aes_key_in_file"
AES_COMMON_KEY = AP + "aes_key_16.com"
AES_MAC_KEY = AP + "aes_key_16.mac"
ENCRYPTED_ONLY_KEY = AP + "update_file_mode"
FIRMWARE_URL_KEY = "static.firmware.url"
NOTIFY_REBOOT_KEY = "sip.notify_reboot_enable"

# The settings above under the name a file might give them without "static." (as older
# guides and templates write them): the phone has no such setting, so the value changes
# nothing. A pass that sets one notes which name the phone reads: a resync timer that
# never fires is otherwise silent.
_STATIC_NAME = {key[len("static."):]: key for key in (
    *REBOOT_KEYS, SERVER_URL_KEY, SERVER_USER_KEY, SERVER_PASSWORD_KEY, USER_OPTIONS_KEY, USER_OPTIONS_ENABLE_KEY,
    OPTION60_KEY, POWER_ON_KEY, PNP_ENABLE_KEY, REPEAT_ENABLE_KEY, REPEAT_MINUTES_KEY, WEEKLY_ENABLE_KEY,
    WEEKLY_DAYS_KEY, WEEKLY_BEGIN_KEY, WEEKLY_END_KEY, WEEKLY_INTERVAL_KEY, FLEXIBLE_ENABLE_KEY, FLEXIBLE_INTERVAL_KEY, FLEXIBLE_BEGIN_KEY,
    FLEXIBLE_END_KEY, ATTEMPTS_KEY, RETRY_DELAY_KEY, PROTECT_KEY, AES_IN_FILE_KEY,
    AES_COMMON_KEY, AES_MAC_KEY, ENCRYPTED_ONLY_KEY, FIRMWARE_URL_KEY)}


def _static_name(key: str) -> str | None:
    """The ``static.`` setting a file meant by ``key``, or None."""
    if key.startswith("network."):
        return "static." + key
    return _STATIC_NAME.get(key)


# Files the configuration names that the phone downloads after applying it.
RESOURCE_KEYS = (
    "ringtone.url", "local_contact.data.url", "directory_setting.url", "super_search.url",
    "wallpaper_upload.url", "screensaver.upload_url", "gui_lang.url", "trusted_certificates.url",
    "server_certificates.url", "dialplan_dialnow.url", "dialplan_replace_rule.url", summer_time.AUTO_DST_URL_KEY,
)
# A pass that changes one of these notes what the phone's clock keeps (its weekly window's
# included: a window set without a zone opens on the factory zone's clock).
_CLOCK_KEYS = ("local_time.", summer_time.AUTO_DST_URL_KEY, "static.auto_provision.weekly.",
               "static.auto_provision.flexible.")
# Resources whose body the phone keeps on flash and reads later, under this name.
KEPT_RESOURCES = {summer_time.AUTO_DST_URL_KEY: summer_time.AUTO_DST_FILE}

_FIRMWARE_VERSION = re.compile(r"(\d+\.\d+\.\d+\.\d+)\.rom$", re.IGNORECASE)
_INCLUDE = re.compile(r'^include:config\s*[<"]([^>"]+)[>"]\s*$', re.IGNORECASE)


@dataclass(frozen=True)
class YealinkBehaviour:
    """Behaviour the vendor does not document precisely: settings, defaults *(unverified)*."""

    attempts_per_file: int = 3  # attempt_before_failed, when the phone's setting is absent
    retry_delay_s: float = 1.0  # (unverified) retry_delay_after_file_transfer_failed default
    boot_file_attempts: int = 1  # (unverified) boot files are optional: one request each
    require_version_header: bool = True  # (unverified) reject files without '#!version:1.0.0.1'
    reboot_on_any_change: bool = False  # old firmware generation (SIP-T2xP) rebooted on any MD5 change
    skip_same_firmware: bool = True  # (unverified) do not re-flash the version already running
    user_agent_style: str = "current"  # "current", "old" (lowercase 'yealink'), "mac_without_colons" (some T5x)
    week_starts_s: float = 0.0  # (unverified) the run starts this many seconds after Sunday 00:00
    pnp_wait_s: float = 2.0  # (unverified) how long the phone waits for the PnP NOTIFY


DEFAULT_BEHAVIOUR = YealinkBehaviour()


def _work_out_common_cfg_name(model: str) -> str:
    return f"y{MODEL_CODES[model]:012d}.cfg"


common_cfg_name = SharedValues(64, _work_out_common_cfg_name).one


def mac_cfg_name(mac: str) -> str:
    return bare_mac(mac) + ".cfg"


def default_firmware(model: str) -> str:
    return f"{MODEL_CODES[model]}.85.0.5"


def _work_out_firmware_generation(firmware: str) -> int:
    parts = firmware.split(".")
    return int(parts[1]) if len(parts) > 1 and is_number(parts[1]) else 0


firmware_generation = SharedValues(256, _work_out_firmware_generation).one  # asked every pass; a fleet runs a few firmware versions


def user_agent(phone, behaviour: YealinkBehaviour = DEFAULT_BEHAVIOUR) -> str:
    if behaviour.user_agent_style == "old":
        return f"yealink SIP-{phone.model} {phone.flash.firmware} {phone.mac}"
    if behaviour.user_agent_style == "mac_without_colons":
        return f"Yealink SIP-{phone.model} {phone.flash.firmware} {bare_mac(phone.mac)}"
    return f"Yealink SIP-{phone.model} {phone.flash.firmware} {phone.mac}"


# Yealink's administrator guide: "the interval (in seconds) at which the phone retries to
# resolve a domain name when the DNS server does not respond" (default 3) and "the retry
# times when the DNS server does not respond" (default 2); both take effect at a reboot
# (static.network.*, REBOOT_KEY_PREFIXES).
DNS_QUERY_TIMEOUT_KEY = "static.network.dns.query_timeout"
DNS_RETRY_TIMES_KEY = "static.network.dns.retry_times"
DNS_QUERY_TIMEOUT_S = 3
DNS_RETRY_TIMES = 2


def dns_client(phone, behaviour: YealinkBehaviour = DEFAULT_BEHAVIOUR) -> PhoneDns:
    """The phone's DNS client as it boots: a query, then ``retry_times`` more, each after
    ``query_timeout`` seconds without an answer (by default three queries, 9 s). A
    timeout of 0, or a value that is no number, keeps the default (what the phone does
    with 0 is not documented). The guide: "Support for negative caching of DNS queries as
    described in RFC 2308 is also provided": a negative answer that carries the zone's
    SOA is kept as long as the SOA says."""
    settings = phone.flash.settings
    timeout_s = parse_int(settings.get(DNS_QUERY_TIMEOUT_KEY), DNS_QUERY_TIMEOUT_S) or DNS_QUERY_TIMEOUT_S
    retries = parse_int(settings.get(DNS_RETRY_TIMES_KEY), DNS_RETRY_TIMES)
    return PhoneDns(timeout_s=float(timeout_s), tries=1 + retries, negative_caching=True)


def dhcp_identity(phone, behaviour: YealinkBehaviour = DEFAULT_BEHAVIOUR) -> DhcpIdentity:
    vendor_class = phone.flash.settings.get(OPTION60_KEY) or DEFAULT_VENDOR_CLASS
    return DhcpIdentity(
        vendor_class=vendor_class.encode(),
        parameter_request_list=PARAMETER_REQUEST_LIST,
        hostname=f"SIP-{phone.model}".encode(),
    )


def needs_reboot(key: str) -> bool:
    return key in REBOOT_KEYS or key.startswith(REBOOT_KEY_PREFIXES)


def check_sync_action(phone, reboot_requested: bool, behaviour: YealinkBehaviour = DEFAULT_BEHAVIOUR) -> str:
    """What a SIP NOTIFY ``Event: check-sync`` does, by ``sip.notify_reboot_enable``:
    0 re-provision (reboot only with ``;reboot=true``), 1 always reboot, 2 ignore."""
    mode = phone.flash.settings.get(NOTIFY_REBOOT_KEY, "0")
    if mode == "2":
        return "ignore"
    if mode == "1" or reboot_requested:
        return "reboot"
    return "resync"


# --- finding the provisioning server ---------------------------------------------------


def find_server(phone, pnp_url: str | None = None) -> tuple[str, str] | None:
    """(server value, where it came from), in Yealink's order of sources."""
    if pnp_url:
        return pnp_url, "PnP"
    options = phone.lease.options if phone.lease else {}
    settings = phone.flash.settings
    if settings.get(USER_OPTIONS_ENABLE_KEY, "1") != "0":
        for code in _user_option_codes(settings.get(USER_OPTIONS_KEY, "")):
            value = option_text(options.get(code))
            if value:
                return value, f"DHCP option {code}"
    value = option_text(options.get(66))
    if value:
        return value, "DHCP option 66"
    value = _option_43_url(options.get(43))
    if value:
        return value, "DHCP option 43"
    if settings.get(SERVER_URL_KEY):
        return settings[SERVER_URL_KEY], "flash"
    return None


def _user_option_codes(text: str) -> list[int]:
    codes = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if is_number(part) and 128 <= int(part) <= 254:
            codes.append(int(part))
    return codes


def _option_43_url(payload: bytes | None) -> str:
    """Option 43's layout for Yealink is undocumented: accept a plain URL, or sub-option
    TLVs one of which carries a URL *(unverified)*."""
    if not payload:
        return ""
    plain = option_text(payload)
    if plain.isprintable() and ("://" in plain or "." in plain):
        return plain
    try:
        for _code, value in dhcp.decode_tlvs(payload):
            text = option_text(value)
            if "://" in text:
                return text
    except ValueError:
        pass
    return ""


def substitute(value: str, phone) -> str:
    """``$PN`` is the model name and ``$MAC`` the MAC, in URLs and include lines."""
    return (value.replace("$PN", phone.model).replace("$MAC", bare_mac(phone.mac))
            .replace("$mac", bare_mac(phone.mac)))


# --- the provisioning procedure --------------------------------------------------------


_STAGE_OF_ROLE = {"common": "common_cfg", "mac": "mac_cfg"}  # a file's stage name; others "cfg"


@dataclass
class _File:
    name: str  # as remembered in flash
    url: str
    role: str  # "common", "mac", "local" (which AES key applies)
    body: bytes | None = None


def provision(phone, behaviour: YealinkBehaviour = DEFAULT_BEHAVIOUR):
    settings = phone.flash.settings
    if phone.trigger == "power_on" and settings.get(POWER_ON_KEY, "1") == "0":
        return ProvisioningOutcome("unchanged", reason="power-on provisioning is off",
                                   next_check_s=next_check_s(phone, behaviour))
    pnp_url = None
    if settings.get(PNP_ENABLE_KEY, "1") != "0":
        if phone.trigger == "power_on":
            pnp_url = yield PnpQuery("Yealink", phone.model, phone.flash.firmware, behaviour.pnp_wait_s)
        else:
            pnp_url = phone.pnp_url  # PnP is asked at boot only
    found = find_server(phone, pnp_url)
    if found is None:
        return ProvisioningOutcome(
            "failed", reason="no provisioning server: no PnP answer, custom option, option 66, option 43 or URL in flash"
        )
    value, source = found
    try:
        server = parse_server(substitute(value, phone))
    except BadProvisioningUrl as exc:
        return ProvisioningOutcome("failed", reason=f"{source}: {exc}")
    phone.server_from(server, source)
    phone.flash.provisioning_url = phone.server_source[0]  # str(server), as server_from made it
    credentials = _credentials(server, settings)
    attempts, retry_delay = _retry_settings(settings, behaviour)

    files, overwrite = yield from _boot_file_plan(phone, server, credentials, behaviour)
    if files is None:
        common, own = common_cfg_name(phone.model), mac_cfg_name(phone.mac)
        files = [_File(common, server.file_url(common), "common"), _File(own, server.file_url(own), "mac")]
    if settings.get(PROTECT_KEY) == "1":
        name = f"{bare_mac(phone.mac)}-local.cfg"
        files.append(_File(name, server.file_url(name), "local"))

    for file in files:
        stage = _STAGE_OF_ROLE.get(file.role, "cfg")
        # <mac>-local.cfg exists only once a phone has uploaded its own changes.
        file.body = yield from download(phone, file.url, file.name, credentials, stage, attempts, retry_delay,
                                        optional=file.role == "local")
    downloaded = [file for file in files if file.body is not None]
    if not downloaded:
        return ProvisioningOutcome("failed", reason="no configuration file could be downloaded",
                                   next_check_s=next_check_s(phone, behaviour))

    # Change detection compares what was downloaded, before any decryption.
    # Interned: the common file's name and MD5 are the same in every phone's flash.
    md5s = {sys.intern(file.name): sys.intern(md5_hex(file.body)) for file in downloaded}
    if all(phone.flash.file_md5.get(file.name) == md5s.get(file.name) for file in files):
        return ProvisioningOutcome("unchanged", reason="MD5 of every file matches flash: nothing applied",
                                   next_check_s=next_check_s(phone, behaviour))

    merged: dict[str, str] = {}
    for file in files:  # later files override earlier ones
        if file.body is None:
            continue
        plain = yield from _plaintext(phone, server, file, credentials)
        if plain is None:
            md5s.pop(file.name, None)
            continue
        try:
            merged.update(yealink_cfg.parse(plain, require_header=behaviour.require_version_header))
        except yealink_cfg.NotAYealinkConfig as exc:
            phone.note(f"rejected {file.name}: {exc}")
            md5s.pop(file.name, None)
    changed = _apply(phone, merged, md5s, overwrite=overwrite)
    for key in changed:
        meant = _static_name(key)
        if meant is not None and key in merged:
            phone.note(f"{key} is no setting of this phone, which reads {meant}: no effect")

    yield from _resources(phone, server, credentials, changed)
    if any(key.startswith(_CLOCK_KEYS) for key in changed):
        phone.note(summer_time.describe(phone.flash.settings, phone.flash.kept_files.get(summer_time.AUTO_DST_FILE),
                                        _dhcp_offset_s(phone)))
    flashed = yield from _firmware(phone, server, credentials, behaviour)

    reboot_keys = [key for key in changed if needs_reboot(key)]
    if flashed:
        reboot_for = f"firmware {phone.flash.firmware}"
    elif changed and (reboot_keys or behaviour.reboot_on_any_change):
        reboot_for = reboot_keys[0] if reboot_keys else "a file changed (old-firmware rule)"
    else:
        reboot_for = None
    outcome = pass_outcome(changed, noun="setting", reboot_for=reboot_for, next_check_s=next_check_s(phone, behaviour))
    outcome.result = "applied"  # a file changed (its MD5), even when no setting did
    return outcome


def _credentials(server: ServerUrl, settings: dict) -> Credentials | None:
    user = settings.get(SERVER_USER_KEY)
    return url_credentials(server, Credentials(user, settings.get(SERVER_PASSWORD_KEY, "")) if user else None)


def _retry_settings(settings: dict, behaviour: YealinkBehaviour) -> tuple[int, float]:
    attempts = parse_int(settings.get(ATTEMPTS_KEY), behaviour.attempts_per_file)
    delay = parse_int(settings.get(RETRY_DELAY_KEY), None)
    return max(1, attempts), float(delay) if delay is not None else behaviour.retry_delay_s


# --- boot files (firmware 81 and later) ---------------------------------------------------


def _boot_file_plan(phone, server: ServerUrl, credentials, behaviour: YealinkBehaviour):
    """(the files a boot file lists, its overwrite_mode), or (None, False) when there is
    no boot file or the firmware is too old to look for one."""
    if firmware_generation(phone.flash.firmware) < BOOT_FILES_SINCE_FIRMWARE:
        return None, False
    for name in (f"{bare_mac(phone.mac)}.boot", COMMON_BOOT_FILE):
        body = yield from download(phone, server.file_url(name), name, credentials, "boot_file",
                                   behaviour.boot_file_attempts, behaviour.retry_delay_s, optional=True)
        if body is None:
            continue
        try:
            includes, overwrite = parse_boot_file(body, phone.model)
        except yealink_cfg.NotAYealinkConfig as exc:
            phone.note(f"rejected {name}: {exc}")
            continue
        files = []
        for include in includes:
            target = substitute(include, phone)
            if "://" in target:
                url = target
                file_name = posixpath.basename(target.split("?", 1)[0])
            else:
                url = server.file_url(target)
                file_name = target
            role = "common" if posixpath.basename(file_name).startswith("y0000") else "mac"
            files.append(_File(file_name, url, role))
        phone.note(f"{name} lists {len(files)} file(s)")
        return files, overwrite
    return None, False


def parse_boot_file(body: bytes, model: str) -> tuple[list[str], bool]:
    """(``include:config`` targets for this model in order, overwrite_mode)."""
    text = body.decode("utf-8", errors="replace").lstrip("\ufeff")
    lines = text.splitlines()
    if not lines or lines[0].strip() != yealink_cfg.VERSION_HEADER:
        raise yealink_cfg.NotAYealinkConfig(f"boot file does not start with {yealink_cfg.VERSION_HEADER!r}")
    includes: list[str] = []
    overwrite = False
    applies = True  # outside any [model, ...] section a line is for every model
    for line in lines[1:]:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            models = {part.strip().upper() for part in line[1:-1].split(",")}
            applies = "*" in models or "ALL" in models or model.upper() in models
            continue
        if not applies:
            continue
        match = _INCLUDE.match(line)
        if match:
            includes.append(match.group(1).strip())
            continue
        key, sep, value = line.partition("=")
        if sep and key.strip() == "overwrite_mode":
            overwrite = value.strip() == "1"
    return includes, overwrite


# --- decryption ---------------------------------------------------------------------------


def _plaintext(phone, server: ServerUrl, file: _File, credentials):
    """The file's plain text, or None when it cannot or may not be used."""
    settings = phone.flash.settings
    body = file.body
    if not yealink_aes.looks_encrypted(body):
        if settings.get(ENCRYPTED_ONLY_KEY) == "1":
            phone.note(f"rejected {file.name}: update_file_mode = 1 accepts only encrypted files")
            return None
        return body
    key = None
    if settings.get(AES_IN_FILE_KEY) == "1":
        stem = posixpath.splitext(posixpath.basename(file.name))[0]
        key_name = f"{stem}_Security.enc"
        key_url = file.url[: -len(posixpath.basename(file.name))] + key_name if file.url.endswith(
            posixpath.basename(file.name)) else server.file_url(key_name)
        key_file = yield from download(phone, key_url, key_name, credentials, "key", 1, 0)
        if key_file is not None:
            try:
                key = yealink_aes.decrypt_key(key_file)
            except ValueError as exc:
                phone.note(f"{key_name}: {exc}")
    else:
        key = settings.get(AES_COMMON_KEY if file.role == "common" else AES_MAC_KEY) or None
    if key is None:
        phone.note(f"rejected {file.name}: encrypted, and no AES key for it")
        return None
    try:
        return yealink_aes.decrypt_file(body, key)
    except ValueError as exc:
        phone.note(f"rejected {file.name}: cannot decrypt: {exc}")
        return None


# --- apply, resources, firmware ------------------------------------------------------------


def _apply(phone, merged: dict[str, str], md5s: dict[str, str], *, overwrite: bool) -> list[str]:
    flash = phone.flash
    changed = [key for key, value in merged.items() if flash.settings.get(key) != value]
    if overwrite:
        # overwrite_mode = 1: what the files no longer set goes back to its default.
        changed += [key for key in flash.settings if key not in merged]
        flash.settings = dict(merged)
    else:
        flash.settings.update(merged)
    flash.file_md5 = dict(md5s)
    return changed


def _resources(phone, server: ServerUrl, credentials, changed: list[str]):
    for key in RESOURCE_KEYS:
        value = phone.flash.settings.get(key)
        if not value or key not in changed:
            continue
        url = _absolute(substitute(value, phone), server)
        name = posixpath.basename(url.split("?", 1)[0]) or key
        body = yield from download(phone, url, name, credentials, "resource", 1, 0)
        if body is not None and key in KEPT_RESOURCES:
            _keep(phone, KEPT_RESOURCES[key], name, body)


def _keep(phone, kept_as: str, name: str, body: bytes) -> None:
    # Interned: a fleet given the same file keeps one copy of it in memory.
    text = sys.intern(body.decode("utf-8", "replace"))
    phone.flash.kept_files[kept_as] = text
    if kept_as == summer_time.AUTO_DST_FILE:
        try:
            summer_time.read_template(text)
        except summer_time.TemplateError as exc:
            phone.note(f"{name} is no AutoDST template ({exc}): the factory one applies")


def _firmware(phone, server: ServerUrl, credentials, behaviour: YealinkBehaviour):
    """Download and flash ``static.firmware.url`` when its version differs; True if flashed."""
    url = phone.flash.settings.get(FIRMWARE_URL_KEY, "")
    if not url:
        return False
    url = _absolute(substitute(url, phone), server)
    match = _FIRMWARE_VERSION.search(url.split("?", 1)[0])
    version = match.group(1) if match else ""
    if behaviour.skip_same_firmware and version and version == phone.flash.firmware:
        return False
    name = posixpath.basename(url)
    image = yield from download(phone, url, name, credentials, "firmware", 1, 0)
    if image is None:
        return False
    old, phone.flash.firmware = phone.flash.firmware, version or phone.flash.firmware
    phone.note(f"flashed firmware {phone.flash.firmware} (was {old})")
    return True


def _absolute(value: str, server: ServerUrl) -> str:
    return value if "://" in value else server.file_url(value)


# --- when to provision again ---------------------------------------------------------------


def next_check_s(phone, behaviour: YealinkBehaviour = DEFAULT_BEHAVIOUR) -> float | None:
    """Seconds until the phone's own timers say provision again, or None."""
    settings = phone.flash.settings
    candidates = []
    if settings.get(REPEAT_ENABLE_KEY) == "1":
        minutes = parse_int(settings.get(REPEAT_MINUTES_KEY), 1440)
        candidates.append(max(1, minutes) * 60.0)
    if settings.get(WEEKLY_ENABLE_KEY) == "1":
        weekly = _next_weekly_window(phone, settings, behaviour)
        if weekly is not None:
            candidates.append(weekly)
    if settings.get(FLEXIBLE_ENABLE_KEY) == "1":
        flexible = _next_flexible_moment(phone, settings, behaviour)
        if flexible is not None:
            candidates.append(flexible)
    return min(candidates) if candidates else None


FLEXIBLE_OFFSET = "flexible_offset_s"  # in Phone.vendor_ram: the boot's moment in the window


def _next_flexible_moment(phone, settings: dict, behaviour: YealinkBehaviour) -> float | None:
    """Flexible auto provisioning (the administrator's guide): once every ``flexible.interval``
    days (1-1000, factory 30), on "a random day within the period ... based on the phone's
    MAC address", which "does not change with a reboot", at a random time between
    ``flexible.begin_time`` (factory 02:00) and ``flexible.end_time``, "calculated again
    with every reboot" (kit.next_mac_day_moment_s); an end left blank or equal to the begin
    is the begin itself, one before it the next day's. On the phone's clock, as the weekly
    window."""
    interval = parse_int(settings.get(FLEXIBLE_INTERVAL_KEY), 30)
    begin = clock_s(settings.get(FLEXIBLE_BEGIN_KEY, "02:00"))
    end = clock_s(settings.get(FLEXIBLE_END_KEY) or settings.get(FLEXIBLE_BEGIN_KEY, "02:00"))
    if not 1 <= interval <= 1000 or begin is None or end is None:
        return None
    lab_now = behaviour.week_starts_s + phone.now
    zone = phone_zone(phone)
    wait = next_mac_day_moment_s(phone, zone.local_s(lab_now), begin, (end - begin) % 86400, interval,
                                 FLEXIBLE_OFFSET)
    return zone.wait_s(lab_now, wait)


def _next_weekly_window(phone, settings: dict, behaviour: YealinkBehaviour) -> float | None:
    days = {int(ch) for ch in settings.get(WEEKLY_DAYS_KEY, "0123456") if is_number(ch) and int(ch) < 7}
    begin = clock_s(settings.get(WEEKLY_BEGIN_KEY, "00:00"))
    end = clock_s(settings.get(WEEKLY_END_KEY, "00:00"))
    if not days or begin is None or end is None:
        return None
    span = (end - begin) % 86400 or 86400
    # Each phone provisions at its own moment in the window, once per window.
    lab_now = behaviour.week_starts_s + phone.now
    zone = phone_zone(phone)
    weeks = parse_int(settings.get(WEEKLY_INTERVAL_KEY), 0)
    if 1 <= weeks <= 12:
        wait = next_window_moment_s(phone, zone.local_s(lab_now), begin, span, days, horizon_days=7 * weeks + 8,
                                    on_day=partial(_cycles_day, phone, weeks, sorted(days)))
    else:
        wait = next_window_moment_s(phone, zone.local_s(lab_now), begin, span, days)
    return None if wait is None else zone.wait_s(lab_now, wait)


WEEKLY_CYCLE_DAYS = "weekly_cycle_days"  # in Phone.vendor_ram: cycle -> the weekday drawn for it


def _cycles_day(phone, weeks: int, days: list[int], day: int) -> bool:
    """``weekly_upgrade_interval`` N (1-12, the administrator's guide): "at a random day
    between the specific day(s) ... every N weeks". Whether ``day`` (counted from the
    calendar's Sunday) is it: (unverified) the first week of every N, counted from the
    calendar's origin, on one of ``days`` drawn for that cycle (in RAM: a boot draws again)."""
    week = day // 7
    if week % weeks:
        return False
    drawn = phone.ram().setdefault(WEEKLY_CYCLE_DAYS, {})
    cycle = week // weeks
    if cycle not in drawn:
        for old in [key for key in drawn if key < cycle - 1]:
            del drawn[old]  # keep the cycle before (a window may reach past midnight), not the years before
        drawn[cycle] = phone.rng.choice(days)
    return day % 7 == drawn[cycle]


def phone_zone(phone) -> Zone:
    """The time zone the phone keeps its weekly window in (``yealink_summer_time``)."""
    return summer_time.phone_zone(phone.flash.settings, phone.flash.kept_files.get(summer_time.AUTO_DST_FILE),
                                  _dhcp_offset_s(phone))


def _dhcp_offset_s(phone) -> int | None:
    return dhcp_time_offset_s(phone.lease.options) if phone.lease is not None else None

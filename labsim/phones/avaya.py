"""Avaya 1200 series SIP phones (1210, 1220, 1230; the 1100 series 1120E, 1140E and
1165E provision alike), as the Avaya SIP administration guides describe them.

The provisioning server comes from DHCP option 66: an IP address or host name means
TFTP, or a full URL; credentials may be written ``user:pass@`` or ``user;pass@``.

From that server the phone fetches its **model provisioning file** (``1220SIP.cfg``,
``1140eSIP.cfg`` ...) and works through its sections in file order:

* every section has a ``VERSION``. In ``DOWNLOAD_MODE AUTO`` (the default) the section's
  file is downloaded only if that VERSION is higher than the one flash remembers; in
  ``FORCED`` always, which also allows a downgrade. Either way flash then remembers it.
* ``FILENAME``, ``PROTOCOL`` (TFTP by default), ``SERVER_IP`` (default: the server the
  model file came from), ``SRV_USER_NAME`` / ``SRV_USER_PASS`` say where the file is.
* ``[DEVICE_CONFIG]`` names the system (device) configuration file; its ``KEY VALUE``
  settings go to flash and stay there until overwritten or a factory reset. It may name
  a primary and a secondary **server profile**, downloaded right after it.
* ``[USER_CONFIG]`` fetches the phone's own ``SIP<MAC>.cfg``.
* ``[FW]`` names a firmware load; a new one is downloaded, authenticated, installed, and
  the phone reboots. An image that fails authentication is not installed.
* Any other section (``[DIALING_PLAN]``, ``[LANGUAGE]``, ``[TONES]``, ``[IMAGES]`` ...)
  downloads its files into flash.

A later section wins over an earlier one. With ``AUTO_UPDATE YES`` the phone checks
again every day at ``AUTO_UPDATE_TIME`` plus a random offset within
``AUTO_UPDATE_TIME_RANGE`` hours.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from dataclasses import dataclass, field

from labsim.phones.dhcp_client import DhcpIdentity
from labsim.phones.events import ProvisioningOutcome
from labsim.phones.flash import Flash, changed_keys
from labsim.phones.kit import download, url_credentials
from labsim.phones.local_time import NORTH_AMERICAN_RULE, Zone, seconds_offset_s, summer_words, zone_from
from labsim.wire import avaya_cfg
from labsim.wire.numbers import is_number
from labsim.wire.provisioning_url import DEFAULT_PORTS, BadProvisioningUrl, ServerUrl, parse_server

VENDOR = "avaya"

# Model -> the name of its model provisioning file.
MODEL_FILES = {
    "1210": "1210SIP.cfg",
    "1220": "1220SIP.cfg",
    "1230": "1230SIP.cfg",
    "1120E": "1120eSIP.cfg",
    "1140E": "1140eSIP.cfg",
    "1165E": "1165eSIP.cfg",
}
MODELS = tuple(MODEL_FILES)
# Model -> the prefix of its firmware load names (SIP12x004.01.13.00: one load for all 12x0).
FIRMWARE_PREFIXES = {
    "1210": "SIP12x0", "1220": "SIP12x0", "1230": "SIP12x0",
    "1120E": "SIP1120e", "1140E": "SIP1140e", "1165E": "SIP1165e",
}
DEFAULT_FIRMWARE_VERSION = "04.00.04.00"  # the User-Agent example's version; (unverified) for the 1100 series
MAC_PREFIXES = ("00:17:65",)  # Nortel's, as in the host name example T001765FDBF1D

VENDOR_CLASS = b"Nortel-SIP-Phone-A\x00"  # NUL-terminated, as the phone sends it
SITE_SPECIFIC_OPTIONS = (128, 131, 144, 157, 188, 191, 205, 219, 223, 224, 227, 230, 232, 235,
                         238, 241, 244, 247, 249, 251, 254)
PARAMETER_REQUEST_LIST = bytes((1, 3, 6, 15, 28, 43, 58, 59, 66) + SITE_SPECIFIC_OPTIONS)
OFFER_WINDOW_S = 1.0  # collect OFFERs for a second, take the longest lease (first on a tie)

DEVICE_CONFIG, USER_CONFIG, FIRMWARE = "DEVICE_CONFIG", "USER_CONFIG", avaya_cfg.FIRMWARE_SECTION

# Server profiles: the keyword in the system configuration file, per server ("role").
PROFILE_KEYWORDS = {"primary": "PRIMARY_SERVER_PROFILE", "secondary": "SECONDARY_SERVER_PROFILE"}
# labsim's phones always use their primary server (no failover), so its profile is the
# one active profile; the secondary's is kept for that server.
ACTIVE_PROFILE_ROLE = "primary"
# kit.VendorProfile.STAGES: the model file, the files its sections name (the device
# configuration, its server profiles, SIP<MAC>.cfg, firmware), and the resource sections the
# guide names; any other [SECTION] of the model file is timed as its name in lower case.
RESOURCE_SECTIONS = ("DIALING_PLAN", "LANGUAGE", "TONES", "IMAGES")
STAGES = ("model_cfg", "device_cfg", *(f"{role}_profile" for role in PROFILE_KEYWORDS), "user_cfg", "firmware",
          *(section.lower() for section in RESOURCE_SECTIONS))
# A newly applied profile that changes one of these makes the phone soft-reboot.
SOFT_REBOOT_KEYS = frozenset({
    "FIPS_MODE", "ENABLE_UPDATE", "ENABLE_USB_PORT", "SFTP_WRITE_PATTERNS",
    "SESSION_TIMER_ENABLE", "USB_HEADSET",
})
# Flash has no field for a profile's contents: they are kept in flash.settings under
# this prefix (Avaya keys never contain "/"), so they survive reboots and factory
# reset clears them with everything else.
PROFILE_KEY_PREFIX = "profile/"

AUTO_UPDATE, AUTO_UPDATE_TIME, AUTO_UPDATE_TIME_RANGE = "AUTO_UPDATE", "AUTO_UPDATE_TIME", "AUTO_UPDATE_TIME_RANGE"
TIMEZONE_OFFSET, FORCE_TIME_ZONE, DST_ENABLED = "TIMEZONE_OFFSET", "FORCE_TIME_ZONE", "DST_ENABLED"
# A pass that changes one of these notes what the phone's clock keeps.
CLOCK_KEYS = frozenset({TIMEZONE_OFFSET, FORCE_TIME_ZONE, DST_ENABLED, AUTO_UPDATE, AUTO_UPDATE_TIME})
AUTO_UPDATE_RANGE_HOURS = (1, 6)
DAY_S = 86_400


@dataclass(frozen=True)
class AvayaBehaviour:
    """Behaviour the seed does not document: settings, defaults *(unverified)*."""

    attempts_per_file: int = 1  # (unverified) how often a missing file is asked for
    retry_delay_s: float = 1.0  # (unverified) between those attempts
    use_stored_server: bool = True  # (unverified) without option 66, use the server kept in flash
    # (unverified) with no SRV_USER_NAME, a file on the model file's own server and
    # protocol is fetched with the model file's credentials (from option 66).
    reuse_model_file_credentials: bool = True
    # (unverified) the 80-character rule is documented for the model file only.
    line_limit_in_settings_files: bool = False
    user_config_optional: bool = True  # (unverified) a missing SIP<MAC>.cfg is not a failure
    # (unverified) FORCED with the load already running: downloaded, not flashed again
    # (flashing it again would reboot the phone on every check, forever).
    reinstall_running_firmware: bool = False
    auto_update_range_default_h: int = 1  # (unverified) AUTO_UPDATE_TIME_RANGE when absent
    # Where the lab's clock starts: seconds after Sunday 2026-01-04 00:00 UTC when the run
    # begins (a scenario's clock_starts sets it); the phone's TIMEZONE_OFFSET is added.
    clock_start_s: float = 0.0
    retry_after_failure_s: float | None = None  # (unverified) no retry timer is documented
    # (unverified) the seed lists no remote trigger (SIP NOTIFY check-sync): ignored.
    # "resync" makes it stand in for the user's "check for updates".
    check_sync: str = "ignore"


DEFAULT_BEHAVIOUR = AvayaBehaviour()


def model_file_name(model: str) -> str:
    return MODEL_FILES[model]


def user_config_name(mac: str) -> str:
    """``SIP<MAC upper>.cfg``, the phone's own file named by [USER_CONFIG]."""
    return "SIP" + mac.replace(":", "").upper() + ".cfg"


def default_firmware(model: str) -> str:
    return FIRMWARE_PREFIXES[model] + DEFAULT_FIRMWARE_VERSION


def user_agent(phone, behaviour: AvayaBehaviour = DEFAULT_BEHAVIOUR) -> str:
    """``AVAYA/SIP12x0/04.00.04.00``: the load's prefix and version, from flash."""
    parts = avaya_cfg.firmware_parts(phone.flash.firmware)
    prefix, version = parts if parts else (FIRMWARE_PREFIXES.get(phone.model, "SIP12x0"), phone.flash.firmware)
    return f"AVAYA/{prefix}/{version}"


def dhcp_identity(phone, behaviour: AvayaBehaviour = DEFAULT_BEHAVIOUR) -> DhcpIdentity:
    return DhcpIdentity(
        vendor_class=VENDOR_CLASS,
        parameter_request_list=PARAMETER_REQUEST_LIST,
        hostname=b"T" + phone.mac.replace(":", "").upper().encode(),
        send_client_id=True,
        offer_window_s=OFFER_WINDOW_S,
    )


def check_sync_action(phone, reboot_requested: bool, behaviour: AvayaBehaviour = DEFAULT_BEHAVIOUR) -> str:
    """What a SIP NOTIFY ``Event: check-sync`` does: "ignore", "resync" or "reboot"."""
    if behaviour.check_sync == "ignore":
        return "ignore"
    return "reboot" if reboot_requested else "resync"


# --- server profiles in flash --------------------------------------------------------------


def stored_profile(flash: Flash, role: str) -> dict[str, str]:
    prefix = f"{PROFILE_KEY_PREFIX}{role}/"
    return {key[len(prefix):]: value for key, value in flash.settings.items() if key.startswith(prefix)}


def store_profile(flash: Flash, role: str, filename: str, values: dict[str, str]) -> None:
    """Replace the server's profile: its file name (shown in flash.profiles) and values."""
    delete_profile(flash, role)
    flash.profiles[role] = filename
    for key, value in values.items():
        flash.settings[f"{PROFILE_KEY_PREFIX}{role}/{key}"] = value


def delete_profile(flash: Flash, role: str) -> None:
    prefix = f"{PROFILE_KEY_PREFIX}{role}/"
    for key in [key for key in flash.settings if key.startswith(prefix)]:
        del flash.settings[key]
    flash.profiles.pop(role, None)


def effective_settings(flash: Flash) -> dict[str, str]:
    """What the phone runs with: the configuration files' values, overlaid by the one
    active server profile."""
    settings = {key: value for key, value in flash.settings.items() if not key.startswith(PROFILE_KEY_PREFIX)}
    if ACTIVE_PROFILE_ROLE in flash.profiles:
        settings.update(stored_profile(flash, ACTIVE_PROFILE_ROLE))
    return settings


# --- the daily check --------------------------------------------------------------------------


def next_daily_check_s(settings: dict[str, str], now_s: float, rng, behaviour: AvayaBehaviour = DEFAULT_BEHAVIOUR):
    """Seconds from ``now_s`` to the next daily check, or None without ``AUTO_UPDATE YES``.

    The check is at ``AUTO_UPDATE_TIME`` (seconds after midnight, on the phone's own
    clock: :func:`phone_zone`) on the next day whose window has not begun yet, plus a
    random offset within ``AUTO_UPDATE_TIME_RANGE`` hours (1 to 6). A check made inside
    today's window therefore schedules tomorrow's, so the phone checks at most once a day.
    """
    if settings.get(AUTO_UPDATE, "").strip().upper() != "YES":
        return None
    start_text = settings.get(AUTO_UPDATE_TIME, "").strip()
    if not is_number(start_text) or int(start_text) >= DAY_S:
        return None
    start = int(start_text)
    range_text = settings.get(AUTO_UPDATE_TIME_RANGE, "").strip()
    hours = int(range_text) if is_number(range_text) else behaviour.auto_update_range_default_h
    low, high = AUTO_UPDATE_RANGE_HOURS
    hours = min(max(hours, low), high)  # (unverified) out-of-range values are clamped
    zone = phone_zone(settings)
    lab_now = behaviour.clock_start_s + now_s
    time_of_day = zone.local_s(lab_now) % DAY_S
    until_window = start - time_of_day if time_of_day < start else DAY_S - time_of_day + start
    return zone.wait_s(lab_now, until_window + rng.uniform(0.0, hours * 3600.0))


def phone_zone(settings: dict[str, str]) -> Zone:
    """The phone's clock: ``TIMEZONE_OFFSET`` seconds east of GMT (``-18000``), applied from
    the device settings only with ``FORCE_TIME_ZONE YES`` (NO keeps the user's own
    preference, not modelled: the lab's clock); ``DST_ENABLED YES`` (*unverified* default
    YES) adds North America's summer time, the one rule the 1100/1200 series know.
    From the SIP software's administration guides (the 1100 series' keywords; the 1200
    series' are taken to be the same, *inferred*)."""
    return _zone(settings.get(FORCE_TIME_ZONE, ""), settings.get(TIMEZONE_OFFSET), settings.get(DST_ENABLED, "YES"))


def describe_clock(settings: dict[str, str]) -> str:
    """What the phone's clock keeps, for its timeline: ``clock -18000: summer time +60 min``."""
    offset = (settings.get(TIMEZONE_OFFSET) or "").strip()
    if settings.get(FORCE_TIME_ZONE, "").strip().upper() != "YES":
        source = f"UTC, the lab's ({FORCE_TIME_ZONE} not YES: the user's own zone, not modelled)"
    elif seconds_offset_s(offset) is None:
        source = f"UTC, the lab's ({TIMEZONE_OFFSET} {f'{offset!r} is no zone' if offset else 'not set'})"
    else:
        source = offset
    return f"clock {source}: {summer_words(phone_zone(settings))}"


@functools.lru_cache(maxsize=256)
def _zone(force: str, offset: str | None, summer: str) -> Zone:
    if force.strip().upper() != "YES":
        return Zone()
    if summer.strip().upper() != "YES":
        return zone_from(seconds_offset_s(offset))
    return zone_from(seconds_offset_s(offset), *NORTH_AMERICAN_RULE, 3600)


# --- finding the provisioning server ----------------------------------------------------------


def find_server(phone, behaviour: AvayaBehaviour = DEFAULT_BEHAVIOUR) -> tuple[str, str] | None:
    options = phone.lease.options if phone.lease else {}
    value = (options.get(66) or b"").decode("latin-1").strip("\x00 \t\r\n")
    if value:
        return value, "DHCP option 66"
    if behaviour.use_stored_server and phone.flash.provisioning_url:
        return phone.flash.provisioning_url, "flash"
    return None


def section_server(section: avaya_cfg.Section, model_server: ServerUrl, behaviour: AvayaBehaviour) -> ServerUrl:
    """Where a section's files are: PROTOCOL (TFTP by default) on SERVER_IP, or on the
    host the model file came from (its folder; its port when the protocol is the same).
    Raises BadProvisioningUrl for an unknown PROTOCOL or an unreadable SERVER_IP."""
    if section.protocol not in avaya_cfg.PROTOCOLS:
        raise BadProvisioningUrl(f"PROTOCOL {section.protocol!r}; the phone knows {', '.join(avaya_cfg.PROTOCOLS)}")
    scheme = section.protocol.lower()
    if section.server_ip:
        server = parse_server(f"{scheme}://{section.server_ip}/")
    elif scheme == model_server.scheme:
        server = dataclasses.replace(model_server, user=None, password=None)
    else:
        server = dataclasses.replace(model_server, scheme=scheme, port=DEFAULT_PORTS[scheme], user=None, password=None)
    if section.user is not None:
        return dataclasses.replace(server, user=section.user, password=section.password or "")
    same_server = (server.scheme, server.host, server.port) == (model_server.scheme, model_server.host, model_server.port)
    if behaviour.reuse_model_file_credentials and same_server:
        return dataclasses.replace(server, user=model_server.user, password=model_server.password)
    return server


# --- the provisioning procedure -------------------------------------------------------------


@dataclass
class _Pass:
    """What one provisioning pass did, for its outcome."""

    running: dict[str, str]  # the settings the phone ran with when the pass began
    applied: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    new_profiles: dict[str, dict[str, str]] = field(default_factory=dict)  # role -> values
    firmware_installed: str | None = None


def provision(phone, behaviour: AvayaBehaviour = DEFAULT_BEHAVIOUR):
    flash = phone.flash
    found = find_server(phone, behaviour)
    if found is None:
        return _finish(phone, "failed", "no provisioning server: no option 66 and none in flash", behaviour)
    value, source = found
    try:
        server = parse_server(value, credential_separators=":;")
    except BadProvisioningUrl as exc:
        return _finish(phone, "failed", f"{source}: {exc}", behaviour)
    phone.server_from(server, source)
    flash.provisioning_url = str(server)  # credentials stay out of flash's summary, as Yealink's do

    name = model_file_name(phone.model)
    body = yield from _download(phone, server, name, "model_cfg", behaviour)
    if body is None:
        return _finish(phone, "failed", f"model provisioning file {name} could not be downloaded", behaviour)
    model_file = avaya_cfg.parse_provisioning(body)
    if model_file.ignored_from_line is not None:
        phone.note(f"{name} line {model_file.ignored_from_line} is longer than "
                   f"{avaya_cfg.MAX_LINE_CHARS} characters: the rest of the file is ignored")
    for problem in model_file.problems:
        phone.note(f"{name}: {problem}")

    this_pass = _Pass(running=effective_settings(flash))
    for section in model_file.sections:  # in file order: a later section wins
        yield from _section(phone, section, server, this_pass, behaviour)
    return _outcome(phone, this_pass, behaviour)


def _section(phone, section: avaya_cfg.Section, model_server: ServerUrl, this_pass: _Pass, behaviour):
    flash = phone.flash
    label = f"[{section.name}]"
    problem = avaya_cfg.version_problem(section)
    if problem:
        phone.note(f"{label} skipped: {problem}")
        return
    # The firmware's version in flash is the load the phone runs.
    stored = flash.firmware if section.name == FIRMWARE else flash.versions.get(section.name)
    if section.download_mode == "AUTO" and not avaya_cfg.is_higher(section.version, stored):
        phone.note(f"{label} VERSION {section.version} is not higher than {stored} in flash: nothing to download")
        return
    try:
        server = section_server(section, model_server, behaviour)
    except BadProvisioningUrl as exc:
        phone.note(f"{label} skipped: {exc}")
        this_pass.failed.append(f"{label} {exc}")
        return
    if section.name == USER_CONFIG:
        names: tuple[str, ...] = (user_config_name(phone.mac),)
    else:
        names = section.filenames
    if not names:
        phone.note(f"{label} skipped: no FILENAME")
        return
    handler = _HANDLERS.get(section.name, _resource_files)
    done = yield from handler(phone, section, server, names, this_pass, behaviour)
    if done:
        flash.versions[section.name] = section.version


def _device_config(phone, section, server, names, this_pass: _Pass, behaviour):
    """The system configuration file(s): settings to flash, then the server profiles."""
    all_done = True
    for name in names:
        body = yield from _download(phone, server, name, "device_cfg", behaviour)
        if body is None:
            this_pass.failed.append(f"device configuration file {name} could not be downloaded")
            all_done = False
            continue
        values = _parse_settings(body, behaviour)
        directives = {keyword: values.pop(keyword) for keyword in PROFILE_KEYWORDS.values() if keyword in values}
        _store_settings(phone, name, body, values, this_pass)
        yield from _server_profiles(phone, directives, server, this_pass, behaviour)
    return all_done


def _server_profiles(phone, directives: dict[str, str], server: ServerUrl, this_pass: _Pass, behaviour):
    """The seed's rules, per server, after the system configuration file. (The profile
    files come from the system configuration file's server: (unverified).)"""
    flash = phone.flash
    for role, keyword in PROFILE_KEYWORDS.items():
        old = flash.profiles.get(role)
        if keyword not in directives:
            # Absent: the old profile if there is one, else the system configuration.
            phone.note(f"{keyword} absent: " + (f"keeping profile {old}" if old else "system configuration applies"))
            continue
        filename = directives[keyword].strip()
        if not filename:
            # Present but blank: the system configuration, and the old profile is deleted.
            if old:
                delete_profile(flash, role)
                this_pass.applied.append(f"deleted {role} profile {old}")
            phone.note(f"{keyword} blank: system configuration applies" + (f"; deleted profile {old}" if old else ""))
            continue
        body = yield from _download(phone, server, filename, f"{role}_profile", behaviour)
        if body is None:
            # Named but not downloadable: the old profile if any, else the system configuration.
            phone.note(f"{keyword} {filename} could not be downloaded: "
                       + (f"keeping profile {old}" if old else "system configuration applies"))
            this_pass.failed.append(f"server profile {filename} could not be downloaded")
            continue
        values = _parse_settings(body, behaviour)
        store_profile(flash, role, filename, values)
        flash.file_md5[filename] = hashlib.md5(body).hexdigest()
        this_pass.new_profiles[role] = values
        this_pass.applied.append(f"{role} profile {filename}")
        phone.note(f"{keyword} {filename} applied ({len(values)} values)")


def _user_config(phone, section, server, names, this_pass: _Pass, behaviour):
    name = names[0]
    body = yield from _download(phone, server, name, "user_cfg", behaviour, optional=behaviour.user_config_optional)
    if body is None:
        if not behaviour.user_config_optional:
            this_pass.failed.append(f"{name} could not be downloaded")
        return False
    _store_settings(phone, name, body, _parse_settings(body, behaviour), this_pass)
    return True


def _firmware(phone, section, server, names, this_pass: _Pass, behaviour):
    flash = phone.flash
    name, version = names[0], section.version
    image = yield from _download(phone, server, name, "firmware", behaviour)
    if image is None:
        this_pass.failed.append(f"firmware image {name} could not be downloaded")
        return False
    if not avaya_cfg.is_authentic_firmware(image):
        phone.note(f"firmware {name} failed authentication: not installed; {flash.firmware} stays")
        this_pass.failed.append(f"firmware {version} failed authentication: not installed")
        return False
    if version == flash.firmware and not behaviour.reinstall_running_firmware:
        phone.note(f"firmware {version} is already running: not flashed again")
        return True
    phone.note(f"firmware {flash.firmware} -> {version}")
    flash.firmware = version
    flash.file_md5[name] = hashlib.md5(image).hexdigest()
    this_pass.firmware_installed = version
    this_pass.applied.append(f"firmware {version}")
    return True


def section_stage(name: str) -> str:
    """The stage a resource section's downloads are timed as: its name in lower case, any
    run of other characters than letters, digits and _ as one _ (a metric's name is
    ``stage.<name>.<stat>``: ``[A.B]`` must not make a dot in it), and "section" for
    ``[]``."""
    return re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "section"


def stages_in_files(model: str, copies_of) -> tuple[str, ...] | None:
    """kit.VendorProfile: the stages a ``model`` phone times beyond STAGES, as the model
    file's sections name them in the copies the scenario holds (``copies_of(name)``: the
    texts it may serve under that name). None when it holds none: the file is on a server
    the scenario does not describe, and any section, so any stage, may be timed."""
    copies = copies_of(model_file_name(model))
    if not copies:
        return None
    sections = (section.name for text in copies for section in avaya_cfg.parse_provisioning(text).sections)
    return tuple(dict.fromkeys(section_stage(name) for name in sections if name not in _HANDLERS))


def _resource_files(phone, section, server, names, this_pass: _Pass, behaviour):
    """[DIALING_PLAN], [LANGUAGE], [TONES], [IMAGES] and the rest: files kept in flash."""
    all_done = True
    for name in names:
        body = yield from _download(phone, server, name, section_stage(section.name), behaviour)
        if body is None:
            this_pass.failed.append(f"[{section.name}] {name} could not be downloaded")
            all_done = False
            continue
        phone.flash.file_md5[name] = hashlib.md5(body).hexdigest()
        this_pass.applied.append(f"[{section.name}] {name}")
    return all_done


_HANDLERS = {
    DEVICE_CONFIG: _device_config,
    USER_CONFIG: _user_config,
    FIRMWARE: _firmware,
}


def _parse_settings(body: bytes, behaviour: AvayaBehaviour) -> dict[str, str]:
    limit = avaya_cfg.MAX_LINE_CHARS if behaviour.line_limit_in_settings_files else None
    return avaya_cfg.parse_settings(body, max_line_chars=limit)


def _store_settings(phone, name: str, body: bytes, values: dict[str, str], this_pass: _Pass) -> None:
    """Values are sticky: a key the file does not mention keeps its old value."""
    flash = phone.flash
    for key, value in values.items():
        if not key.startswith(PROFILE_KEY_PREFIX):
            flash.settings[key] = value
    flash.file_md5[name] = hashlib.md5(body).hexdigest()
    this_pass.applied.append(name)
    phone.note(f"applied {name} ({len(values)} values)")


def _download(phone, server: ServerUrl, name: str, stage: str, behaviour: AvayaBehaviour, optional: bool = False):
    credentials = None if server.scheme == "tftp" else url_credentials(server)  # TFTP has no login
    return (yield from download(phone, server.file_url(name), name, credentials, stage,
                                behaviour.attempts_per_file, behaviour.retry_delay_s, optional))


# --- the end of a pass -----------------------------------------------------------------------


def _outcome(phone, this_pass: _Pass, behaviour: AvayaBehaviour) -> ProvisioningOutcome:
    after = effective_settings(phone.flash)
    before = this_pass.running
    changed = changed_keys(before, after)
    if not CLOCK_KEYS.isdisjoint(changed):
        phone.note(describe_clock(after))
    reboot_reasons = []
    if this_pass.firmware_installed:
        reboot_reasons.append(f"firmware {this_pass.firmware_installed} installed: reboot")
    soft = _soft_reboot_keys(phone.flash, this_pass)
    if soft:
        profile = phone.flash.profiles.get(ACTIVE_PROFILE_ROLE)
        reboot_reasons.append(f"server profile {profile} changed {', '.join(soft)}: soft reboot")
    failures = f"; failed: {'; '.join(this_pass.failed)}" if this_pass.failed else ""
    if this_pass.applied:
        reason = f"applied {', '.join(this_pass.applied)}" + failures
        if reboot_reasons:
            reason += "; " + "; ".join(reboot_reasons)
        outcome = ProvisioningOutcome("applied", reboot=bool(reboot_reasons), reason=reason, changed_keys=changed)
    elif this_pass.failed:
        outcome = ProvisioningOutcome("failed", reason="; ".join(this_pass.failed), changed_keys=changed)
    else:
        outcome = ProvisioningOutcome(
            "unchanged", reason="no section's VERSION is higher than flash's (AUTO): nothing applied")
    if not outcome.reboot:
        outcome.next_check_s = _next_check(phone, outcome.result, behaviour)
    return outcome


def _soft_reboot_keys(flash: Flash, this_pass: _Pass) -> list[str]:
    """Soft-reboot keys a newly applied (active) profile changed from what was running."""
    values = this_pass.new_profiles.get(ACTIVE_PROFILE_ROLE)
    if values is None or ACTIVE_PROFILE_ROLE not in flash.profiles:
        return []
    return sorted(key for key in SOFT_REBOOT_KEYS if key in values and values[key] != this_pass.running.get(key))


def _finish(phone, result: str, reason: str, behaviour: AvayaBehaviour) -> ProvisioningOutcome:
    outcome = ProvisioningOutcome(result, reason=reason)
    outcome.next_check_s = _next_check(phone, result, behaviour)
    return outcome


def _next_check(phone, result: str, behaviour: AvayaBehaviour) -> float | None:
    daily = next_daily_check_s(effective_settings(phone.flash), phone.now, phone.rng, behaviour)
    retry = behaviour.retry_after_failure_s if result == "failed" else None
    candidates = [delay for delay in (daily, retry) if delay is not None]
    return min(candidates) if candidates else None

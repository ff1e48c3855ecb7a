"""Snom desk phones (D7xx, D3xx and the older 7xx), as Snom's provisioning wiki
describes them.

Where the settings come from (the **setting URL**), first found wins:

1. DHCP: option 43 carrying encapsulated sub-options 66 (server) and 67 (file) wins over
   plain options 66 and 67. 66 is a host (TFTP) or a URL, 67 a file name or path; the two
   are joined into the setting URL (``http://10.0.0.5/prov`` + ``snom.xml``).
2. SIP PnP, with ``pnp_config`` on (the default): a ``SUBSCRIBE Event: ua-profile`` to
   224.0.1.75; the NOTIFY's body is the URL. Asked at boot; later passes reuse the answer.
3. ``setting_server`` stored in flash (a settings file may set it).

Snom's redirection service (the vendor's cloud, asked by a factory-new phone) is never
contacted: labsim stays on loopback. A phone with none of the above fails the pass.

The URL may hold ``{mac}`` (the MAC without separators, upper case) and ``{model}``
(``snomD785``); a URL naming no file (``http://host/prov/``) means ``{model}.htm`` in that
folder. The file is either form of ``labsim.wire.snom_cfg``; its ``<setting-files>`` are
read next, in order (depth first, depth-limited); later files override earlier ones.
Each setting's ``perm`` (``R``/``RW``) is recorded in flash beside it as ``<name>#perm``.

Then firmware: ``firmware_status`` names a small file whose ``firmware`` setting is the
image URL (or a settings file sets ``firmware`` itself); an image whose version (from its
name, ``snomD785-10.1.54.13-SIP-r.bin``) is not the running one is downloaded and flashed,
and the phone reboots, as ``update_policy`` allows (``auto_update``; ``settings_only`` and
``never_update_firm`` never do).

After a failed pass the phone tries again after a random 3–6 s, doubling with each
further failure up to 3600 s. After a good one, every ``settings_refresh_timer`` seconds
(0, the default: never), and by the provisioning polling (``prov_polling_*``: every so
many seconds, daily at a time, or at random), whichever comes first. It reboots only when
firmware was flashed or a setting that needs a restart changed.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from labsim.phones.dhcp_client import DhcpIdentity
from labsim.phones.events import Credentials, Download, PnpQuery, ProvisioningOutcome
from labsim.phones.flash import changed_keys
from labsim.phones.kit import DAY_S, SERVED_S, clock_s, option_text, pass_outcome
from labsim.phones.local_time import Zone, hours_offset_s, hours_text, zone_from
from labsim.wire import dhcp, snom_cfg
from labsim.wire.numbers import is_number
from labsim.wire.provisioning_url import SCHEMES, split_userinfo, url_part

VENDOR = "snom"


@dataclass(frozen=True)
class Model:
    family: str  # "D7xx", "D3xx", "7xx"
    firmware: str  # the default running version


_D = "10.1.33.33"  # (unverified) a 10.1 release, as in the User-Agent Snom documents
_OLD = "8.9.3.80"  # (unverified) the last 8.9 release for the 7xx series

MODEL_INFO = {
    "D717": Model("D7xx", _D), "D735": Model("D7xx", _D), "D785": Model("D7xx", _D),
    "D315": Model("D3xx", _D), "D345": Model("D3xx", _D), "D385": Model("D3xx", _D),
    "710": Model("7xx", _OLD), "715": Model("7xx", _OLD), "760": Model("7xx", _OLD),
}
MODELS = tuple(MODEL_INFO)
MAC_PREFIXES = ("00:04:13",)
# kit.VendorProfile.STAGES: the setting URL's file ("settings"), a file it chains to with
# <setting-files> ("setting_file"), the firmware status file and its image.
STAGES = ("settings", "setting_file", "firmware_status", "firmware")

# (unverified) option 55: the standard set and the options the phone reads a server from.
PARAMETER_REQUEST_LIST = bytes([1, 3, 6, 12, 15, 28, 42, 43, 66, 67])

# The phone's own settings that steer provisioning (names as in Snom's wiki) and their
# factory values.
SETTING_SERVER_KEY = "setting_server"
PNP_KEY = "pnp_config"
REFRESH_KEY = "settings_refresh_timer"
FIRMWARE_STATUS_KEY = "firmware_status"
FIRMWARE_KEY = "firmware"
UPDATE_POLICY_KEY = "update_policy"
DEFAULTS = {PNP_KEY: "on", REFRESH_KEY: "0", UPDATE_POLICY_KEY: "auto_update"}
NO_FIRMWARE_POLICIES = ("settings_only", "never_update_firm")
PERM_SUFFIX = "#perm"  # flash key of a setting's permission; '#' is in no Snom setting name

# The documented back-off after a failed pass: random 3-6 s, doubling, at most 3600 s.
RETRY_FIRST_S = (3.0, 6.0)
RETRY_MAX_S = 3600.0


@dataclass(frozen=True)
class SnomBehaviour:
    """Behaviour the wiki leaves open: settings, defaults *(unverified)*."""

    mac_uppercase: bool = True  # {mac} as 000413ABCDEF (False: lower case)
    folder_file: str = "{model}.htm"  # the file asked for when the setting URL names a folder
    max_chain_depth: int = 4  # <setting-files> nesting below the first file
    chained_failure_fails: bool = False  # a missing chained file fails the pass (else: skipped)
    pnp_wait_s: float = 2.0  # how long the phone waits for the PnP NOTIFY
    # Settings whose change makes the phone restart: its network settings.
    reboot_settings: str = ("dhcp,ip_adr,netmask,gateway,dns_server1,dns_server2,dns_domain,"
                            "vlan_id,vlan_qos,vlan_pc_id,lldp_enable,http_port,https_port")
    ua_hardware: str = "1.1.4-IFX-05.01.12"  # the User-Agent's hardware/bootloader part
    # Where the lab's clock starts, seconds after Sunday 2026-01-04 00:00 UTC (the polling
    # times are read on it, moved by the phone's timezone); a scenario's clock_starts sets it.
    clock_start_s: float = 0.0


DEFAULT_BEHAVIOUR = SnomBehaviour()


def default_firmware(model: str) -> str:
    return MODEL_INFO[model].firmware


def model_name(model: str) -> str:
    """As the phone names itself: ``snomD785``, ``snom760``."""
    return "snom" + model


def setting(phone, name: str) -> str:
    """A setting as the phone runs with it: flash, else its factory value."""
    return phone.flash.settings.get(name, DEFAULTS.get(name, ""))


def is_on(value: str) -> bool:
    return value.strip().lower() in ("on", "true", "1", "yes")


def macros(phone, behaviour: SnomBehaviour = DEFAULT_BEHAVIOUR) -> dict[str, str]:
    bare = phone.mac.replace(":", "")
    return {"mac": bare.upper() if behaviour.mac_uppercase else bare.lower(), "model": model_name(phone.model)}


def user_agent(phone, behaviour: SnomBehaviour = DEFAULT_BEHAVIOUR) -> str:
    """``Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 1.1.4-IFX-05.01.12)``."""
    return f"Mozilla/4.0 (compatible; {model_name(phone.model)}-SIP {phone.flash.firmware} {behaviour.ua_hardware})"


def dhcp_identity(phone, behaviour: SnomBehaviour = DEFAULT_BEHAVIOUR) -> DhcpIdentity:
    return DhcpIdentity(vendor_class=model_name(phone.model).encode(),  # (unverified) option 60 "snomD785"
                        parameter_request_list=PARAMETER_REQUEST_LIST)


def check_sync_action(phone, reboot_requested: bool, behaviour: SnomBehaviour = DEFAULT_BEHAVIOUR) -> str:
    """SIP NOTIFY check-sync: re-read the settings; ``;reboot=true`` restarts (unverified)."""
    return "reboot" if reboot_requested else "resync"


# --- where the setting URL comes from -----------------------------------------------------


def dhcp_setting_url(phone) -> tuple[str, str] | None:
    """(URL, where from) from DHCP: option 43's sub-options 66/67 before plain 66/67."""
    options = phone.lease.options if phone.lease else {}
    subs = _sub_options(phone, options.get(43))
    if subs.get(66) or "://" in subs.get(67, ""):
        return join_server_and_file(subs.get(66, ""), subs.get(67, "")), "DHCP option 43 (sub-options 66/67)"
    server, file = option_text(options.get(66)), option_text(options.get(67))
    if server or "://" in file:
        return join_server_and_file(server, file), "DHCP options 66/67" if server and file else (
            "DHCP option 66" if server else "DHCP option 67")
    return None


def join_server_and_file(server: str, file: str) -> str:
    """66 + 67: ``http://h/prov`` + ``a.xml`` -> ``http://h/prov/a.xml``; a 67 that is a
    whole URL stands alone (unverified); no 67: the server alone."""
    if not file or "://" in file or not server:
        return file or server
    return server.rstrip("/") + "/" + file.lstrip("/")


def _sub_options(phone, payload: bytes | None) -> dict[int, str]:
    if not payload:
        return {}
    try:
        return {code: option_text(value) for code, value in dhcp.decode_tlvs(payload)}
    except ValueError as exc:
        phone.note(f"DHCP option 43 ignored: not sub-options ({exc})")
        return {}


def find_setting_url(phone, dhcp_url: tuple[str, str] | None, pnp_url: str | None) -> tuple[str, str] | None:
    """(URL, where from) in Snom's order: DHCP's, PnP's answer (None: none), flash."""
    if dhcp_url is not None:
        return dhcp_url
    if pnp_url:
        return pnp_url, "SIP PnP"
    stored = setting(phone, SETTING_SERVER_KEY).strip()
    return (stored, "setting_server in flash") if stored else None


class BadSettingUrl(ValueError):
    pass


def file_url(value: str, phone, behaviour: SnomBehaviour = DEFAULT_BEHAVIOUR) -> tuple[str, Credentials | None]:
    """The setting URL as fetched: macros filled in, TFTP for a bare host, ``{model}.htm``
    (the behaviour's ``folder_file``) for a folder, ``user:pass@`` split off."""
    url = snom_cfg.expand_macros(value.strip(), macros(phone, behaviour))
    if "://" not in url:
        url = "tftp://" + url.lstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # a port that is no number or out of range
    except ValueError as exc:
        raise BadSettingUrl(f"{value!r}: {exc}") from None
    if parts.scheme.lower() not in SCHEMES or not parts.hostname:
        raise BadSettingUrl(f"{value!r} is not a tftp, ftp, http or https URL")
    path = parts.path or "/"
    if path.endswith("/") and not parts.query:
        path += snom_cfg.expand_macros(behaviour.folder_file, macros(phone, behaviour))
    url, user, password = split_userinfo(urlunsplit((parts.scheme.lower(), parts.netloc, path, parts.query, "")))
    return url, Credentials(user, password or "") if user is not None else None


def resolve(reference: str, base: str) -> str:
    """A ``<setting-files>`` URL relative to the file naming it (unverified: Snom's
    examples are absolute). Done by hand: urljoin does not know tftp://."""
    if "://" in reference:
        return reference
    parts = urlsplit(base)
    if reference.startswith("/"):
        return urlunsplit((parts.scheme, parts.netloc, reference, "", ""))
    folder = parts.path.rsplit("/", 1)[0] + "/"
    return urlunsplit((parts.scheme, parts.netloc, folder + reference, "", ""))


# --- the provisioning pass ----------------------------------------------------------------


def provision(phone, behaviour: SnomBehaviour = DEFAULT_BEHAVIOUR):
    from_dhcp = dhcp_setting_url(phone)
    pnp_on = is_on(setting(phone, PNP_KEY))
    pnp_url = phone.pnp_url if pnp_on else None  # PnP is asked at boot; later passes reuse its answer
    if from_dhcp is None and pnp_on and phone.trigger == "power_on":
        pnp_url = yield PnpQuery("snom", model_name(phone.model), phone.flash.firmware, behaviour.pnp_wait_s)
    found = find_setting_url(phone, from_dhcp, pnp_url)
    if found is None:
        return _failed(phone, "no setting URL: no DHCP option 43/66/67, no PnP answer, no setting_server "
                              "(Snom's redirection service is not contacted: labsim stays on loopback)")
    value, origin = found
    try:
        url, credentials = file_url(value, phone, behaviour)
    except BadSettingUrl as exc:
        return _failed(phone, f"{origin}: {exc}")
    phone.server_from(url, origin, "setting URL")
    phone.flash.provisioning_url = url

    before = dict(phone.flash.settings)
    failures: list[str] = []
    yield from _read(phone, url, credentials, 0, set(), failures, behaviour)
    flashed = False if failures else (yield from _update_firmware(phone, behaviour))

    after = phone.flash.settings
    changed = changed_keys(before, after)
    if not CLOCK_KEYS.isdisjoint(changed):
        phone.note(describe_clock(phone))
    restart = [key for key in changed if key in _reboot_settings(behaviour)]
    if flashed or restart:
        return pass_outcome(changed, noun="setting", reboot_for=f"firmware {phone.flash.firmware}" if flashed else restart[0])
    if failures:
        outcome = _failed(phone, "; ".join(failures))
        outcome.changed_keys = changed
        return outcome
    return pass_outcome(changed, noun="setting", next_check_s=next_check_s(phone, behaviour))


def _read(phone, url: str, credentials, depth: int, seen: set[str], failures: list[str], behaviour: SnomBehaviour):
    """One settings file, applied, then the files it chains (depth first)."""
    if url in seen:
        phone.note(f"{url}: already read in this pass; not read again")
        return
    seen.add(url)
    chained = depth > 0
    result = yield Download(url, credentials, "setting_file" if chained else "settings")
    problem = None
    if result.ok:
        try:
            parsed = snom_cfg.parse(result.body)
        except snom_cfg.NotASnomSettingsFile as exc:
            problem = f"{url}: {exc}"
    else:
        problem = f"{url}: {result.status} {result.detail}".rstrip()
    if problem is not None:
        if chained and not behaviour.chained_failure_fails:
            phone.note(f"{problem}; skipped")
        else:
            failures.append(problem)
        return
    _apply(phone, url, result.body, parsed)
    for reference in parsed.setting_files:
        child = resolve(snom_cfg.expand_macros(reference, macros(phone, behaviour)), url)
        if depth >= behaviour.max_chain_depth:
            phone.note(f"{child}: not read, setting files nest deeper than {behaviour.max_chain_depth}")
            continue
        try:
            child_url, child_credentials = file_url(child, phone, behaviour)
        except BadSettingUrl as exc:
            phone.note(f"setting file {exc}; skipped")
            continue
        if child_credentials is None and url_part(child_url, "netloc") == url_part(url, "netloc"):
            child_credentials = credentials  # the same server: the same login (unverified)
        yield from _read(phone, child_url, child_credentials, depth + 1, seen, failures, behaviour)


def _apply(phone, url: str, body: bytes, parsed: snom_cfg.SettingsFile) -> None:
    settings = phone.flash.settings
    for item in parsed.settings:  # in file order: a later value wins
        settings[item.name] = item.value
        if item.perm is not None:
            settings[item.name + PERM_SUFFIX] = item.perm
    name = url_part(url, "path").rsplit("/", 1)[-1] or url
    phone.flash.file_md5[name] = hashlib.md5(body).hexdigest()
    chained = f", chaining {len(parsed.setting_files)}" if parsed.setting_files else ""
    phone.note(f"applied {len(parsed.settings)} settings from {name} ({parsed.form}{chained})")


def _reboot_settings(behaviour: SnomBehaviour) -> frozenset[str]:
    return frozenset(part.strip() for part in behaviour.reboot_settings.split(",") if part.strip())


# --- firmware --------------------------------------------------------------------------------


def _update_firmware(phone, behaviour: SnomBehaviour):
    """True when a different image was flashed (the phone then restarts)."""
    policy = setting(phone, UPDATE_POLICY_KEY).strip()
    if policy in NO_FIRMWARE_POLICIES:
        return False
    image = setting(phone, FIRMWARE_KEY).strip()
    status = setting(phone, FIRMWARE_STATUS_KEY).strip()
    if status:
        image = (yield from _firmware_from_status(phone, status, behaviour)) or image
    if not image:
        return False
    try:
        url, credentials = file_url(image, phone, behaviour)
    except BadSettingUrl as exc:
        phone.note(f"firmware {exc}")
        return False
    version = snom_cfg.image_version(url)
    if version == phone.flash.firmware:
        return False
    if policy == "ask_for_update":
        phone.note(f"firmware {version} offered; update_policy ask_for_update and nobody to ask: not updated")
        return False
    result = yield Download(url, credentials, "firmware")
    if not result.ok:
        phone.note(f"firmware {url}: {result.status} {result.detail}; running version kept".replace("  ", " "))
        return False
    old, phone.flash.firmware = phone.flash.firmware, version
    phone.note(f"flashed firmware {version} (was {old})")
    return True


def _firmware_from_status(phone, status: str, behaviour: SnomBehaviour):
    """The ``firmware`` URL the ``firmware_status`` file names; None if unreadable."""
    try:
        url, credentials = file_url(status, phone, behaviour)
    except BadSettingUrl as exc:
        phone.note(f"firmware_status {exc}")
        return None
    result = yield Download(url, credentials, "firmware_status")
    if not result.ok:
        phone.note(f"firmware_status {url}: {result.status}; no firmware check")
        return None
    try:
        values = snom_cfg.parse(result.body).values()
    except snom_cfg.NotASnomSettingsFile as exc:
        phone.note(f"firmware_status {url}: {exc}")
        return None
    return resolve(values[FIRMWARE_KEY], url) if values.get(FIRMWARE_KEY) else None


# --- when to provision again ----------------------------------------------------------------


def refresh_s(phone) -> float | None:
    """``settings_refresh_timer`` seconds after a good pass; 0 (the default) never."""
    text = setting(phone, REFRESH_KEY).strip()
    return float(text) if is_number(text) and int(text) > 0 else None


def next_check_s(phone, behaviour: SnomBehaviour = DEFAULT_BEHAVIOUR) -> float | None:
    """After a good pass: the sooner of ``settings_refresh_timer`` and the provisioning
    polling; None when neither is set."""
    due = [delay for delay in (refresh_s(phone), next_poll_s(phone, behaviour)) if delay is not None]
    return min(due) if due else None


# Provisioning polling, as Snom's wiki page "Provisioning Polling for desk phones" (D1xx,
# D3xx, D7xx, D8xx) describes it. The web page's "Polling Time Random End" is
# prov_polling_time_rand_end here: (unverified) the setting's name.
POLLING_KEYS = ("prov_polling_enabled", "prov_polling_mode", "prov_polling_period", "prov_polling_time",
                "prov_polling_time_rand_end")
POLLING_FROM_DAY = "polling_from_day"  # in Phone.vendor_ram: the day the random polling counts its days from


def next_poll_s(phone, behaviour: SnomBehaviour = DEFAULT_BEHAVIOUR) -> float | None:
    """With ``prov_polling_enabled`` on (factory off), by ``prov_polling_mode``:

    - ``rel``: every ``prov_polling_period`` seconds;
    - ``abs``: every day at ``prov_polling_time`` (HH:MM);
    - ``random``: a period under a day, after a random 0 to ``prov_polling_period``
      seconds ("at any interval within the Polling Period randomly": the polling times are
      ignored); a period of days (``259200``: 3), every that many days "starting the next
      day after the setting was changed", at a random time between ``prov_polling_time``
      and ``prov_polling_time_rand_end``.

    The times and days are the phone's own clock's: the lab's moved by its ``timezone``
    (:func:`phone_zone`). (unverified) A period of days that is not a whole number of them
    counts the whole days; the random time is drawn for each poll; "the day after the
    setting was changed" is the day after the boot's first pass that polls so (a boot
    starts the days again: RAM)."""
    enabled, mode, period, start, end = (setting(phone, key).strip() for key in POLLING_KEYS)
    if not is_on(enabled):
        return None
    mode, period = mode.lower(), int(period) if is_number(period) else 0
    if mode == "rel":
        return float(period) if period > 0 else None
    zone = phone_zone(phone)
    lab_now = behaviour.clock_start_s + phone.now
    local_now = zone.local_s(lab_now)
    if mode == "abs":
        at = clock_s(start)
        if at is None:
            return None
        wait = (at - local_now) % DAY_S
        return zone.wait_s(lab_now, wait if wait > SERVED_S else wait + DAY_S)
    if mode != "random" or period <= 0:
        return None
    if period < DAY_S:
        return phone.rng.uniform(0, period)
    at = clock_s(start)
    if at is None:
        return None
    end_at = clock_s(end)
    span = ((at if end_at is None else end_at) - at) % DAY_S
    days, today = period // DAY_S, int(local_now // DAY_S)
    first = phone.ram().setdefault(POLLING_FROM_DAY, today + 1)
    day = max(first, today + 1 if today * DAY_S + at <= local_now + SERVED_S else today)
    day += (first - day) % days  # the next of every `days`-th day from the first
    return zone.wait_s(lab_now, day * DAY_S + at + phone.rng.uniform(0, span) - local_now)


# The phone's clock. Snom's configuration file examples set ``timezone`` to ``GER+1`` and
# ``ITA+1``: a region's code, then its standard time in hours east of UTC (Germany and
# Italy are UTC+1). The code also names the region's summer time rule, which Snom's
# documentation found for this project does not give: (unverified) not modelled, so from
# the end of March to October a European phone's polling comes an hour late on the lab's
# clock. Without a zone (or with one that does not read) the phone keeps the lab's clock
# (UTC), as before: (unverified) the factory zone.
TIMEZONE_KEY = "timezone"
_REGION_AND_OFFSET = re.compile(r"[A-Za-z][A-Za-z0-9]*?([+-][0-9]{1,2}(?::[0-9]{2})?)")
CLOCK_KEYS = frozenset({TIMEZONE_KEY, *POLLING_KEYS})


def phone_zone(phone) -> Zone:
    """The zone the phone's ``timezone`` gives (``GER+1``: UTC+1); none: the lab's clock."""
    return _zone(setting(phone, TIMEZONE_KEY).strip())


@functools.lru_cache(maxsize=256)
def _zone(text: str) -> Zone:
    return zone_from(_offset_s(text))


def _offset_s(text: str) -> int | None:
    """Seconds east of UTC a ``timezone`` value gives, or None when it is none."""
    match = _REGION_AND_OFFSET.fullmatch(text)
    return hours_offset_s(match.group(1)) if match else None


def describe_clock(phone) -> str:
    """What the phone's clock keeps, for its timeline: ``clock GER+1 (UTC+1): no summer
    time (Snom's summer rules are not modelled)``."""
    text = setting(phone, TIMEZONE_KEY).strip()
    offset = _offset_s(text)
    if not text:
        source = f"UTC, the lab's ({TIMEZONE_KEY} not set)"
    elif offset is None:
        source = f"UTC, the lab's ({TIMEZONE_KEY} {text!r} is no zone: a region's code and hours east of UTC, as GER+1)"
    else:
        source = f"{text} (UTC{hours_text(offset) if offset else ''})"
    return f"clock {source}: no summer time (Snom's summer rules are not modelled)"


def retry_delay_s(phone, failures_before: int) -> float:
    """Random 3-6 s after the first failure, doubled for each one before it, at most 3600 s."""
    return min(phone.rng.uniform(*RETRY_FIRST_S) * 2 ** min(failures_before, 30), RETRY_MAX_S)


def failures_in_a_row(phone) -> int:
    """Failed passes since the phone last was ready or (re)booted (the phone counts them
    as it changes state). The count lives in RAM on a real phone, so a restart starts
    the back-off again."""
    return phone.failures_in_a_row


def _failed(phone, reason: str) -> ProvisioningOutcome:
    delay = retry_delay_s(phone, failures_in_a_row(phone))
    return ProvisioningOutcome("failed", reason=f"{reason}; retry in {delay:.1f}s", next_check_s=delay)

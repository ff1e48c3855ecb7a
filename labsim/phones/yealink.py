"""Yealink T2x / T4x / T5x phones, as the Yealink auto-provisioning guide describes them.

Sources of the provisioning server, first that answers wins: DHCP custom options
(``static.auto_provision.dhcp_option.list_user_options``) -> option 66 -> option 43 ->
the URL stored in flash (``static.auto_provision.server.url``). (PnP comes first on a
real phone; labsim's phones do not send PnP yet.)

Files, in order: the Common CFG ``y0000000000XX.cfg`` (XX: the model's code), then the
MAC-oriented CFG ``<mac>.cfg``. A missing file is asked for three times, then skipped.
If the MD5 of both equals what flash remembers, provisioning ends there: nothing is
applied and the phone does not reboot. Otherwise all files are applied (Common first,
the MAC file overriding it), and the phone reboots only if a changed setting needs it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from labsim.phones.dhcp_client import DhcpIdentity
from labsim.phones.events import Credentials, Download, ProvisioningOutcome
from labsim.phones.phone import Wait
from labsim.wire import dhcp, yealink_cfg
from labsim.wire.provisioning_url import BadProvisioningUrl, parse_server

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

VENDOR_CLASS = b"yealink"
PARAMETER_REQUEST_LIST = bytes([1, 3, 6, 15, 42, 43, 44, 66, 67, 120, 125, 150, 160, 161])

# Settings whose change makes the phone reboot (network settings and the like).
REBOOT_KEY_PREFIXES = ("static.network.",)
REBOOT_KEYS = frozenset({
    "static.auto_provision.connect.keep_alive",
    "static.wui.http_enable",
    "static.wui.https_enable",
})

SERVER_URL_KEY = "static.auto_provision.server.url"
USER_OPTIONS_KEY = "static.auto_provision.dhcp_option.list_user_options"
USER_OPTIONS_ENABLE_KEY = "static.auto_provision.dhcp_option.enable"


@dataclass(frozen=True)
class YealinkBehaviour:
    """Behaviour the vendor does not document precisely: settings, defaults *(unverified)*."""

    attempts_per_file: int = 3
    retry_delay_s: float = 1.0  # (unverified)
    require_version_header: bool = True  # (unverified) reject files without '#!version:1.0.0.1'
    reboot_on_any_change: bool = False  # old firmware generation (SIP-T2xP) rebooted on any MD5 change


DEFAULT_BEHAVIOUR = YealinkBehaviour()


def common_cfg_name(model: str) -> str:
    return f"y{MODEL_CODES[model]:012d}.cfg"


def mac_cfg_name(mac: str) -> str:
    return mac.replace(":", "").lower() + ".cfg"


def default_firmware(model: str) -> str:
    return f"{MODEL_CODES[model]}.85.0.5"


def user_agent(phone) -> str:
    return f"Yealink SIP-{phone.model} {phone.flash.firmware} {phone.mac}"


def dhcp_identity(phone) -> DhcpIdentity:
    return DhcpIdentity(
        vendor_class=VENDOR_CLASS,
        parameter_request_list=PARAMETER_REQUEST_LIST,
        hostname=f"SIP-{phone.model}".encode(),
    )


def needs_reboot(key: str) -> bool:
    return key in REBOOT_KEYS or key.startswith(REBOOT_KEY_PREFIXES)


# --- finding the provisioning server ---------------------------------------------------


def find_server(phone) -> tuple[str, str] | None:
    """(server value, where it came from), in Yealink's order of sources."""
    options = phone.lease.options if phone.lease else {}
    settings = phone.flash.settings
    if settings.get(USER_OPTIONS_ENABLE_KEY, "1") != "0":
        for code in _user_option_codes(settings.get(USER_OPTIONS_KEY, "")):
            value = _text(options.get(code))
            if value:
                return value, f"DHCP option {code}"
    value = _text(options.get(66))
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
        if part.isdigit() and 128 <= int(part) <= 254:
            codes.append(int(part))
    return codes


def _text(payload: bytes | None) -> str:
    return payload.decode("latin-1").strip("\x00 \t\r\n") if payload else ""


def _option_43_url(payload: bytes | None) -> str:
    """Option 43's layout for Yealink is undocumented: accept a plain URL, or sub-option
    TLVs one of which carries a URL *(unverified)*."""
    if not payload:
        return ""
    plain = _text(payload)
    if plain.isprintable() and ("://" in plain or "." in plain):
        return plain
    try:
        for _code, value in dhcp.decode_tlvs(payload):
            text = _text(value)
            if "://" in text:
                return text
    except ValueError:
        pass
    return ""


def _substitute(value: str, phone) -> str:
    return value.replace("$PN", phone.model).replace("$MAC", phone.mac.replace(":", "").lower())


# --- the provisioning procedure --------------------------------------------------------


def provision(phone, behaviour: YealinkBehaviour = DEFAULT_BEHAVIOUR):
    found = find_server(phone)
    if found is None:
        return ProvisioningOutcome(
            "failed", reason="no provisioning server: no custom option, option 66, option 43 or URL in flash"
        )
    value, source = found
    try:
        server = parse_server(_substitute(value, phone))
    except BadProvisioningUrl as exc:
        return ProvisioningOutcome("failed", reason=f"{source}: {exc}")
    phone.note(f"server {server} from {source}")
    phone.flash.provisioning_url = str(server)

    names = [common_cfg_name(phone.model), mac_cfg_name(phone.mac)]
    bodies: dict[str, bytes | None] = {}
    for name, stage in zip(names, ("common_cfg", "mac_cfg")):
        bodies[name] = yield from _download(phone, server, name, stage, behaviour)
    if all(body is None for body in bodies.values()):
        return ProvisioningOutcome("failed", reason="no configuration file could be downloaded")

    md5s = {name: hashlib.md5(body).hexdigest() for name, body in bodies.items() if body is not None}
    if all(phone.flash.file_md5.get(name) == md5s.get(name) for name in names):
        return ProvisioningOutcome("unchanged", reason="MD5 of every file matches flash: nothing applied")

    merged: dict[str, str] = {}
    for name in names:  # later files override earlier ones
        body = bodies[name]
        if body is None:
            continue
        try:
            merged.update(yealink_cfg.parse(body, require_header=behaviour.require_version_header))
        except yealink_cfg.NotAYealinkConfig as exc:
            phone.note(f"rejected {name}: {exc}")
            md5s.pop(name, None)
    return _apply(phone, merged, md5s, behaviour)


def _download(phone, server, name: str, stage: str, behaviour: YealinkBehaviour):
    for attempt in range(1, behaviour.attempts_per_file + 1):
        result = yield Download(server.file_url(name), _credentials(server), stage)
        if result.ok:
            phone.note(f"downloaded {name} ({len(result.body)} bytes)")
            return result.body
        phone.note(f"{name}: {result.status} {result.detail} (attempt {attempt}/{behaviour.attempts_per_file})")
        if attempt < behaviour.attempts_per_file:
            yield Wait(behaviour.retry_delay_s)
    phone.note(f"skipped {name}")
    return None


def _credentials(server):
    if server.user is None:
        return None
    return Credentials(server.user, server.password or "")


def _apply(phone, merged: dict[str, str], md5s: dict[str, str], behaviour: YealinkBehaviour):
    flash = phone.flash
    changed = [key for key, value in merged.items() if flash.settings.get(key) != value]
    flash.settings.update(merged)
    flash.file_md5 = dict(md5s)
    reboot_keys = [key for key in changed if needs_reboot(key)]
    reboot = bool(changed) and (behaviour.reboot_on_any_change or bool(reboot_keys))
    if reboot:
        why = reboot_keys[0] if reboot_keys else "a file changed (old-firmware rule)"
        reason = f"applied {len(changed)} changed settings; reboot for {why}"
    else:
        reason = f"applied {len(changed)} changed settings; no reboot needed"
    return ProvisioningOutcome("applied", reboot=reboot, reason=reason, changed_keys=changed)

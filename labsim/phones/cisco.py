"""Cisco SPA (300/500 series, SPA112/122 ATAs) and MPP (3PCC firmware on 6800/7800/8800)
phones, as the Cisco provisioning guides describe them.

The phone resyncs by its **profile rules**: ``Profile_Rule`` (default ``/spa$PSN.cfg`` on
SPA, ``/$PSN.xml`` on MPP), then ``Profile_Rule_B``, ``_C``, ``_D`` in turn, each a URL
with macros (``$MA``, ``$MAU``, ``$MAC``, ``$PN``, ``$PSN``, ``$SWVER`` …) and an optional
``[--uid … --pwd …]`` prefix. A rule without a server (``/spa$PSN.cfg``) uses TFTP to the
server DHCP gave, from the first option present in ``DHCP_Option_To_Use`` order (66,
160, 159, 150 by default): option 66 a host or URL; 150 a list of TFTP servers tried in
order; 159/160 a URL (one naming a file is the profile itself). Each profile's
parameters are applied as they come and stay until a later profile changes them.

When: on power-on with ``Resync_On_Reset`` (after a random delay up to
``Resync_Random_Delay``), every ``Resync_Periodic`` seconds (3600) or, when ``Resync_At``
is set, daily at that time instead (plus up to ``Resync_At_Random_Delay``), on a SIP
NOTIFY check-sync with ``Resync_From_SIP``; after a failed resync, again in
``Resync_Error_Retry_Delay``. A file that is not found fails the resync only with
``Resync_Fails_On_FNF``. After the profiles, ``Upgrade_Rule`` names the firmware; a
different image is flashed and the phone reboots; a download that fails is tried again in
``Upgrade_Error_Retry_Delay``. On MPP phones ``Resync_Trigger_1``/``_2``, when set, hold
back every resync but a check-sync unless one of them holds.
"""

from __future__ import annotations

import functools
import hashlib
import posixpath
import re
from dataclasses import dataclass

from labsim.phones import local_time
from labsim.phones.dhcp_client import DhcpIdentity
from labsim.phones.events import Credentials, Download, ProvisioningOutcome
from labsim.phones.flash import changed_keys
from labsim.phones.kit import next_window_moment_s, parse_int, pass_outcome
from labsim.phones.local_time import DayRule, Zone, clock_offset_s, dhcp_time_offset_s, summer_words, zone_from
from labsim.phones.phone import Wait
from labsim.wire import cisco_cfg, cisco_crypt, cisco_rules, dhcp
from labsim.wire.numbers import is_number
from labsim.wire.provisioning_url import BadProvisioningUrl, parse_server, split_userinfo, url_part

VENDOR = "cisco"


@dataclass(frozen=True)
class Model:
    psn: str  # $PSN, the product series number
    mpp: bool  # MPP (3PCC) rather than SPA
    firmware: str  # the default $SWVER


def _spa(psn: str, firmware: str = "7.6.2") -> Model:
    return Model(psn, False, firmware)


def _mpp(psn: str, load: str) -> Model:
    return Model(psn, True, f"{load}.12-0-1MPP-417")  # (unverified) a load name, as $SWVER


# $PN (labsim's model name) -> model.
MODEL_INFO = {
    "SPA303": _spa("303"), "SPA502G": _spa("502G"), "SPA504G": _spa("504G"), "SPA508G": _spa("508G"),
    "SPA509G": _spa("509G"), "SPA525G2": _spa("525G2"), "SPA112": _spa("112", "1.4.1"),
    "SPA122": _spa("122", "1.4.1"),
    "CP-6821-3PCC": _mpp("6821", "sip6821"), "CP-7811-3PCC": _mpp("7811", "sip78xx"),
    "CP-7821-3PCC": _mpp("7821", "sip78xx"), "CP-7841-3PCC": _mpp("7841", "sip78xx"),
    "CP-7861-3PCC": _mpp("7861", "sip78xx"), "CP-8811-3PCC": _mpp("8811", "sip88xx"),
    "CP-8841-3PCC": _mpp("8841", "sip88xx"), "CP-8845-3PCC": _mpp("8845", "sip8845_65"),
    "CP-8851-3PCC": _mpp("8851", "sip88xx"), "CP-8861-3PCC": _mpp("8861", "sip88xx"),
    "CP-8865-3PCC": _mpp("8865", "sip8845_65"),
}
MODELS = tuple(MODEL_INFO)
MAC_PREFIXES = ("00:0e:08", "88:75:56", "00:56:2b")

SPA_PROFILE_RULE, MPP_PROFILE_RULE = "/spa$PSN.cfg", "/$PSN.xml"
RULE_KEYS = ("Profile_Rule", "Profile_Rule_B", "Profile_Rule_C", "Profile_Rule_D")
# The stage each rule's download is timed as: profile, profile_b, profile_c, profile_d.
RULE_STAGES = {key: "profile" if key == "Profile_Rule" else "profile_" + key[-1].lower() for key in RULE_KEYS}
STAGES = (*RULE_STAGES.values(), "firmware")  # kit.VendorProfile.STAGES
# Option 55. Option 2 (Time Offset, for Ignore_DHCP_Time_Offset No): the captures of SPA
# phones' requests mostly ask for it ("1,3,42,6,7,15,58,59,66,2,150,151,160,159", Fingerbank)
# and those of 7841/8841/8851 do (satori). (unverified) The rest: the standard set and the
# options the phone reads a server from.
PARAMETER_REQUEST_LIST = bytes([1, 2, 3, 6, 15, 42, 43, 66, 67, 150, 159, 160])

# Parameters and their factory values (the guides' defaults; Profile_Rule by family).
DEFAULTS = {
    "Provision_Enable": "Yes",
    "Resync_On_Reset": "Yes",
    "Resync_Random_Delay": "2",
    "Resync_Periodic": "3600",
    "Resync_Error_Retry_Delay": "3600",
    "Resync_Fails_On_FNF": "Yes",
    "Resync_From_SIP": "Yes",
    "Resync_At": "",
    "Resync_At_Random_Delay": "600",
    "Upgrade_Enable": "Yes",
    "Upgrade_Rule": "",
    "Upgrade_Error_Retry_Delay": "3600",
    "Resync_After_Upgrade_Attempt": "Yes",
    # The factory zone: the MPP and 3PCC guides' "Default: GMT-08:00" (the SPA guides' table
    # was not found: (unverified) that SPA firmware has the same). A phone given none, or a
    # value that is not a zone, keeps it.
    "Time_Zone": "GMT-08:00",
    # Yes: the DHCP server's option 2 (Time Offset) is ignored; No: it stands for Time_Zone.
    # The MPP and 3PCC guides: "Default: Yes" ((unverified) for SPA).
    "Ignore_DHCP_Time_Offset": "Yes",
    # Summer time: the MPP guide's rule (the last Sunday of March to the last of October,
    # 02:00, one hour); (unverified) that it is on by default.
    "Daylight_Saving_Time_Enable": "Yes",
    "Daylight_Saving_Time_Rule": "start=3/-1/7/2;end=10/-1/7/2;save=1",
}
DAY_S = 86_400


@dataclass(frozen=True)
class CiscoBehaviour:
    """Behaviour the guides leave open: settings, defaults *(unverified)*."""

    dhcp_option_order: str = "66,160,159,150"  # without DHCP_Option_To_Use (MPP's factory list, less 60/43/125)
    # Resync_Random_Delay counts in 20-second units on SPA (documented for the SPA/ATA
    # guides; (unverified) that MPP uses the same unit).
    random_delay_unit_s: float = 20.0
    option150_next_on_not_found: bool = False  # (unverified) a 404 is an answer: no next TFTP server
    # (unverified) parameters whose change makes the phone reboot: its network settings.
    reboot_parameters: str = ("Connection_Type,Static_IP,NetMask,Gateway,Primary_DNS,Secondary_DNS,"
                              "HostName,Domain,Enable_VLAN,VLAN_ID")
    # (unverified) profiles in the plain-text source syntax are read as is (real SPAs
    # want them compiled with spc or as XML).
    accept_plain_text: bool = True
    # Where the simulated wall clock starts, seconds after local midnight (Resync_At).
    clock_start_s: float = 0.0
    # The digest an encrypted profile's key is derived with ([--key ...]): the guides'
    # firmware was "tested against version openssl-0.9.7c", whose enc used MD5 (OpenSSL 1.1
    # and later: SHA-256 unless -md md5). "md5" or "sha256" (wire.cisco_crypt).
    key_digest: str = "md5"

    def __post_init__(self):
        if self.key_digest not in cisco_crypt.DIGESTS:  # a scenario error, not a failure at the first profile
            raise ValueError(f"cisco behaviour key_digest: {self.key_digest!r}; allowed: "
                             f"{', '.join(cisco_crypt.DIGESTS)}")


DEFAULT_BEHAVIOUR = CiscoBehaviour()


def default_firmware(model: str) -> str:
    return MODEL_INFO[model].firmware


def default_profile_rule(model: str) -> str:
    return MPP_PROFILE_RULE if MODEL_INFO[model].mpp else SPA_PROFILE_RULE


def setting(phone, name: str) -> str:
    """A parameter as the phone runs with it: flash, else its factory value."""
    if name in phone.flash.settings:
        return phone.flash.settings[name]
    if name == "Profile_Rule":
        return default_profile_rule(phone.model)
    return DEFAULTS.get(name, "")


def is_yes(value: str) -> bool:
    return value.strip().lower() in ("yes", "true", "1", "on")


def macros(phone) -> dict[str, str]:
    bare = phone.mac.replace(":", "").lower()
    values = {
        "MA": bare, "MAU": bare.upper(), "MAC": phone.mac.lower(), "PN": phone.model,
        "PSN": MODEL_INFO[phone.model].psn, "SWVER": phone.flash.firmware, "HWVER": "1",  # (unverified)
        "SN": "CCQ" + bare[-8:].upper(),  # (unverified) a serial number made from the MAC
        "IP": phone.lease.address if phone.lease else "",
    }
    for letter in "ABCDEFGHIJKLMNOP":
        values[f"GPP_{letter}"] = phone.flash.settings.get(f"GPP_{letter}", "")
    # The guides' timers: seconds since the last resync attempt and the last upgrade attempt
    # (since the boot before the first: (unverified)); and since line 1 or 2 lost its
    # registration: labsim's phones register no line, so as a registered line's, 0 (unverified).
    ram = phone.vendor_ram or {}
    since_boot = ram.get(TIMERS_FROM, 0.0)
    values["PRVTMR"] = str(int(phone.now - ram.get(LAST_RESYNC, since_boot)))
    values["UPGTMR"] = str(int(phone.now - ram.get(LAST_UPGRADE, since_boot)))
    values["REGTMR1"] = values["REGTMR2"] = "0"
    return values


TRIGGER_KEYS = ("Resync_Trigger_1", "Resync_Trigger_2")


def _held_back_by_triggers(phone) -> str | None:
    """On an MPP phone, ``Resync_Trigger_1`` and ``_2``, when either is set, hold back every
    resync but a SIP NOTIFY's unless one of them holds (the 6800 and 8800 MPP guides: "the
    triggers, if set, will prevent resync unless one or more triggers evaluates to true";
    "not triggered even when Resync On Reset" is set; "only Resync via direct action URL
    and SIP notify ignores" them). Each is a condition as a rule's (wire.cisco_rules), its
    macros expanded; one that does not read holds nothing, noted. The words why, or None.
    SPA firmware has a true trigger start a resync instead: not modelled there."""
    if phone.trigger == "check_sync" or not MODEL_INFO[phone.model].mpp:
        return None
    triggers = [(key, setting(phone, key).strip()) for key in TRIGGER_KEYS]
    triggers = [(key, text[1:-1] if text.startswith("(") and text.endswith(")") else text)
                for key, text in triggers if text]
    if not triggers:
        return None
    values = macros(phone)
    for key, text in triggers:
        try:
            if cisco_rules.holds(cisco_cfg.expand_macros(text, values), values["SWVER"]):
                return None
        except cisco_cfg.NotACiscoProfile as exc:
            phone.note(f"{key}: {exc}")
    return (f"{' and '.join(key for key, _ in triggers)}: none holds ($PRVTMR {values['PRVTMR']}, "
            f"$UPGTMR {values['UPGTMR']}): the resync is held back")


def user_agent(phone, behaviour: CiscoBehaviour = DEFAULT_BEHAVIOUR) -> str:
    """(unverified) ``Cisco/SPA504G-7.6.2 (000E08AABBCC)``: product, software, MAC."""
    return f"Cisco/{phone.model}-{phone.flash.firmware} ({phone.mac.replace(':', '').upper()})"


def dhcp_identity(phone, behaviour: CiscoBehaviour = DEFAULT_BEHAVIOUR) -> DhcpIdentity:
    return DhcpIdentity(
        vendor_class=f"Cisco {phone.model}".encode(),  # (unverified)
        parameter_request_list=PARAMETER_REQUEST_LIST,
        hostname=b"SEP" + phone.mac.replace(":", "").upper().encode(),  # (unverified) Cisco's SEP<MAC>
    )


def check_sync_action(phone, reboot_requested: bool, behaviour: CiscoBehaviour = DEFAULT_BEHAVIOUR) -> str:
    """SIP NOTIFY check-sync: a resync with ``Resync_From_SIP`` (Yes), else ignored;
    ``;reboot=true`` reboots (unverified)."""
    if not is_yes(setting(phone, "Resync_From_SIP")):
        return "ignore"
    return "reboot" if reboot_requested else "resync"


# --- where a rule's file is ----------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A server DHCP gave: a folder URL (``tftp://10.0.0.5/``), or with ``is_file`` a
    profile URL (option 159/160 naming a file)."""

    url: str
    origin: str  # "DHCP option 150 (2 of 3)" ...
    is_file: bool = False


def dhcp_sources(phone, behaviour: CiscoBehaviour = DEFAULT_BEHAVIOUR) -> list[Source]:
    """The servers of the first option present in ``DHCP_Option_To_Use`` order; several
    only for option 150 (a list of TFTP servers, tried in order)."""
    options = phone.lease.options if phone.lease else {}
    order = phone.flash.settings.get("DHCP_Option_To_Use") or behaviour.dhcp_option_order
    for part in order.split(","):
        code = int(part) if is_number(part.strip()) else None
        payload = options.get(code) if code in (66, 150, 159, 160) else None
        if not payload:
            continue
        if code == 150:
            addresses = dhcp.ip_list(payload) if len(payload) % 4 == 0 else []
            return [Source(f"tftp://{address}/", f"DHCP option 150 ({index} of {len(addresses)})")
                    for index, address in enumerate(addresses, 1)]
        value = payload.decode("latin-1").strip("\x00 \t\r\n")
        if not value:
            continue
        if code in (159, 160) and "://" in value and posixpath.splitext(url_part(value, "path"))[1]:
            return [Source(value, f"DHCP option {code}", is_file=True)]
        try:
            return [Source(parse_server(value).with_credentials(), f"DHCP option {code}")]
        except BadProvisioningUrl as exc:
            phone.note(f"DHCP option {code}: {exc}")
            return []
    return []


def targets(url: str, sources: list[Source], phone, *, primary: bool = True) -> list[tuple[str, str]]:
    """(URL, where from) to try in order for a rule's expanded URL: itself when it names
    a server (no scheme: TFTP), else the path on each DHCP source. A 159/160 URL naming a
    file stands in for the primary rule's path; the other rules use its folder."""
    if "://" in url:
        return [(url, "the rule")]
    if "/" in url and not url.startswith("/"):
        return [("tftp://" + url, "the rule")]
    found = []
    for source in sources:
        if source.is_file and primary:
            found.append((cisco_cfg.expand_macros(source.url, macros(phone)), source.origin))
        else:
            found.append((parse_server(source.url).file_url(url.lstrip("/"), credentials=True), source.origin))
    return found


def _split_credentials(url: str, rule: cisco_cfg.Rule) -> tuple[str, Credentials | None]:
    """The URL without ``user:pass@``, and the credentials: ``--uid``/``--pwd`` win."""
    url, user, password = split_userinfo(url)
    credentials = Credentials(user, password or "") if user is not None else None
    if "--uid" in rule.options:
        credentials = Credentials(rule.options["--uid"], rule.options.get("--pwd", ""))
    return url, credentials


# --- the resync -------------------------------------------------------------------------------


def provision(phone, behaviour: CiscoBehaviour = DEFAULT_BEHAVIOUR):
    """A pass: the resync (the profile rules, then the upgrade), or, when only the upgrade's
    retry timer is due, the upgrade, then a resync with ``Resync_After_Upgrade_Attempt``.
    The two timers are the phone's own (in RAM)."""
    if not is_yes(setting(phone, "Provision_Enable")):
        return ProvisioningOutcome("unchanged", reason="Provision_Enable is No: no resync")
    ram = phone.ram()
    if phone.trigger == "power_on":
        ram[TIMERS_FROM] = phone.now  # $PRVTMR and $UPGTMR count from the boot
        if not is_yes(setting(phone, "Resync_On_Reset")):
            return _without_resync(phone, "Resync_On_Reset is No", behaviour)
        delay = phone.rng.uniform(0, parse_int(setting(phone, "Resync_Random_Delay"), 0) * behaviour.random_delay_unit_s)
        if delay > 0:
            phone.note(f"Resync_Random_Delay: first resync in {delay:.1f}s")
            yield Wait(delay)
    resync = phone.trigger != "schedule" or _is_due(ram.get(RESYNC_DUE), phone.now) or UPGRADE_DUE not in ram
    held_back = _held_back_by_triggers(phone) if resync else None
    if held_back:
        phone.note(held_back)
        resync = False
    if not resync and not _is_due(ram.get(UPGRADE_DUE), phone.now):
        return _without_resync(phone, held_back, behaviour)

    before = dict(phone.flash.settings)
    sources = dhcp_sources(phone, behaviour)
    failures: list[str] = []
    if resync:
        yield from _profiles(phone, sources, failures, behaviour)
    else:
        phone.note("Upgrade_Error_Retry_Delay: the upgrade's retry (no resync is due)")
    upgrade = yield from _upgrade(phone, sources)
    flashed = upgrade == "flashed"
    if not resync and upgrade == "failed" and is_yes(setting(phone, "Resync_After_Upgrade_Attempt")):
        # "Triggers a resync after every firmware upgrade attempt" (factory Yes), held back
        # on MPP as any resync but a check-sync. A pass that resynced just before its
        # attempt lets that resync stand for it (unverified).
        after_attempt_held = _held_back_by_triggers(phone)
        if after_attempt_held:
            phone.note(after_attempt_held)
        else:
            phone.note("Resync_After_Upgrade_Attempt: a resync after the upgrade attempt")
            resync = True
            yield from _profiles(phone, sources, failures, behaviour)

    after = phone.flash.settings
    changed = changed_keys(before, after)
    if not CLOCK_KEYS.isdisjoint(changed):
        phone.note(describe_clock(phone))
    reboot_keys = [key for key in changed if key in _reboot_parameters(behaviour)]
    if flashed or reboot_keys:
        return pass_outcome(changed, noun="parameter",
                            reboot_for=f"firmware {phone.flash.firmware}" if flashed else reboot_keys[0])
    _set_timer(phone, UPGRADE_DUE, _upgrade_retry_s(phone, failed=upgrade == "failed"))
    if not resync:
        return _without_resync(phone, held_back, behaviour, resync_timer_fired=bool(held_back))
    ram[RESYNC_VERDICT] = "; ".join(failures)
    ram[RESYNC_FAILURES] = ram.get(RESYNC_FAILURES, 0) + 1 if failures else 0
    _set_timer(phone, RESYNC_DUE, next_check_s(phone, ok=not failures, behaviour=behaviour))
    if failures:
        return ProvisioningOutcome("failed", changed_keys=changed, reason="; ".join(failures),
                                   next_check_s=_next_timer(phone))
    return pass_outcome(changed, noun="parameter", next_check_s=_next_timer(phone))


def _profiles(phone, sources: list[Source], failures: list[str], behaviour: CiscoBehaviour):
    """The resync: every profile rule in turn, each read when its turn comes (an earlier
    profile may have set it)."""
    phone.ram()[LAST_RESYNC] = phone.now
    for key in RULE_KEYS:
        text = setting(phone, key)
        if text.strip():
            yield from _resync(phone, key, text, sources, failures, behaviour)


def _without_resync(phone, why: str | None, behaviour: CiscoBehaviour, resync_timer_fired: bool = True):
    """A pass that did not resync (``Resync_On_Reset`` No, held back by the triggers, or the
    upgrade's retry with no resync after it): its verdict is the last resync's, still
    standing (a failed one stays failed); the resync's timer starts again unless it had not
    fired (the upgrade's retry)."""
    ram = phone.ram()
    if resync_timer_fired:
        _set_timer(phone, RESYNC_DUE, next_check_s(phone, ok=not ram.get(RESYNC_VERDICT), behaviour=behaviour))
    if ram.get(RESYNC_VERDICT):
        return ProvisioningOutcome("failed", reason=ram[RESYNC_VERDICT], next_check_s=_next_timer(phone))
    return ProvisioningOutcome("unchanged", reason=why or "no parameter changed", next_check_s=_next_timer(phone))


def _chosen_rule(phone, key: str, text: str) -> cisco_cfg.Rule | None:
    """The rule's alternative the phone takes (wire.cisco_rules: the first whose condition
    holds), its assignments made: its URL and options, or None (nothing to fetch).
    NotACiscoProfile when the rule does not read."""
    values = macros(phone)
    chosen = cisco_rules.choose(cisco_rules.parse_alternatives(text), values)
    if chosen is None:
        phone.note(f"{key}: no alternative's condition holds: nothing fetched")
        return None
    if chosen.condition is not None:
        phone.note(f"{key}: ( {chosen.condition} )? holds")
    for name, value in cisco_rules.assigned(chosen, values).items():
        phone.flash.settings[name] = value
        phone.note(f"{key}: {name} = {value!r}")
    return chosen.rule


def _resync(phone, key: str, text: str, sources: list[Source], failures: list[str], behaviour: CiscoBehaviour):
    """One profile rule: fetch its file, apply its parameters. Failures go into ``failures``."""
    try:
        rule = _chosen_rule(phone, key, text)
    except cisco_cfg.NotACiscoProfile as exc:
        failures.append(f"{key}: {exc}")
        return
    if rule is None:
        return
    # The phrase an encrypted profile is decrypted with, macros expanded ("--key $B").
    phrase = cisco_cfg.expand_macros(rule.options["--key"], macros(phone)) if "--key" in rule.options else None
    url = cisco_cfg.expand_macros(rule.url, macros(phone))
    try:
        tries = targets(url, sources, phone, primary=key == "Profile_Rule")
    except BadProvisioningUrl as exc:
        failures.append(f"{key}: {exc}")
        return
    if not tries:
        failures.append(f"{key} {url}: no server in the rule and none from DHCP")
        return
    stage = RULE_STAGES[key]
    for number, (target, origin) in enumerate(tries, 1):
        target, credentials = _split_credentials(target, rule)
        phone.server_source = (target, origin)  # for the report's problems, if this fails
        result = yield Download(target, credentials, stage)
        if result.ok:
            phone.note(f"{key}: {target} from {origin} ({len(result.body)} bytes)")
            _apply(phone, key, target, result.body, failures, behaviour, phrase)
            return
        last = number == len(tries)
        if result.status == "not_found" and not (behaviour.option150_next_on_not_found and not last):
            if is_yes(setting(phone, "Resync_Fails_On_FNF")):
                failures.append(f"{key}: {target} not found")
            else:
                phone.note(f"{key}: {target} not found; Resync_Fails_On_FNF is No: not a failure")
            return
        phone.note(f"{key}: {target}: {result.status} {result.detail}".rstrip()
                   + ("" if last else "; trying the next server"))
    failures.append(f"{key}: no server answered ({len(tries)} tried)")


def _apply(phone, key: str, url: str, body: bytes, failures: list[str], behaviour: CiscoBehaviour,
           phrase: str | None = None) -> None:
    name = posixpath.basename(url_part(url, "path")) or key
    try:
        content = _unpack(body, phrase, behaviour)
    except cisco_cfg.NotACiscoProfile as exc:
        failures.append(f"{key}: {name}: {exc}")
        return
    if not content.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") and not behaviour.accept_plain_text:
        failures.append(f"{key}: {name} is not an XML profile")
        return
    try:
        values = cisco_cfg.parse_profile(content)
    except cisco_cfg.NotACiscoProfile as exc:
        failures.append(f"{key}: {name}: {exc}")
        return
    phone.flash.settings.update(values)  # parameters stay until a profile changes them
    phone.flash.file_md5[name] = _md5(body)
    phone.note(f"{key}: applied {len(values)} parameters from {name}")


def _unpack(body: bytes, phrase: str | None, behaviour: CiscoBehaviour) -> bytes:
    """The profile as downloaded, decrypted with the rule's ``--key`` phrase, then
    decompressed when it is gzip (wire.cisco_crypt); NotACiscoProfile saying why not."""
    if phrase is not None:
        body = cisco_crypt.decrypt(body, phrase, digest=behaviour.key_digest)
    elif cisco_crypt.is_encrypted(body):
        raise cisco_cfg.NotACiscoProfile("an encrypted profile ('Salted__'), but its rule has no [--key ...]")
    return cisco_crypt.decompress(body)


def _md5(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()


def _reboot_parameters(behaviour: CiscoBehaviour) -> frozenset[str]:
    return frozenset(part.strip() for part in behaviour.reboot_parameters.split(",") if part.strip())


# --- firmware -----------------------------------------------------------------------------------

_SPA_VERSION = re.compile(r"-(\d+)-(\d+)-(\d+)([a-z]*)$")
IMAGE_EXTENSIONS = (".bin", ".loads", ".zip", ".sbn", ".img")


def image_version(name: str) -> str:
    """The version an image's name says: ``spa50x-30x-7-6-2a.bin`` -> ``7.6.2a``; an MPP
    load ``sip78xx.12-0-1MPP-417.loads`` -> its name, ``sip78xx.12-0-1MPP-417``."""
    stem = posixpath.basename(name)
    for extension in IMAGE_EXTENSIONS:
        if stem.lower().endswith(extension):
            stem = stem[: -len(extension)]
            break
    match = _SPA_VERSION.search(stem)
    if match and not stem.startswith("sip"):
        return f"{match.group(1)}.{match.group(2)}.{match.group(3)}{match.group(4)}"
    return stem


def _upgrade(phone, sources: list[Source]):
    """``Upgrade_Rule`` naming an image whose version is not the running one: download and
    flash it, "flashed" (the phone reboots); "failed" when no download of it came; None
    when there is nothing to upgrade (no rule, the same version, a rule that does not read)."""
    text = setting(phone, "Upgrade_Rule")
    if not text.strip() or not is_yes(setting(phone, "Upgrade_Enable")):
        return None
    try:
        rule = _chosen_rule(phone, "Upgrade_Rule", text)
        if rule is None:
            return None
        url = cisco_cfg.expand_macros(rule.url, macros(phone))
        tries = targets(url, sources, phone, primary=False)
    except (cisco_cfg.NotACiscoProfile, BadProvisioningUrl) as exc:
        phone.note(f"Upgrade_Rule: {exc}")
        return None
    version = image_version(url_part(url, "path") or url)
    if version == phone.flash.firmware:
        return None
    phone.ram()[LAST_UPGRADE] = phone.now
    for target, origin in tries:
        target, credentials = _split_credentials(target, rule)
        result = yield Download(target, credentials, "firmware")
        if result.ok:
            old, phone.flash.firmware = phone.flash.firmware, version
            phone.note(f"Upgrade_Rule: flashed {version} (was {old}) from {origin}")
            return "flashed"
        phone.note(f"Upgrade_Rule: {target}: {result.status} {result.detail}".rstrip())
        if result.status == "not_found":
            break
    return "failed"


# What a Cisco phone keeps in RAM (Phone.vendor_ram): its two timers, the resync's and the
# upgrade's retry (when each is due, on the run's clock); the failures in a row of each and
# the last resync's verdict ("" when it went well); when it last tried a resync and an
# upgrade, and the boot its timers count from before those.
RESYNC_DUE, UPGRADE_DUE = "resync_due_s", "upgrade_due_s"
RESYNC_FAILURES, RESYNC_VERDICT, UPGRADE_FAILURES = "resync_failures_in_a_row", "resync_verdict", "upgrade_failures_in_a_row"
LAST_RESYNC, LAST_UPGRADE, TIMERS_FROM = "last_resync_s", "last_upgrade_s", "timers_from_s"
DUE_SLACK_S = 0.5  # a timer due this close to a pass is that pass's (the driver's clock adds in floats)


def _is_due(at: float | None, now: float) -> bool:
    return at is not None and at <= now + DUE_SLACK_S


def _set_timer(phone, name: str, delay_s: float | None) -> None:
    """Start the timer ``name`` to go off in ``delay_s``; None: it is off."""
    ram = phone.ram()
    if delay_s is None:
        ram.pop(name, None)
    else:
        ram[name] = phone.now + delay_s


def _next_timer(phone) -> float | None:
    """Seconds to the sooner of the resync's and the upgrade's timers; None: both off."""
    ram = phone.ram()
    due = [ram[name] for name in (RESYNC_DUE, UPGRADE_DUE) if name in ram]
    return max(0.0, min(due) - phone.now) if due else None


def _upgrade_retry_s(phone, *, failed: bool) -> float | None:
    """After an upgrade whose download failed: ``Upgrade_Error_Retry_Delay``, a schedule
    as ``Resync_Error_Retry_Delay`` is, its element for this many upgrade failures in a
    row (kept in RAM: a boot starts over); None otherwise, or when it is 0. The upgrade's
    own timer: a pass it alone starts begins with the upgrade (provision)."""
    ram = phone.ram()
    if not failed:
        ram.pop(UPGRADE_FAILURES, None)
        return None
    failures = ram[UPGRADE_FAILURES] = ram.get(UPGRADE_FAILURES, 0) + 1
    delay = schedule_delay_s(phone, setting(phone, "Upgrade_Error_Retry_Delay"), failures - 1)
    if delay is not None:
        phone.note(f"Upgrade_Error_Retry_Delay: the upgrade is tried again in {delay:.0f}s "
                   f"(failure {failures} in a row)")
    return delay


# --- when to resync again ----------------------------------------------------------------------

# Resync_Periodic and Resync_Error_Retry_Delay: a delay in seconds, or a schedule such as
# "1800+300,3600+600,7200+900": one element for each use in a row, the last repeated for
# ever; "+R" adds a random extra delay of up to R seconds (the provisioning guide's
# "Configurable Schedules").
_SCHEDULE_ELEMENT = re.compile(r"\s*([0-9]+)\s*(?:\+\s*([0-9]+))?\s*")


def schedule_delay_s(phone, text: str, index: int) -> float | None:
    """The schedule's delay for its ``index``-th use in a row (0: the first), its random
    part drawn from the phone's generator; None when it is 0 (the timer is off) or does
    not read."""
    elements = []
    for part in text.split(","):
        match = _SCHEDULE_ELEMENT.fullmatch(part)
        if match is None:
            return None
        elements.append((int(match.group(1)), int(match.group(2) or 0)))
    delay, extra = elements[min(index, len(elements) - 1)]
    if delay == 0:
        return None
    return float(delay) + (phone.rng.uniform(0, extra) if extra else 0.0)


def next_check_s(phone, *, ok: bool, behaviour: CiscoBehaviour = DEFAULT_BEHAVIOUR) -> float | None:
    """After a good resync: the next ``Resync_At`` (plus up to ``Resync_At_Random_Delay``)
    when it is set, and then ``Resync_Periodic`` is ignored, as the SPA and MPP guides say;
    else ``Resync_Periodic`` seconds. After a failed one: ``Resync_Error_Retry_Delay``, the
    schedule's element for this many failures in a row. 0 turns a timer off."""
    if not ok:  # the element for the failures in a row so far, this one counted (RAM: a boot starts over)
        failures = (phone.vendor_ram or {}).get(RESYNC_FAILURES, 1)
        return schedule_delay_s(phone, setting(phone, "Resync_Error_Retry_Delay"), max(0, failures - 1))
    if _resync_at(phone) is not None:
        return _next_resync_at(phone, behaviour)
    # How a list of periodic delays moves on is not said: its first element (unverified).
    return schedule_delay_s(phone, setting(phone, "Resync_Periodic"), 0)


def _resync_at(phone) -> int | None:
    """``Resync_At`` (HHmm or HH:mm) as seconds after local midnight; None when it is not
    set or is not a time of day (then it is as if not provisioned)."""
    match = re.fullmatch(r"(\d{1,2}):?(\d{2})", setting(phone, "Resync_At").strip())
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        return None
    return int(match.group(1)) * 3600 + int(match.group(2)) * 60


def _next_resync_at(phone, behaviour: CiscoBehaviour) -> float | None:
    start = _resync_at(phone)
    if start is None:
        return None
    # Each phone resyncs at its own moment in the random delay, once a day.
    # Resync_At is local time: the lab's clock moved by Time_Zone ("GMT-05:00").
    lab_now = behaviour.clock_start_s + phone.now
    zone = phone_zone(phone)
    delay = parse_int(setting(phone, "Resync_At_Random_Delay"), 0)
    wait = next_window_moment_s(phone, zone.local_s(lab_now), start, delay)
    return None if wait is None else zone.wait_s(lab_now, wait)


# A pass that changes one of these notes what the phone's clock keeps.
CLOCK_KEYS = frozenset({"Time_Zone", "Ignore_DHCP_Time_Offset", "Daylight_Saving_Time_Enable",
                        "Daylight_Saving_Time_Rule", "Resync_At"})


def phone_zone(phone) -> Zone:
    """:func:`standard_offset` and, with ``Daylight_Saving_Time_Enable``,
    ``Daylight_Saving_Time_Rule``'s summer time."""
    return _zone(standard_offset(phone)[0], is_yes(setting(phone, "Daylight_Saving_Time_Enable")),
                 setting(phone, "Daylight_Saving_Time_Rule"))


def standard_offset(phone) -> tuple[int, str]:
    """The phone's standard offset and where it comes from in words: the lease's option 2
    with ``Ignore_DHCP_Time_Offset`` No, else ``Time_Zone``, else the factory ``GMT-08:00``."""
    dhcp_offset_s = None
    if not is_yes(setting(phone, "Ignore_DHCP_Time_Offset")) and phone.lease is not None:
        dhcp_offset_s = dhcp_time_offset_s(phone.lease.options)
    return local_time.standard_offset("Time_Zone", phone.flash.settings.get("Time_Zone"), DEFAULTS["Time_Zone"],
                                      dhcp_offset_s, "Ignore_DHCP_Time_Offset No")


def describe_clock(phone) -> str:
    """What the phone's clock keeps, for its timeline: ``clock GMT-05:00: summer time +60 min``."""
    return f"clock {standard_offset(phone)[1]}: {summer_words(phone_zone(phone))}"


@functools.lru_cache(maxsize=1024)
def _zone(standard_s: int, summer: bool, rule: str) -> Zone:
    if not summer:
        return Zone(standard_s)
    fields = dict(part.strip().partition("=")[::2] for part in rule.split(";") if "=" in part)
    save = clock_offset_s(fields.get("save", "1"), max_hours=99)
    return zone_from(standard_s, _dst_day(fields.get("start", "")), _dst_day(fields.get("end", "")),
                     0 if save is None else save)


def _dst_day(text: str) -> DayRule | None:
    """``month/day/weekday[/HH[:mm[:ss]]]``: weekday 0, the date ``day``; weekday 1-7
    (Monday-Sunday), that weekday on or after ``day``, or with a negative day on or before
    it, counted from the month's end (-1 its last day: ``10/-1/7`` the last Sunday)."""
    parts = text.strip().split("/")
    if len(parts) not in (3, 4) or not all(re.fullmatch(r"-?[0-9]{1,2}", part.strip()) for part in parts[:3]):
        return None
    month, day, weekday = (int(part) for part in parts[:3])
    at = clock_offset_s(parts[3], max_hours=99) if len(parts) == 4 else 0
    if not 1 <= month <= 12 or not 1 <= abs(day) <= 31 or not 0 <= weekday <= 7 or at is None:
        return None
    if weekday == 0:
        return DayRule(month, day, None, at) if day > 0 else None
    return DayRule(month, day if day > 0 else day - 6, weekday % 7, at)  # on or before d: on or after d-6

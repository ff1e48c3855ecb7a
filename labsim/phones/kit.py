"""The vendor kit: what a vendor profile is, and the steps every vendor shares.

A vendor profile is one module in ``labsim/phones/`` that reads like the vendor's manual.
It fills in :class:`VendorProfile` (a Protocol: the module itself is the profile) and
takes what it shares with the other vendors from here, so it holds only what is that
vendor's: its DHCP identity, its User-Agent, where it looks for its server, which files
it asks for in which order, what makes it reboot, when it provisions again.

How to add a vendor is in docs/architecture.md ("Adding a vendor").
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any, Callable, Protocol

from labsim.phones.dhcp_client import DhcpIdentity
from labsim.phones.events import Credentials, Download, ProvisioningOutcome
from labsim.phones.packed import SharedValues
from labsim.phones.phone import Procedure, Wait
from labsim.wire.numbers import is_number
from labsim.wire.provisioning_url import ServerUrl, bare_mac  # bare_mac: the profiles import it from here too

class VendorProfile(Protocol):
    """What every vendor profile module provides. ``behaviour`` is the vendor's frozen
    dataclass of settings its manual leaves open (a fleet may override them in the
    scenario, ``behaviour:``); every function that takes it defaults to
    ``DEFAULT_BEHAVIOUR``, so the module alone is a profile with the vendor's defaults."""

    VENDOR: str  # the name a scenario's fleet uses
    MODELS: tuple[str, ...]
    MAC_PREFIXES: tuple[str, ...]
    DEFAULT_BEHAVIOUR: Any
    # The stage names its procedure times downloads as ("common_cfg", "mac_cfg" ...): what
    # a scenario's ``stage.<name>.<stat>`` expectations may name for its phones (besides
    # every phone's PHONE_STAGES). A vendor whose files name more stages (Avaya's model
    # file sections) also provides ``stages_in_files(model, copies_of)``: the names the
    # scenario's copies of those files give (``copies_of(file_name)``: their texts), or
    # None when it holds no copy, and then no name beyond STAGES is refused.
    STAGES: tuple[str, ...]

    def default_firmware(self, model: str) -> str: ...

    def dhcp_identity(self, phone, behaviour: Any = ...) -> DhcpIdentity: ...

    def user_agent(self, phone, behaviour: Any = ...) -> str: ...

    def check_sync_action(self, phone, reboot_requested: bool, behaviour: Any = ...) -> str:
        """What a SIP NOTIFY ``Event: check-sync`` does: "ignore", "resync" or "reboot"."""

    def provision(self, phone, behaviour: Any = ...) -> Procedure: ...

    # Optional: ``dns_client(phone, behaviour) -> phones.dns_client.PhoneDns``, the DNS
    # timing the vendor documents, read from flash at each boot (Yealink's); without it
    # the phone asks as labsim's default does.


class BoundProfile:
    """A vendor profile with one fleet's behaviour settings: what the phone holds as its
    ``profile`` and calls with the phone alone."""

    def __init__(self, vendor: VendorProfile, behaviour):
        self.vendor = vendor
        self.behaviour = behaviour
        self.VENDOR = vendor.VENDOR
        self.MODELS = vendor.MODELS
        # Asked once a download and once a pass: the vendor's own function with the
        # behaviour bound, with no method call in between.
        self.user_agent: Callable[[Any], str] = partial(vendor.user_agent, behaviour=behaviour)
        self.provision: Callable[[Any], Procedure] = partial(vendor.provision, behaviour=behaviour)
        # Optional: a vendor whose guide documents its DNS timing (phones.dns_client).
        made_by = getattr(vendor, "dns_client", None)
        self.dns_client: Callable[[Any], Any] | None = partial(made_by, behaviour=behaviour) if made_by else None

    def default_firmware(self, model: str) -> str:
        return self.vendor.default_firmware(model)

    def dhcp_identity(self, phone) -> DhcpIdentity:
        return self.vendor.dhcp_identity(phone, self.behaviour)

    def check_sync_action(self, phone, reboot_requested: bool) -> str:
        return self.vendor.check_sync_action(phone, reboot_requested, self.behaviour)


# --- downloading ---------------------------------------------------------------------------


def download(phone, url: str, name: str, credentials: Credentials | None, stage: str,
             attempts: int = 1, retry_delay_s: float = 0.0, optional: bool = False):
    """A file, asked for up to ``attempts`` times ``retry_delay_s`` apart; its body, or
    None when it never came (each miss is noted on the phone's timeline). ``optional``:
    the phone only looks for it (``Download.optional``)."""
    for attempt in range(1, attempts + 1):
        result = yield _download_requests((url, credentials, stage, optional))
        if result.ok:
            phone.note(f"downloaded {name} ({len(result.body)} bytes)")
            return result.body
        if optional and result.status == "not_found" and attempt == attempts:
            # Not an error, and not "skipped": the phone goes on as designed (one line,
            # not two, on each of a Yealink's passes for each of its two boot files).
            phone.note(f"{name}: none on the server, and the phone only looks for it ({result.detail})")
            return None
        phone.note(f"{name}: {result.status} {result.detail} (attempt {attempt}/{attempts})")
        if attempt < attempts:
            yield Wait(retry_delay_s)
    phone.note(f"skipped {name}")
    return None


# A Download is frozen: one per (url, credentials, stage, optional) serves every pass that asks
# for that file (a frozen dataclass costs ~1 µs to make, a lookup here ~0.05). Sized for
# each phone's own files in fleets of ~10,000.
_download_requests = SharedValues(1 << 15, lambda key: Download(*key)).one


def url_credentials(server: ServerUrl, otherwise: Credentials | None = None) -> Credentials | None:
    """The login a server URL carries (``ftp://user:pass@host/``), else ``otherwise``
    (what the vendor takes from its settings or its factory default)."""
    if server.user is not None:
        return Credentials(server.user, server.password or "")
    return otherwise


# --- reading values --------------------------------------------------------------------------


def parse_int(text: str | None, default):
    """A setting's non-negative whole number, or ``default`` when it is absent or not one."""
    text = (text or "").strip()
    return int(text) if is_number(text) else default


_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")


def clock_s(text: str | None) -> int | None:
    """``"HH:MM"`` as seconds after midnight; None when it is no time of day."""
    match = _CLOCK.match(text or "")
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        return None
    return int(match.group(1)) * 3600 + int(match.group(2)) * 60


DAY_S = 86400
SERVED_S = 1.0  # a window's moment closer than this counts as come: the pass running now serves it


def next_window_moment_s(phone, now_s: float, start_s: float, span_s: float, days=range(7), *,
                         on_day=None, horizon_days: int = 8) -> float | None:
    """Seconds from ``now_s`` (the phone's wall clock: seconds after the Sunday 00:00 its
    week counts from) to the phone's own moment in the next provisioning window that
    opens ``start_s`` after midnight and lasts ``span_s``, on a day of the week in
    ``days`` (0 Sunday) for which ``on_day(day)``, if given, holds (``day`` counted from
    that Sunday), within ``horizon_days``; None when no day is.

    The phone draws its moment in a window once (``Phone.window_draw``) and keeps it until
    that moment has come: a window is served by a pass at the phone's moment, whatever
    other passes (a repeat timer's) fall into the window before it. Drawing again at
    every pass would pull a fleet's repeat timers towards the window's start, a little
    more each day (the earliest of several draws wins), a stampede labsim would have
    made up."""
    today = int(now_s // DAY_S)
    first = today - 1  # yesterday's window may last past midnight
    drawn = phone.window_draw
    if drawn is not None and drawn[0] > first:
        first = drawn[0]  # a moment is drawn for a day only once the earlier days' have come
    for day in range(first, today + horizon_days):
        if day % 7 not in days or day * DAY_S + start_s + span_s <= now_s + SERVED_S:
            continue  # no window that day, or it is over
        if on_day is not None and not on_day(day):
            continue
        moment = day * DAY_S + start_s + span_s * _window_fraction(phone, day)
        if moment > now_s + SERVED_S:
            return moment - now_s
    return None


def _window_fraction(phone, day: int) -> float:
    drawn = phone.window_draw
    if drawn is None or drawn[0] != day:
        drawn = phone.window_draw = (day, phone.rng.random())
    return drawn[1]


def next_mac_day_moment_s(phone, now_s: float, start_s: float, span_s: float, period_days: int,
                          offset_key: str) -> float:
    """Seconds from ``now_s`` (the phone's wall clock, as ``next_window_moment_s`` reads
    it) to the phone's next moment in a window that opens ``start_s`` after midnight and
    lasts ``span_s``, on the day of every ``period_days``-day period that the phone's MAC
    gives: the vendors' "random day based on the phone's MAC address", which "does not
    change with a reboot", at a moment in the window "calculated again with every reboot"
    (Polycom's random polling, Yealink's flexible auto provisioning). The moment is drawn
    at the boot's first use and kept in ``Phone.vendor_ram[offset_key]``. (unverified) Which
    day a MAC gives and where the periods start: the MAC's number modulo the days, counted
    from the calendar's origin (the Sunday ``now_s`` counts from)."""
    ram = phone.ram()
    if offset_key not in ram:
        ram[offset_key] = phone.rng.uniform(0, span_s)
    moment_of_day = start_s + ram[offset_key]
    slot = int(bare_mac(phone.mac), 16) % period_days
    today = int(now_s // DAY_S)
    for day in range(today - 1, today + period_days + 1):  # yesterday's window may reach past midnight
        moment = day * DAY_S + moment_of_day
        if day % period_days == slot and moment > now_s + SERVED_S:
            return moment - now_s
    raise AssertionError("a period of days always has its day")  # the loop spans a whole period


def option_text(payload: bytes | None) -> str:
    """A DHCP option's value as text, without the NULs and blanks servers pad it with."""
    return payload.decode("latin-1").strip("\x00 \t\r\n") if payload else ""


# --- the end of a pass -----------------------------------------------------------------------


def pass_outcome(changed: list[str], *, noun: str, reboot_for: str | None = None, restart_word: str = "reboot",
                 next_check_s: float | None = None) -> ProvisioningOutcome:
    """How a pass that read its files ended: ``applied`` (N changed, and a reboot when
    ``reboot_for`` names why) or ``unchanged``. ``noun`` is what the vendor's manual calls
    one value ("setting", "parameter", "P-value")."""
    if reboot_for:
        return ProvisioningOutcome("applied", reboot=True, changed_keys=changed,
                                   reason=f"{applied_summary(changed, noun)}; {restart_word} for {reboot_for}")
    return ProvisioningOutcome("applied" if changed else "unchanged", changed_keys=changed,
                               reason=applied_summary(changed, noun), next_check_s=next_check_s)


def applied_summary(changed: list[str], noun: str) -> str:
    return f"applied {len(changed)} changed {noun}s" if changed else f"no {noun} changed"

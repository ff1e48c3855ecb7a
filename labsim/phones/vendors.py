"""The vendor profiles a fleet can name. Each is one module that fills in
:class:`labsim.phones.kit.VendorProfile`; ``profile_for`` binds a fleet's behaviour
settings into it."""

from __future__ import annotations

import dataclasses

from labsim.phones import avaya, cisco, grandstream, polycom, snom, yealink
from labsim.phones.kit import BoundProfile, VendorProfile
from labsim.phones.phone import PHONE_STAGES

VENDORS: dict[str, VendorProfile] = {
    vendor.VENDOR: vendor for vendor in (yealink, avaya, polycom, cisco, grandstream, snom)
}


def timed_stages(vendor: str) -> tuple[str, ...]:
    """Every stage name a phone of ``vendor`` may time: every phone's, then the vendor's."""
    return (*PHONE_STAGES, *VENDORS[vendor].STAGES)


def behaviour_for(vendor: str, overrides: dict):
    """The vendor's behaviour dataclass with ``overrides``; ValueError names bad knobs."""
    default = VENDORS[vendor].DEFAULT_BEHAVIOUR
    fields = {f.name: f for f in dataclasses.fields(default)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown {vendor} behaviour {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}")
    for name, value in overrides.items():
        expected = type(getattr(default, name))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ValueError(f"{vendor} behaviour {name}: expected {expected.__name__}, got {value!r}")
    return dataclasses.replace(default, **overrides)


# The behaviour knobs that say where on the calendar a run starts (seconds after
# local_time.CALENDAR_ORIGIN_S): a scenario's clock_starts sets them, a fleet's behaviour may
# still name its own.
CALENDAR_KNOBS = ("clock_start_s", "week_starts_s")


def calendar_behaviour(vendor: str, clock_start_s: float) -> dict:
    """The behaviour overrides that start ``vendor``'s phones' clocks ``clock_start_s``
    after the calendar's origin (none for a vendor whose phones keep no clock)."""
    fields = {f.name for f in dataclasses.fields(VENDORS[vendor].DEFAULT_BEHAVIOUR)}
    return {name: clock_start_s for name in CALENDAR_KNOBS if name in fields}


def profile_for(vendor: str, overrides: dict | None = None) -> BoundProfile:
    return BoundProfile(VENDORS[vendor], behaviour_for(vendor, overrides or {}))

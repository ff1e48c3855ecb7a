"""Many phones: MAC ranges, models, and when each one powers on."""

from __future__ import annotations

import random
from dataclasses import dataclass

from labsim.phones.flash import Flash
from labsim.phones.phone import Phone
from labsim.phones.phone_random import PhoneRandom
from labsim.phones.vendors import calendar_behaviour, profile_for
from labsim.scenario.calendar_start import clock_start_s


@dataclass(slots=True)
class FleetMember:
    fleet: str
    vendor: str
    phone: Phone
    power_on_at: float  # seconds after the run starts
    order: int = 0  # place in the whole scenario's phone list (a merged report keeps it)


def mac_range(first_mac: str, count: int) -> list[str]:
    """``count`` consecutive MACs from ``first_mac``, in lowercase colon form."""
    start = int(first_mac.replace(":", "").replace("-", ""), 16)
    if start + count > 1 << 48:
        raise ValueError(f"{count} MACs from {first_mac} run past ff:ff:ff:ff:ff:ff")
    return [_mac_text(start + offset) for offset in range(count)]


def fleet_macs(scenario) -> list[str]:
    """Every phone's MAC, in the order the scenario's fleets give them."""
    return [mac for fleet in scenario.fleets for mac in mac_range(fleet.first_mac, fleet.total)]


def fleet_models(fleet) -> list[str]:
    """Each phone's model in MAC order: a fleet of mixed models is one block of MACs a model."""
    return [model for model, count in fleet.model_counts().items() for _ in range(count)]


def fleet_devices(scenario) -> dict[str, tuple[str, str]]:
    """Every phone's MAC -> (vendor, model): which device a MAC is in this scenario
    (``--state-dir`` gives saved flash only to the same device)."""
    return {mac: (fleet.vendor, model) for fleet in scenario.fleets
            for mac, model in zip(mac_range(fleet.first_mac, fleet.total), fleet_models(fleet))}


def _mac_text(value: int) -> str:
    raw = f"{value:012x}"
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


def boot_offsets(boot, count: int, rng: random.Random) -> list[float]:
    """When each of ``count`` phones powers on, in seconds from the fleet's start."""
    if boot.pattern == "storm":
        if boot.random_delay_s <= 0:
            return [0.0] * count
        return [rng.uniform(0, boot.random_delay_s) for _ in range(count)]
    if boot.pattern == "ramp":
        return [index / boot.per_second for index in range(count)]
    if boot.pattern == "poisson":
        offsets, moment = [], 0.0
        for _ in range(count):
            offsets.append(moment)
            moment += rng.expovariate(boot.per_second)
        return offsets
    raise ValueError(f"unknown boot pattern {boot.pattern!r}")


def preloaded_flash(fleet, profile, model: str) -> Flash:
    firmware = fleet.firmware or profile.default_firmware(model)
    if fleet.flash is None:
        return Flash(firmware=firmware)
    return Flash(
        settings=dict(fleet.flash.settings),
        file_md5=dict(fleet.flash.file_md5),
        firmware=fleet.flash.firmware or firmware,
        provisioning_url=fleet.flash.provisioning_url,
    )


def fleet_name(fleet, index: int) -> str:
    return fleet.name or f"fleet{index + 1}"


def build_fleets(scenario, saved_flash: dict[str, Flash] | None = None, shard=None) -> list[FleetMember]:
    """Every phone of every fleet, or only those of ``shard`` (``labsim.fleet.shard``).
    ``saved_flash`` (MAC -> Flash, from ``--state-dir``) replaces the scenario's starting
    flash for the phones it names."""
    members: list[FleetMember] = []
    seen_macs: set[str] = set()
    saved_flash = saved_flash or {}
    order = -1
    clock_start = clock_start_s(scenario.clock_starts)
    for index, fleet in enumerate(scenario.fleets):
        name = fleet_name(fleet, index)
        profile = profile_for(fleet.vendor, {**calendar_behaviour(fleet.vendor, clock_start), **fleet.behaviour})
        models = fleet_models(fleet)
        macs = mac_range(fleet.first_mac, len(models))
        schedule_rng = random.Random(f"{scenario.seed}:{name}:boot")
        offsets = boot_offsets(fleet.boot, len(models), schedule_rng)
        for position, (mac, model, offset) in enumerate(zip(macs, models, offsets)):
            if mac in seen_macs:
                raise ValueError(f"fleet {name!r}: MAC {mac} is already used by another fleet")
            seen_macs.add(mac)
            order += 1
            if shard is not None and not shard.holds(position):
                continue
            phone = Phone(
                mac, model, profile,
                rng=PhoneRandom(f"{scenario.seed}:{mac}"),
                boot_time_s=fleet.boot_time_s,
                flash=saved_flash.get(mac) or preloaded_flash(fleet, profile, model),
                until=fleet.until,
            )
            members.append(FleetMember(name, fleet.vendor, phone, fleet.start_at_s + offset, order))
    return members


def scale_scenario(scenario, phones: int):
    """The scenario with its fleets scaled to about ``phones`` phones in all (at least one
    per model), keeping each fleet's share and model mix: ``labsim run --phones N``."""
    total = sum(fleet.total for fleet in scenario.fleets)
    fleets = []
    for fleet in scenario.fleets:
        counts = {model: max(1, round(count * phones / total)) for model, count in fleet.model_counts().items()}
        update = {"models": counts, "model": None, "count": None}
        fleets.append(fleet.model_copy(update=update))
    return scenario.model_copy(update={"fleets": fleets})

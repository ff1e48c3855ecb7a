"""The shard rule: which phones shard ``i`` of ``N`` runs.

Every process computes it alike, from the scenario alone (like k6's execution segments):
within each fleet, the phone at position ``p`` (0-based, in the fleet's MAC order)
belongs to shard ``p % N``. Interleaving, rather than cutting each fleet into ``N``
contiguous runs, gives every shard the same share of every fleet's arrival schedule:
a ramp of 100 phones/s becomes ``N`` ramps of 100/N phones/s that together are the
same storm, and a model mix stays a mix in every shard.

A phone's MAC, model, power-on time and random stream do not depend on ``N`` (they
come from its fleet position and the scenario seed), so shard ``i`` of ``N`` runs
exactly the phones a single process would run at those positions.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from labsim.wire.numbers import is_number


class BadShard(ValueError):
    pass


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int

    def __post_init__(self):
        if self.count < 1:
            raise BadShard(f"a shard count must be at least 1, not {self.count}")
        if not 0 <= self.index < self.count:
            raise BadShard(f"shard index {self.index} is outside 0..{self.count - 1}")

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"i/N"`` (``--shard 0/4``; ``i`` counts from 0, as JOB_COMPLETION_INDEX does)."""
        index, slash, count = text.partition("/")
        if not slash or not is_number(index.strip()) or not is_number(count.strip()):
            raise BadShard(f"{text!r}: expected INDEX/COUNT, e.g. 0/4 (INDEX from 0 to COUNT-1)")
        return cls(int(index), int(count))

    def holds(self, position: int) -> bool:
        """Whether the phone at ``position`` within its fleet is this shard's."""
        return position % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def label(self) -> str:
        """A file-name-safe name: ``shard-0-of-4``."""
        return f"shard-{self.index}-of-{self.count}"


def relay_address_for(base: str, shard: Shard) -> str:
    """Each shard relays DHCP from its own address (a DHCP server answers the relay at
    ``giaddr``, so two processes cannot share one): the scenario's ``relay_address``
    plus the shard index (127.0.0.2, 127.0.0.3, ... on one host)."""
    address = ipaddress.IPv4Address(base) + shard.index
    if not address.is_loopback:
        raise BadShard(f"shard {shard}: relay address {address} ({base} + {shard.index}) leaves 127.0.0.0/8")
    return str(address)


@dataclass(slots=True)
class RosterPhone:
    """A phone as the timeline's selection sees it, without running it."""

    mac: str
    model: str


@dataclass(slots=True)
class RosterEntry:
    fleet: str
    phone: RosterPhone
    shard: int  # the index of the shard that runs it
    vendor: str = ""
    order: int = 0  # place in the whole scenario's phone list (FleetMember.order)


def roster(scenario, shard_count: int) -> list[RosterEntry]:
    """Every phone of the scenario, in the order a single process builds them, with the
    shard that holds it: what a coordinator needs to pick phones (the timeline's
    ``power_cycle: 10%``) exactly as one process would, without building any."""
    from labsim.fleet.fleet import fleet_name, mac_range

    entries = []
    for index, fleet in enumerate(scenario.fleets):
        name = fleet_name(fleet, index)
        models = [model for model, count in fleet.model_counts().items() for _ in range(count)]
        for position, (mac, model) in enumerate(zip(mac_range(fleet.first_mac, len(models)), models)):
            entries.append(RosterEntry(name, RosterPhone(mac, model), position % shard_count, fleet.vendor,
                                       len(entries)))
    return entries


def wall_time(text: str) -> float:
    """``--start-at``: seconds since the epoch, or an ISO 8601 time (``2026-12-05T00:10:00Z``)."""
    from datetime import datetime, timezone

    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--start-at {text!r}: expected an ISO 8601 time (2026-12-05T00:10:00Z) "
                         "or seconds since the epoch") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


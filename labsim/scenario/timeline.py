"""The scenario's ``timeline:``: actions at a time or when a condition first holds
(power cycles, file edits, faults, services stopped and started, DHCP options).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, ValidationInfo, field_validator, model_validator

from labsim.phones.local_time import CALENDAR_ORIGIN_S
from labsim.scenario.calendar_start import is_calendar_moment, parse_start, start_text
from labsim.scenario.durations import parse_moment
from labsim.scenario.expectations import ConditionText
from labsim.scenario.faults import Fault
from labsim.scenario.fields import MAC_PATTERN, ModelName, Strict
from labsim.scenario.services import DhcpService
from labsim.wire import dhcp_options


class PhoneSelection(Strict):
    """Which phones an action affects: all, a count or a percentage, optionally narrowed
    to a fleet or a model, or a list of MACs. The choice is reproducible (the seed)."""

    phones: Union[Literal["all"], int, Annotated[str, Field(pattern=r"^\d+(\.\d+)?%$")]] = "all"
    fleet: str | None = None
    model: ModelName | None = None
    macs: list[str] | None = None

    @field_validator("macs")
    @classmethod
    def _macs(cls, macs):
        for mac in macs or []:
            if not MAC_PATTERN.match(mac):
                raise ValueError(f"{mac!r} is not a MAC address")
        return macs


class CheckSyncAction(PhoneSelection):
    reboot: bool = Field(False, description="send ';reboot=true' with the check-sync NOTIFY")


class EditFile(Strict):
    name: str
    set: dict[str, Any] = Field(default_factory=dict, description="key -> value (Yealink 'key = value' files)")
    remove: list[str] = Field(default_factory=list)


class ReplaceFile(Strict):
    name: str
    text: str


class BumpVersion(Strict):
    name: str = Field(description="an Avaya model file such as 1220SIP.cfg")
    section: str | None = Field(None, description="only this [SECTION] (default: every section)")


SERVICE_NAMES = ("dhcp", "tftp", "http", "ftp", "dns", "pnp")
ServiceName = Literal["dhcp", "tftp", "http", "ftp", "dns", "pnp"]


class Action(Strict):
    """Exactly one of these keys."""

    edit_file: EditFile | None = None
    replace_file: ReplaceFile | None = None
    delete_file: str | None = None
    bump_version: BumpVersion | None = None
    stop_service: ServiceName | None = None
    start_service: ServiceName | None = None
    restart_service: ServiceName | None = None
    add_fault: Fault | None = None
    remove_fault: str | None = Field(None, description="a fault's name, or 'all'")
    power_cycle: PhoneSelection | None = None
    factory_reset: PhoneSelection | None = None
    check_sync: CheckSyncAction | None = None
    set_dhcp_option: dict[Union[int, str], Any] | None = None
    remove_dhcp_option: list[Union[int, str]] | None = None

    @field_validator("set_dhcp_option")
    @classmethod
    def _options_encode(cls, options):
        return None if options is None else DhcpService.checked_options(options)

    @field_validator("remove_dhcp_option")
    @classmethod
    def _options_named(cls, keys):
        for key in keys or []:
            dhcp_options.option_code(key)
        return keys

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"an action has exactly one of: {', '.join(type(self).model_fields)}"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> str:
        return next(name for name in type(self).model_fields if getattr(self, name) is not None)

    @property
    def argument(self):
        return getattr(self, self.kind)


class TimelineEntry(Strict):
    at: float | None = Field(
        None, description="when, after the fleet starts: seconds, or 90s, 15m, 12h, 6d, 8d6h (as duration); "
        "or a date and time in UTC on the run's calendar (2026-03-29 01:00, from clock_starts)",
        json_schema_extra={"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}]})
    when: ConditionText | None = Field(None, description="a condition in the expectation grammar, e.g. "
                                       "'phones.ready >= 50%' or 'service.http.requests_per_s.max > 200' (the "
                                       "requests so far; looked at twice a second)")
    do: Union[Action, list[Action]]
    name: str | None = None

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, value, info: ValidationInfo):
        """A duration after the start, or a calendar moment made one: seconds after the
        scenario's clock_starts (the loader passes it as ``context``)."""
        if value is None or not is_calendar_moment(value):
            return None if value is None else parse_moment(value)
        start = (info.context or {}).get("clock_starts")
        start = CALENDAR_ORIGIN_S if start is None else start
        after = parse_start(value) - start
        if after < 0:
            raise ValueError(f"{value} is before the run starts ({start_text(start)})")
        return after

    @model_validator(mode="after")
    def _at_or_when(self):
        if (self.at is None) == (self.when is None):
            raise ValueError("give either 'at' (seconds) or 'when' (a condition)")
        return self

    def actions(self) -> list[Action]:
        return self.do if isinstance(self.do, list) else [self.do]


def entry_label(entry) -> str:
    """How the report and events.jsonl name a timeline entry's actions: its name, else
    ``at 30s`` or ``when phones.ready == 100%``."""
    return entry.name or (f"at {entry.at:g}s" if entry.at is not None else f"when {entry.when}")


def entry_facts(entries) -> list[dict]:
    """What the report needs of the scenario's timeline entries to tell which never ran
    (``entries_not_run``): plain data, kept in a shard's record for the merge."""
    return [{"entry": entry_label(entry), "at": entry.at, "when": entry.when} for entry in entries]

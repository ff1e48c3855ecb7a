"""The scenario's timeline: actions at a time, or when a condition first holds.

Conditions use the expectation grammar (``phones.ready >= 50%``) and are checked twice a
second. Each action that ran is logged (time, what, outcome) for the report. The
timeline touches the lab only through the ``LabControl`` the run hands it.
"""

from __future__ import annotations

import difflib
import os
import random
import re
from dataclasses import dataclass

from labsim.scenario.expectations import evaluate, parse_expectation
from labsim.scenario.timeline import entry_label
from labsim.phones.events import CheckSync, FactoryReset, PowerCycle

CONDITION_INTERVAL_S = 0.5


@dataclass
class TimelineRecord:
    t: float
    entry: str
    action: str
    outcome: str


@dataclass
class _Pending:
    index: int
    entry: object
    call: object = None
    done: bool = False


class Timeline:
    def __init__(self, entries, control, clock, epoch: float, seed: int):
        self.control = control
        self.clock = clock
        self.epoch = epoch
        self.rng = random.Random(f"{seed}:timeline")
        self.pending = [_Pending(index, entry) for index, entry in enumerate(entries)]
        self.log: list[TimelineRecord] = []
        self._ticker = None
        self._seen = None  # the control's change count at the last evaluation

    def start(self) -> None:
        for item in self.pending:
            if item.entry.at is not None:
                item.call = self.clock.callLater(item.entry.at, self._fire, item)
        if any(item.entry.when is not None for item in self.pending):
            self._ticker = self.clock.callLater(CONDITION_INTERVAL_S, self._check_conditions)

    def stop(self) -> None:
        for item in self.pending:
            if item.call is not None and item.call.active():
                item.call.cancel()
        if self._ticker is not None and self._ticker.active():
            self._ticker.cancel()

    @property
    def timed_actions_left(self) -> bool:
        """Whether a timed action is still to come (the run must not end before it)."""
        return any(not item.done and item.entry.at is not None for item in self.pending)

    def check_conditions_now(self) -> None:
        """Evaluate pending conditions at once (the run does before it ends, so that a
        condition that holds when the last phone settles still fires)."""
        if any(not item.done and item.entry.when is not None for item in self.pending):
            self._evaluate()

    def _check_conditions(self) -> None:
        # Conditions read the phones' metrics, which move when a phone changes state, and
        # the request series, which moves with each request (the control counts both among
        # its changes while a condition reads the series): with no change since the last
        # look there is nothing new to see. (A week in virtual
        # time is 1.2 million ticks; evaluating each over 10,000 phones would be hours.)
        changes = getattr(self.control, "changes", None)
        seen = changes() if changes is not None else None
        if seen is None or seen != self._seen:
            self._seen = seen
            self._evaluate()
        if any(not item.done and item.entry.when is not None for item in self.pending):
            self._ticker = self.clock.callLater(self._next_look(), self._check_conditions)

    def _next_look(self) -> float:
        """Seconds to the next tick worth running. A tick before the next call due anywhere
        sees no change (no phone can change state before it), so the next tick that runs
        is the last one before that call: the same instants as tick after tick (added up
        the same way), in the same order among the calls of an instant (none can be
        scheduled in between), without running each one."""
        now = self.clock.seconds()
        tick = now + CONDITION_INTERVAL_S
        nothing_due_before = getattr(self.control, "nothing_due_before", None)
        due = nothing_due_before() if nothing_due_before is not None else None
        if due is not None:
            while tick + CONDITION_INTERVAL_S < due:
                tick += CONDITION_INTERVAL_S
        return tick - now

    def _evaluate(self) -> None:
        checks = [(item, parse_expectation(item.entry.when)) for item in self.pending
                  if not item.done and item.entry.when is not None]
        metrics, per_phone, total = self.control.metrics({check.metric for _, check in checks})
        for item, check in checks:
            if not item.done and evaluate(check, metrics, per_phone, total).passed:
                self._fire(item)

    def _fire(self, item: _Pending) -> None:
        item.done = True
        self.run_now(item.entry.actions(), entry_label(item.entry))

    def run_now(self, actions, label: str) -> list[TimelineRecord]:
        """Carry out actions now and log them under ``label`` (the dashboard's controls
        come here too, so they are logged, reported and written to events.jsonl alike)."""
        records = []
        for action in actions:
            try:
                outcome = self._apply(action)
            except Exception as exc:  # a timeline action that cannot run is reported, not fatal
                outcome = f"error: {exc}"
            records.append(TimelineRecord(self.clock.seconds() - self.epoch, label, action.kind, outcome))
            self.log.append(records[-1])
        self.control.timeline_changed()
        return records

    # --- actions --------------------------------------------------------------------------

    def _apply(self, action) -> str:
        kind, argument = action.kind, action.argument
        control = self.control
        if kind == "edit_file":
            return edit_key_value_file(existing_file(control.file_path(argument.name), argument.name),
                                       argument.set, argument.remove)
        if kind == "replace_file":
            _write(control.file_path(argument.name), argument.text.encode())
            return f"replaced {argument.name}"
        if kind == "delete_file":
            os.remove(existing_file(control.file_path(argument), argument))
            return f"deleted {argument}"
        if kind == "bump_version":
            return bump_avaya_version(existing_file(control.file_path(argument.name), argument.name),
                                      argument.section)
        if kind in ("stop_service", "start_service", "restart_service"):
            return control.service(kind.split("_")[0], argument)
        if kind == "add_fault":
            return control.add_fault(argument)
        if kind == "remove_fault":
            return control.remove_fault(argument)
        if kind in ("power_cycle", "factory_reset", "check_sync"):
            phones = self.select(argument)
            event = {"power_cycle": PowerCycle(), "factory_reset": FactoryReset()}.get(kind) or CheckSync(argument.reboot)
            for driver in phones:
                driver.deliver(event)
            return f"{kind.replace('_', ' ')}: {len(phones)} phone(s)"
        if kind == "set_dhcp_option":
            return control.set_dhcp_options(argument)
        if kind == "remove_dhcp_option":
            return control.remove_dhcp_options(argument)
        raise ValueError(f"unknown action {kind}")

    def select(self, selection) -> list:
        drivers = [d for d in self.control.drivers()
                   if (selection.fleet is None or d.fleet == selection.fleet)
                   and (selection.model is None or d.phone.model == selection.model)
                   and (selection.macs is None or d.phone.mac in {m.lower().replace("-", ":") for m in selection.macs})]
        wanted = selection.phones
        if wanted == "all":
            return drivers
        count = int(wanted) if isinstance(wanted, int) else round(len(drivers) * float(wanted[:-1]) / 100)
        return self.rng.sample(drivers, min(count, len(drivers)))


def existing_file(path: str, name: str) -> str:
    """``path`` if it is a file; else ValueError naming ``name`` as the scenario wrote it
    and the provisioning files it may have meant (the lab's folder is a scratch copy whose
    path says nothing to the user)."""
    if os.path.isfile(path):
        return path
    folder = os.path.dirname(path)
    try:
        present = sorted(os.listdir(folder))
    except OSError:
        present = []
    close = difflib.get_close_matches(os.path.basename(name), present, n=3, cutoff=0.8)
    raise ValueError(f"no file {name!r} among the lab's provisioning files"
                     + (f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""))


def condition_metric(entry) -> str:
    """The metric a timeline entry's ``when:`` reads."""
    return parse_expectation(entry.when).metric


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = path + ".labsim-tmp"
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)  # a server never serves half a file


def edit_key_value_file(path: str, settings: dict, remove: list[str]) -> str:
    """Set and remove ``key = value`` lines in a Yealink-style file, keeping the rest."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    remaining = {str(key): _text(value) for key, value in settings.items()}
    gone = set(remove)
    out = []
    for line in lines:
        key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") else None
        if key in gone:
            continue
        if key in remaining:
            out.append(f"{key} = {remaining.pop(key)}")
        else:
            out.append(line)
    out += [f"{key} = {value}" for key, value in remaining.items()]
    _write(path, ("\n".join(out) + "\n").encode())
    return f"edited {os.path.basename(path)}: set {len(settings)}, removed {len(gone)}"


def _text(value) -> str:
    if value is None or value == "":
        return "%NULL%"
    return str(value).lower() if isinstance(value, bool) else str(value)


_VERSION_LINE = re.compile(r"^(\s*VERSION\s+)(\d+)(\s*)$", re.IGNORECASE)


def bump_avaya_version(path: str, section: str | None) -> str:
    """Raise the VERSION of every section (or one) of an Avaya model file by one."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    current, bumped = None, []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1].strip()
            continue
        match = _VERSION_LINE.match(line)
        if match and (section is None or (current or "").upper() == section.upper()):
            number = match.group(2)
            lines[index] = f"{match.group(1)}{int(number) + 1:0{len(number)}d}{match.group(3)}"
            bumped.append(current or "?")
    _write(path, ("\n".join(lines) + "\n").encode())
    return f"bumped VERSION in {', '.join(bumped) or 'no section'}"

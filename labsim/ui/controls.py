"""Trainer controls: an action from the page, checked like a scenario file, then run by
the timeline's own code.

The page sends the text of a timeline entry's ``do:`` (YAML or JSON, one action or a
list), e.g. ``{set_dhcp_option: {66: "http://127.0.0.1:8008/"}}``. It is parsed with the
scenario loader's YAML reader and validated by the scenario schema's ``Action``, so a
mistake gets the same message a scenario file gets, at ``dashboard:LINE:COLUMN: do.FIELD``.
Then every action is checked against the running lab (the file exists, the service is
in the scenario, the fault or fleet has that name) before any of them runs: a request
that fails any check changes nothing. The actions run through ``Timeline.run_now``, so
they are logged in the report's ``timeline`` and in ``events.jsonl`` as the scenario's
own actions are, under the entry name ``dashboard``.
"""

from __future__ import annotations

import os

from pydantic import ValidationError

from labsim.scenario import loader
from labsim.scenario.loader import Problem
from labsim.scenario.schema import TimelineEntry
from labsim.scenario.suggest import unknown
from labsim.scenario.yaml_marks import YamlError, load_marked

SOURCE = "dashboard"
MAX_ACTION_TEXT = 256 * 1024


class ControlError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_actions(text: str) -> list:
    """The actions in ``text`` (a ``do:`` value), or ControlError with every problem."""
    if len(text) > MAX_ACTION_TEXT:
        raise ControlError([f"{SOURCE}: the action text is over {MAX_ACTION_TEXT // 1024} KiB"])
    try:
        doc = load_marked(text)
    except YamlError as exc:
        raise ControlError([str(Problem(SOURCE, exc.mark, "do", exc.message))]) from None
    if doc.problems:
        raise ControlError([str(Problem(SOURCE, e.mark, loader.field_text(("do", *e.path)), e.message))
                            for e in doc.problems])
    if doc.data is None:
        raise ControlError([f"{SOURCE}: do: required but missing (an action such as {{power_cycle: {{phones: all}}}})"])
    try:
        entry = TimelineEntry.model_validate({"at": 0, "do": doc.data})
    except ValidationError as exc:
        problems = []
        for error in loader._drop_other_union_branches(exc.errors(include_url=False)):
            path = loader._user_path(error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                allowed = loader._allowed_keys(("timeline", 0, *error["loc"][:-1]))
                message = unknown("key", path[-1], allowed)
            elif error["type"] == "missing":
                message = "required but missing"
            inner = tuple(path[1:]) if path[:1] == ["do"] else tuple(path)
            problems.append(str(Problem(SOURCE, doc.mark_for(inner), loader.field_text(path), message)))
        raise ControlError(sorted(set(problems))) from None
    if not entry.actions():
        raise ControlError([f"{SOURCE}: do: an empty list: no action to carry out"])
    return entry.actions()


def check_against_lab(actions, run) -> None:
    """ControlError unless every action can run in this lab as it stands."""
    problems = []
    scenario = run.scenario
    fleets = {member.fleet for member in run.members}
    models = {member.phone.model for member in run.members}
    macs = {member.phone.mac for member in run.members}
    faults = set(run.faults.faults)
    for position, action in enumerate(actions):
        where = f"{SOURCE}: do[{position}].{action.kind}" if len(actions) > 1 else f"{SOURCE}: do.{action.kind}"
        kind, argument = action.kind, action.argument
        try:
            if kind in ("edit_file", "delete_file", "bump_version", "replace_file"):
                name = argument if kind == "delete_file" else argument.name
                path = run.control.file_path(name)
                if kind != "replace_file" and not os.path.isfile(path):
                    raise ValueError(f"no provisioning file {name!r}")
            elif kind in ("stop_service", "start_service", "restart_service"):
                if getattr(scenario.services, argument, None) is None:
                    raise ValueError(f"the scenario runs no {argument} service")
            elif kind == "remove_fault":
                if argument != "all" and argument not in faults:
                    raise ValueError(f"no fault named {argument!r}; in force: {', '.join(sorted(faults)) or 'none'}")
            elif kind == "add_fault":
                if argument.name and argument.name in faults:
                    raise ValueError(f"a fault named {argument.name!r} is already in force")
            elif kind in ("set_dhcp_option", "remove_dhcp_option"):
                if run._services is None or run._services.dhcp is None:
                    raise ValueError("labsim's DHCP server is not running in this lab")
            elif kind in ("power_cycle", "factory_reset", "check_sync"):
                if argument.fleet is not None and argument.fleet not in fleets:
                    raise ValueError(f"no fleet named {argument.fleet!r}; fleets: {', '.join(sorted(fleets))}")
                if argument.model is not None and argument.model not in models:
                    raise ValueError(f"no phone of model {argument.model!r} in this lab")
                unknown = [m for m in argument.macs or [] if m.lower().replace("-", ":") not in macs]
                if unknown:
                    raise ValueError(f"no phone with MAC {', '.join(unknown[:5])} in this lab")
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    if problems:
        raise ControlError(problems)


def carry_out(text: str, run) -> list[dict]:
    """Parse, check, run. Returns what each action did (as the report's timeline has it)."""
    if run.timeline is None:
        raise ControlError([f"{SOURCE}: the lab is not running yet"])
    actions = parse_actions(text)
    check_against_lab(actions, run)
    return [vars(record) for record in run.timeline.run_now(actions, SOURCE)]

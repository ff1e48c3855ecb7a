"""Load a scenario file and report every problem with file, line and field.

A bad scenario never starts a run: ``load_scenario`` either returns a valid
``Scenario`` or raises ``ScenarioError`` carrying all the problems found.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from typing import get_args

from pydantic import BaseModel, ValidationError

from labsim.scenario.calendar_start import parse_start
from labsim.scenario.checks import cross_checks, port_clashes
from labsim.scenario.schema import Scenario
from labsim.scenario.suggest import unknown
from labsim.scenario.virtual_time import virtual_time_problems
from labsim.scenario.yaml_marks import Mark, MarkedDocument, YamlError, load_marked


@dataclass(frozen=True)
class Problem:
    file: str
    mark: Mark | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.mark.line}:{self.mark.column}" if self.mark else self.file
        return f"{where}: {self.field or '(top level)'}: {self.message}"


class ScenarioError(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class LoadedScenario:
    scenario: Scenario
    path: str
    # What labsim said about the scenario before the run (scenario.sizing: a DHCP pool
    # smaller than the fleet, numbers --phones kept as written); the report keeps them.
    notes: tuple[str, ...] = ()

    @property
    def base_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))


MAX_SCENARIO_BYTES = 4 * 1024 * 1024  # a scenario file larger than this is refused unread


def load_scenario(path: str, overrides: dict | None = None) -> LoadedScenario:
    """The scenario in ``path``; ``overrides``: top-level keys the command line gives
    instead of the file's (``clock_starts``), validated with the rest."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(MAX_SCENARIO_BYTES + 1)
        if len(text) > MAX_SCENARIO_BYTES:
            raise ScenarioError([Problem(path, Mark(1, 1), "",
                                         f"file too large (over {MAX_SCENARIO_BYTES // (1024 * 1024)} MiB); "
                                         "put large provisioning files in provisioning.directory")])
    except OSError as exc:
        raise ScenarioError([Problem(path, None, "", f"cannot read the file: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError([Problem(path, None, "", f"not UTF-8 text: {exc.reason}")]) from None
    read_file = partial(_read_beside, os.path.dirname(os.path.abspath(path)))
    loaded = LoadedScenario(parse_scenario_text(text, path, overrides, read_file), path)
    _check_directory(loaded, text)
    return loaded


def _check_directory(loaded: LoadedScenario, text: str) -> None:
    """provisioning.directory must be a folder (relative to the scenario file): checked
    here, where the file's place is known, so validate says so and serve/run never start."""
    directory = loaded.scenario.provisioning.directory
    if not directory:
        return
    folder = os.path.join(loaded.base_dir, directory)
    if os.path.isdir(folder):
        return
    why = "is a file, not a folder" if os.path.exists(folder) else "does not exist"
    mark = load_marked(text).mark_for(("provisioning", "directory"))
    raise ScenarioError([Problem(loaded.path, mark, "provisioning.directory", f"{folder} {why}")])


def _read_beside(base_dir: str, relative: str) -> bytes | None:
    """A provisioning file the checks read (an Avaya model file's sections), at most
    MAX_SCENARIO_BYTES of it; None when it is not a file labsim can read: the folder's own
    check, or the run, says why."""
    try:
        with open(os.path.join(base_dir, relative), "rb") as handle:
            return handle.read(MAX_SCENARIO_BYTES)
    except (OSError, ValueError):
        return None


def parse_scenario_text(text: str, filename: str = "<scenario>", overrides: dict | None = None,
                        read_file=None) -> Scenario:
    """The scenario in ``text``; ``read_file(path)`` gives a file beside it (relative to
    its folder) to the checks that read provisioning files, or None."""
    try:
        doc = load_marked(text)
    except YamlError as exc:
        raise ScenarioError([Problem(filename, exc.mark, "", exc.message)]) from None
    if not isinstance(doc.data, dict):
        raise ScenarioError([Problem(filename, doc.mark_for(()), "", "a scenario is a mapping of keys (name, fleets, ...)")])
    problems = [Problem(filename, e.mark, field_text(e.path), e.message) for e in doc.problems]
    problems += [Problem(filename, doc.mark_for(path), field_text(path), message)
                 for path, message in cross_checks(doc.data, read_file) + port_clashes(doc)]
    data = {**doc.data, **(overrides or {})}
    scenario = None
    try:
        scenario = Scenario.model_validate(data, context={"clock_starts": _clock_starts(data)})
    except ValidationError as exc:
        errors = _drop_other_union_branches(exc.errors(include_url=False))
        problems += [_problem(filename, doc, error) for error in errors]
    if scenario is not None and scenario.clock == "virtual":
        problems += virtual_time_refusals(scenario, filename, doc)
    if problems:
        problems.sort(key=lambda p: (p.mark.line, p.mark.column) if p.mark else (0, 0))
        raise ScenarioError(_dedupe(problems))
    return scenario


def _clock_starts(data: dict) -> float | None:
    """The start a timeline's calendar moments count from (a bad one is the field's own error)."""
    try:
        return parse_start(data["clock_starts"]) if data.get("clock_starts") is not None else None
    except ValueError:
        return None


def field_text(loc) -> str:
    return ".".join(str(part) if not isinstance(part, int) else f"[{part}]" for part in loc).replace(".[", "[")


def _problem(filename: str, doc, error: dict) -> Problem:
    loc = _user_path(error["loc"])
    if error["type"] == "extra_forbidden" and (not loc or loc[-1] != error["loc"][-1]):
        loc.append(error["loc"][-1])  # the user's own key, even one that looks like a branch name ("A")
    field = field_text(loc)
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(error["loc"][:-1])
        message = unknown("key", loc[-1], allowed)
    elif error["type"] == "missing":
        message = "required but missing"
    return Problem(filename, doc.mark_for(tuple(loc)), field, message)


# Scenario keys are lower case; pydantic names union branches by type or model name.
_BRANCH_TAGS = {"storm", "ramp", "poisson", "str", "int", "float", "bool", "dict", "list"}


def _user_path(loc: tuple) -> list:
    """Drop pydantic's internal parts of a location (union branch and tag names)."""
    parts = []
    for part in loc:
        if isinstance(part, str) and (part in _BRANCH_TAGS or part.startswith(("function-", "list[")) or part[:1].isupper()):
            continue
        parts.append(part)
    return parts


def _allowed_keys(loc: tuple) -> list[str]:
    model: type[BaseModel] | None = Scenario
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int) or part.startswith("function-"):  # a validator's wrapper, not a key
            continue
        if part in ("storm", "ramp", "poisson"):
            from labsim.scenario import schema

            model = {"storm": schema.StormBoot, "ramp": schema.RampBoot, "poisson": schema.PoissonBoot}[part]
            continue
        if isinstance(part, str) and part[:1].isupper():  # a union branch: the model's own name
            from labsim.scenario import schema

            found = getattr(schema, part, None)
            model = found if isinstance(found, type) and issubclass(found, BaseModel) else None
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = _model_in(field.annotation)
    return sorted(model.model_fields) if model else []


def _model_in(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


# A value that fits neither branch of a union (a check string or an {name, check}
# mapping) gets one error per branch; the "wrong kind of value" error of the branch the
# user clearly did not mean is noise.
_BRANCH_MISMATCH = {"model_type", "dict_type", "string_type", "model_attributes_type", "list_type"}


def _drop_other_union_branches(errors: list[dict]) -> list[dict]:
    """Drop a branch-mismatch error when another error at the same place, or inside it,
    says what is really wrong."""
    places = [tuple(_user_path(error["loc"])) for error in errors]
    kept = []
    for error, place in zip(errors, places):
        if error["type"] in _BRANCH_MISMATCH and any(
            other[: len(place)] == place and other_error["type"] not in _BRANCH_MISMATCH
            for other, other_error in zip(places, errors) if other_error is not error
        ):
            continue
        kept.append(error)
    return kept


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen, unique = set(), []
    for problem in problems:
        key = (problem.field, problem.message)
        if key not in seen:
            seen.add(key)
            unique.append(problem)
    return unique


def virtual_time_refusals(scenario, filename: str, doc: MarkedDocument) -> list[Problem]:
    """What ``scenario`` cannot have in virtual time (scenario.virtual_time), at its place
    in the file: for a file saying ``clock: virtual`` and for ``run --clock virtual``."""
    return [Problem(filename, doc.mark_for(path), field_text(path), f"not possible in virtual time: {why}")
            for path, why in virtual_time_problems(scenario)]


def marks_of(path: str) -> MarkedDocument:
    """The file at ``path`` with where each key is (for a Problem's line and column)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return load_marked(handle.read())
    except (OSError, UnicodeDecodeError, YamlError):  # changed since it was loaded: places without lines
        return MarkedDocument({})


def problem_at(path: str, key: tuple, message: str) -> Problem:
    """A problem of the file at ``path`` at ``key``'s place in it (found after loading)."""
    return Problem(path, marks_of(path).mark_for(key), field_text(key), message)

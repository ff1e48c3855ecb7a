"""YAML loading that remembers where every key and value came from.

PyYAML's composer gives each node a start mark; we walk the node tree ourselves to
build plain Python data plus a map from a value's path (a tuple of keys and list
indexes) to its line and column, so that a validation error can name the exact place
in the file. Duplicate keys are an error here, where PyYAML would silently keep the last.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml


@dataclass(frozen=True)
class Mark:
    line: int  # 1-based, as editors count
    column: int  # 1-based


@dataclass
class MarkedDocument:
    data: object
    marks: dict[tuple, Mark] = field(default_factory=dict)
    # Problems found while reading (duplicate keys): reported with the schema's, so one
    # pass shows everything.
    problems: list["YamlError"] = field(default_factory=list)

    def mark_for(self, path: tuple) -> Mark | None:
        """The mark of the deepest part of ``path`` the file actually contains."""
        for end in range(len(path), -1, -1):
            mark = self.marks.get(tuple(path[:end]))
            if mark is not None:
                return mark
        return None


class YamlError(Exception):
    def __init__(self, message: str, mark: Mark | None, path: tuple = ()):
        super().__init__(message)
        self.message = message
        self.mark = mark
        self.path = path


# Bounds on what a scenario file may make the loader build. A 488-byte "billion laughs"
# file (anchors of aliases of aliases) expands to gigabytes, and 100,000 nested '['
# overflow the composer's recursion; both are refused before anything is built. Real
# scenarios sit far below each bound (the largest bundled one: ~400 values, depth 7).
MAX_DEPTH = 64  # nested mappings and lists
MAX_ALIASES = 10_000  # uses of an anchor (*name) in one file
MAX_EXPANDED_VALUES = 200_000  # values (scalars, lists, mappings) once every alias is expanded
MAX_EXPANDED_CHARS = 16 * 1024 * 1024  # characters of scalar text once every alias is expanded


def load_marked(text: str) -> MarkedDocument:
    check_bounds(text)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = Mark(mark.line + 1, mark.column + 1) if mark else None
        raise YamlError(f"not valid YAML: {exc.problem}", where) from None
    except yaml.YAMLError as exc:  # the reader's: a control character, bad encoding
        position = getattr(exc, "position", None)
        where = Mark(text.count("\n", 0, position) + 1, position - text.rfind("\n", 0, position)) \
            if isinstance(position, int) else None
        reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
        raise YamlError(f"not valid YAML: {reason}", where) from None
    doc = MarkedDocument(data=None)
    if root is None:
        return doc
    try:
        doc.data = _build(root, (), doc.marks, doc.problems)
    except yaml.MarkedYAMLError as exc:  # a value PyYAML cannot construct: an unknown tag (!x), a bad !!int ...
        mark = exc.problem_mark or exc.context_mark
        where = Mark(mark.line + 1, mark.column + 1) if mark else None
        raise YamlError(f"not valid YAML: {exc.problem or exc.context}", where) from None
    return doc


def check_bounds(text: str) -> None:
    """Walk the file's YAML events once (no values are built) and refuse it, at the
    offending line, if its nesting or its alias expansion passes a bound above.

    Each anchored value's expanded size is measured when it closes; an alias adds that
    size again, so nested aliases are counted as what they would build, without
    building it."""
    depth = 0
    aliases = 0
    values = chars = 0
    open_anchors: list[tuple[str | None, int, int]] = []  # per open collection: anchor, values, chars at start
    sizes: dict[str, tuple[int, int]] = {}
    try:
        for event in yaml.parse(text, Loader=_EVENT_LOADER):
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise YamlError(f"too many aliases (more than {MAX_ALIASES:,} uses of anchors)", _mark(event))
                more_values, more_chars = sizes.get(event.anchor, (1, 0))
                values += more_values
                chars += more_chars
            elif isinstance(event, yaml.ScalarEvent):
                values += 1
                chars += len(event.value)
                if event.anchor is not None:
                    sizes[event.anchor] = (1, len(event.value))
            elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise YamlError(f"nested too deeply (more than {MAX_DEPTH} levels of lists and mappings)",
                                    _mark(event))
                values += 1
                open_anchors.append((event.anchor, values - 1, chars))
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
                anchor, values_then, chars_then = open_anchors.pop()
                if anchor is not None:
                    sizes[anchor] = (values - values_then, chars - chars_then)
            else:
                continue
            if values > MAX_EXPANDED_VALUES or chars > MAX_EXPANDED_CHARS:
                raise YamlError(
                    f"aliases expand too far (more than {MAX_EXPANDED_VALUES:,} values or "
                    f"{MAX_EXPANDED_CHARS // (1024 * 1024)} MiB of text once expanded)", _mark(event))
    except yaml.YAMLError:
        return  # not valid YAML: the composer says where, with its own message


def _mark(event) -> Mark | None:
    mark = event.start_mark
    return Mark(mark.line + 1, mark.column + 1) if mark is not None else None


# The same parser the composer uses, so a file that is not YAML gets the same message
# either way (libyaml's words differ).
_EVENT_LOADER = yaml.SafeLoader


def _mark_of(node: yaml.Node) -> Mark:
    return Mark(node.start_mark.line + 1, node.start_mark.column + 1)


def _build(node: yaml.Node, path: tuple, marks: dict[tuple, Mark], problems: list):
    marks[path] = _mark_of(node)
    if isinstance(node, yaml.MappingNode):
        result: dict = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if key in result:
                problems.append(YamlError(f"duplicate key {key!r} (the first one is kept)", _mark_of(key_node),
                                          path + (key,)))
                continue
            child = path + (key,)
            result[key] = _build(value_node, child, marks, problems)
            # Point errors about a key at the key itself, not at its value.
            marks[child] = _mark_of(key_node)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (index,), marks, problems) for index, item in enumerate(node.value)]
    return _construct(node)


def _construct(node: yaml.Node):
    """A scalar's value; a tag PyYAML cannot construct (``!x``, ``!!int x``, ``!!binary ###``)
    is a problem at the value, never an exception out of the loader (found by tests/fuzz)."""
    try:
        return _CONSTRUCTOR.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        text = getattr(exc, "problem", None) or str(exc)
        raise YamlError(f"not valid YAML: {node.tag} {str(node.value)[:40]!r}: {text}", _mark_of(node)) from None


def _scalar(node: yaml.Node):
    if not isinstance(node, yaml.ScalarNode):
        raise YamlError("a mapping key must be a plain value", _mark_of(node))
    return _construct(node)


_CONSTRUCTOR = yaml.SafeLoader("")

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


def load_marked(text: str) -> MarkedDocument:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = Mark(mark.line + 1, mark.column + 1) if mark else None
        raise YamlError(f"not valid YAML: {exc.problem}", where) from None
    doc = MarkedDocument(data=None)
    if root is None:
        return doc
    doc.data = _build(root, (), doc.marks, doc.problems)
    return doc


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
    return _CONSTRUCTOR.construct_object(node, deep=True)


def _scalar(node: yaml.Node):
    if not isinstance(node, yaml.ScalarNode):
        raise YamlError("a mapping key must be a plain value", _mark_of(node))
    return _CONSTRUCTOR.construct_object(node, deep=True)


_CONSTRUCTOR = yaml.SafeLoader("")

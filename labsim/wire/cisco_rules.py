"""Cisco SPA / MPP profile rules beyond one URL: alternatives, conditions and assignments
(no I/O).

A ``Profile_Rule*`` or ``Upgrade_Rule`` value is a list of **alternatives** separated by
``|``; each is, in this order and each part optional::

    [ ( condition )? ] [ ( assignments )! ] [ [--options] URL ]

Every alternative but the last must have a condition. The phone takes the first
alternative whose condition holds (or that has none), makes its assignments, then fetches
its URL, if it has one. When no condition holds, nothing is fetched.

A **condition** is comparisons joined by ``and`` (all must hold), on macro-expanded text:
``$SWVER ge 2.0.6 and "$CCERT" eq "Installed"``. An operand is an integer, a version
number (three integers with dots and an optional suffix in parentheses: ``1.0.31(b)``) or
a double-quoted string. The operators are ``=`` ``!=`` ``<`` ``<=`` ``>`` ``>=``, or
``eq`` ``ne`` ``lt`` ``le`` ``gt`` ``ge``. Strings compare only for equality. The older
firmware's forms are read too: ``!`` for ``!=``, and a comparison with no left operand
compares ``$SWVER`` (``! 1.0.33``).

An **assignment** list sets parameters before the URL is fetched, macros expanded in the
values: ``( User_ID_1_ = "uid$B" ; GPP_C = "" ; d = "$MA" ; )!``, where the letters ``a``
to ``p`` stand for ``GPP_A`` to ``GPP_P``.

(The syntax and the operators are the Cisco Small Business provisioning guide's; how two
version numbers' suffixes compare is not said there: here as text, none first.)
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

from labsim.wire.cisco_cfg import NotACiscoProfile, Rule, expand_macros, parse_rule

_OPERATORS = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
              ">=": operator.ge}
_ACRONYMS = {"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "!": "!="}
_TOKEN = re.compile(r'"[^"]*"|!=|<=|>=|=|<|>|!|[^\s"!=<>]+')
_INTEGER = re.compile(r"^[0-9]+$")
_VERSION = re.compile(r"^([0-9]+)\.([0-9]+)\.([0-9]+)(?:\(([0-9A-Za-z]+)\))?$")
_ASSIGNMENT = re.compile(r'\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*"([^"]*)"\s*;')
GPP_LETTERS = "abcdefghijklmnop"  # a .. p: GPP_A .. GPP_P


@dataclass(frozen=True)
class Alternative:
    condition: str | None  # the text inside "( ... )?", macros not yet expanded; None: always taken
    assignments: tuple[tuple[str, str], ...] = ()  # (parameter, value), macros not yet expanded
    rule: Rule | None = None  # None: nothing to fetch (the alternative only assigns)


def parse_alternatives(text: str) -> list[Alternative]:
    """The rule's alternatives, in order. NotACiscoProfile names what is malformed."""
    parts = _split_outside_quotes(text, "|")
    alternatives = []
    for number, part in enumerate(parts, 1):
        rest, condition, assignments = part.strip(), None, ()
        if rest.startswith("("):
            inside, rest = _group(rest)
            if rest.startswith("?"):
                condition, rest = inside.strip(), rest[1:].strip()
            elif rest.startswith("!"):
                assignments, rest = _assignments(inside), rest[1:].strip()
            else:
                raise NotACiscoProfile(f"rule {text!r}: '( {inside.strip()} )' must be followed by '?' (a "
                                       "condition) or '!' (assignments)")
        if not assignments and rest.startswith("("):
            inside, rest = _group(rest)
            if not rest.startswith("!"):
                raise NotACiscoProfile(f"rule {text!r}: after a condition, '( {inside.strip()} )' must be "
                                       "assignments, followed by '!'")
            assignments, rest = _assignments(inside), rest[1:].strip()
        if condition is None and number < len(parts):
            raise NotACiscoProfile(f"rule {text!r}: alternative {number} of {len(parts)} has no condition "
                                   "'( ... )?': every alternative but the last needs one")
        alternatives.append(Alternative(condition, assignments, parse_rule(rest) if rest else None))
    return alternatives


def choose(alternatives: list[Alternative], macros: dict[str, str]) -> Alternative | None:
    """The first alternative whose condition holds, its macros expanded with ``macros``
    (``SWVER`` is also the left operand a comparison leaves out), or None."""
    for alternative in alternatives:
        if alternative.condition is None or holds(expand_macros(alternative.condition, macros), macros.get("SWVER", "")):
            return alternative
    return None


def holds(condition: str, swver: str) -> bool:
    """Whether ``condition`` (macros already expanded) holds; NotACiscoProfile when it
    does not read."""
    tokens = _TOKEN.findall(condition)
    comparisons: list[list[str]] = [[]]
    for token in tokens:
        if token == "and":
            comparisons.append([])
        else:
            comparisons[-1].append(token)
    return all(_compare(words, swver, condition) for words in comparisons)


def assigned(alternative: Alternative, macros: dict[str, str]) -> dict[str, str]:
    """The alternative's assignments as parameter -> value, macros expanded."""
    return {name: expand_macros(value, macros) for name, value in alternative.assignments}


# --- the pieces ------------------------------------------------------------------------


def _compare(words: list[str], swver: str, condition: str) -> bool:
    if len(words) == 2:  # no left operand: $SWVER (the older firmware's form)
        words = [swver, *words]
    op = _ACRONYMS.get(words[1], words[1]) if len(words) == 3 else None
    if op not in _OPERATORS:
        raise NotACiscoProfile(f"condition {condition!r}: {' '.join(words) or 'nothing'!r} is not "
                               "'OPERAND OPERATOR OPERAND' (operators = != < <= > >= or eq ne lt le gt ge)")
    (left_kind, left), (right_kind, right) = _operand(words[0], condition), _operand(words[2], condition)
    if left_kind != right_kind:
        raise NotACiscoProfile(f"condition {condition!r}: {words[0]} is {left_kind}, {words[2]} is {right_kind}: "
                               "they do not compare")
    if left_kind == "a string" and op not in ("=", "!="):
        raise NotACiscoProfile(f"condition {condition!r}: strings compare only with = or != (eq, ne), not {words[1]}")
    return _OPERATORS[op](left, right)


def _operand(word: str, condition: str) -> tuple[str, object]:
    if word.startswith('"'):
        return "a string", word[1:-1]
    if _INTEGER.match(word):
        return "an integer", int(word)
    version = _VERSION.match(word)
    if version:
        major, minor, build, suffix = version.groups()
        return "a version", (int(major), int(minor), int(build), suffix or "")
    raise NotACiscoProfile(f"condition {condition!r}: {word!r} is no integer, version number (2.0.6, 1.0.31(b)) or "
                           'double-quoted string (a macro where a string is meant goes in quotes: "$PN")')


def _assignments(text: str) -> tuple[tuple[str, str], ...]:
    found, end = [], 0
    for match in _ASSIGNMENT.finditer(text):
        if text[end:match.start()].strip():
            break
        name = match.group(1)
        found.append((f"GPP_{name.upper()}" if len(name) == 1 and name in GPP_LETTERS else name, match.group(2)))
        end = match.end()
    if text[end:].strip():
        raise NotACiscoProfile(f'assignments {text.strip()!r}: {text[end:].strip()!r} is not NAME = "VALUE" ;')
    return tuple(found)


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts, current, quoted = [], [], False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _group(text: str) -> tuple[str, str]:
    """``text`` starts with '(': (what is inside the matching ')', what follows it)."""
    depth, quoted = 0, False
    for index, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth == 0:
                return text[1:index], text[index + 1:].lstrip()
    raise NotACiscoProfile(f"rule {text!r}: '(' without its ')'")

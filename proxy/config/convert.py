"""Plain data (YAML, environment, secret files) into the schema's Structs, by msgspec.

msgspec converts and checks every value: lax mode (``strict=False``) turns the
environment's strings into numbers and booleans, ``msgspec.Meta`` holds the limits and
patterns, the decode hook builds the types msgspec does not know (Secret, Path, IP
networks). This module walks the sections itself, because msgspec stops at the first
problem and the user should get every one at once, in the schema's order, each under its
dotted key and in the wording the settings always used. A message never quotes a value.
"""

from __future__ import annotations

import ipaddress
import re
import typing
from collections.abc import Callable
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar

import msgspec

from proxy.config.problems import Problem, dotted
from proxy.config.secret import Secret
from proxy.config.section import Check, IPNetwork, Section

S = TypeVar("S", bound=Section)
Key = tuple[str, ...]

UNKNOWN = "unknown setting (check the spelling)"
# Spellings of pydantic's lax mode (which this module followed before) that msgspec's
# does not take: "on"/"off", "yes"/"no", surrounding spaces ("SIPGATE_PROXY_X= 8080 ").
_BOOLEANS = {"on": True, "yes": True, "y": True, "t": True}
_BOOLEANS |= {"off": False, "no": False, "n": False, "f": False}
_TYPE_WORDING = {
    "int": "must be a whole number",
    "float": "must be a number",
    "bool": "must be a boolean (true or false)",
    "str": "must be a string",
    "array": "must be a list",
    "object": "must be a mapping of settings",
}
_EXPECTED_TYPE = re.compile(r"Expected `(\w+)(?: \| null)?`, got")
_LIMIT = re.compile(r"Expected `(?:int|float)` (>=|>|<=|<) (\S+)$")
_LIMIT_WORDING = {
    ">=": "must be at least",
    ">": "must be greater than",
    "<=": "must be at most",
    "<": "must be less than",
}


def section(cls: type[S], data: object, key: Key, problems: list[Problem]) -> S | None:
    """``cls`` from ``data``; None when a problem was added to ``problems``."""
    if not isinstance(data, dict):
        problems.append(Problem(dotted(key), _TYPE_WORDING["object"]))
        return None
    before = len(problems)
    kinds = {field.name: field.type for field in msgspec.structs.fields(cls)}
    values = {
        name: _field(kind, data[name], (*key, name), problems)
        for name, kind in kinds.items()
        if name in data  # else the default applies
    }
    problems += [Problem(dotted((*key, str(n))), UNKNOWN) for n in data if n not in kinds]
    return cls(**values) if len(problems) == before else None


def _field(kind: Any, value: object, key: Key, problems: list[Problem]) -> Any:
    nested = _section_type(kind)
    if nested is not None and value is not None:
        return section(nested, value, key, problems)
    item = _item_type(kind)
    if item is None or not isinstance(value, list):
        return _value(kind, value, key, problems)
    # Item by item: msgspec would name only the first bad one.
    before = len(problems)
    convert = _value if _section_type(item) is None else _section_item
    items = [convert(item, v, (*key, str(n)), problems) for n, v in enumerate(value)]
    return _checked(kind, items, key, problems) if len(problems) == before else None


def _section_item(kind: Any, value: object, key: Key, problems: list[Problem]) -> Any:
    return section(kind, value, key, problems)


def _value(kind: Any, value: object, key: Key, problems: list[Problem]) -> Any:
    try:
        converted = msgspec.convert(_lenient(kind, value), kind, strict=False, dec_hook=_decode)
    except msgspec.ValidationError as err:
        message = str(err).partition(" - at `$")[0]
        problems.append(Problem(dotted(key), _wording(kind, message)))
        return None
    return _checked(kind, converted, key, problems)


def _checked(kind: Any, value: Any, key: Key, problems: list[Problem]) -> Any:
    try:
        for rule in _rules(kind, Check):
            value = rule.check(value)
    except ValueError as err:
        problems.append(Problem(dotted(key), str(err)))
        return None
    return value


def _section_type(kind: Any) -> type[Section] | None:
    """The section a field holds (``Listen`` or ``Listen | None``), or None."""
    if typing.get_origin(kind) is Annotated:  # a described field
        return _section_type(typing.get_args(kind)[0])
    union = typing.get_origin(kind) in (UnionType, typing.Union)
    for candidate in (kind, *(typing.get_args(kind) if union else ())):
        if isinstance(candidate, type) and issubclass(candidate, Section):
            return candidate
    return None


def _lenient(kind: Any, value: object) -> object:
    if not isinstance(value, str):
        return value
    base = _base(kind)
    if base is bool:
        word = value.strip().lower()
        return _BOOLEANS.get(word, word)
    return value.strip() if base in (int, float) else value


def _item_type(kind: Any) -> Any:
    """``T`` for a field of type ``list[T]`` (with or without rules), else None."""
    base = _base(kind)
    return typing.get_args(base)[0] if typing.get_origin(base) is list else None


def _base(kind: Any) -> Any:
    """``int`` for ``Annotated[int, …]`` or ``int | None``."""
    if typing.get_origin(kind) is Annotated:
        return _base(typing.get_args(kind)[0])
    if typing.get_origin(kind) in (UnionType, typing.Union):
        (inner,) = [a for a in typing.get_args(kind) if a is not type(None)]
        return _base(inner)
    return kind


R = TypeVar("R")


def _rules(kind: Any, rule: type[R]) -> list[R]:
    """The ``rule`` objects in the field's Annotated metadata (also under ``| None``, and
    a described ``Annotated[T | None, Meta(description=…)]``)."""
    if typing.get_origin(kind) in (UnionType, typing.Union):
        return [r for inner in typing.get_args(kind) for r in _rules(inner, rule)]
    if typing.get_origin(kind) is not Annotated:
        return []
    inner, *extras = typing.get_args(kind)
    return [r for r in extras if isinstance(r, rule)] + _rules(inner, rule)


def _decode(kind: type, value: Any) -> Any:
    """The types msgspec does not know; each is written as a string."""
    if not isinstance(value, str):
        raise TypeError(_TYPE_WORDING["str"])
    return _DECODERS[kind](value)


def _network(value: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(value)  # strict: host bits set is a mistake
    except ValueError:
        raise ValueError("must be an IPv4 or IPv6 network such as 10.0.0.0/8") from None


_DECODERS: dict[Any, Callable[[str], Any]] = {Secret: Secret, Path: Path, IPNetwork: _network}


def _wording(kind: Any, message: str) -> str:
    if typing.get_origin(_base(kind)) is Literal:
        return "must be " + _one_of([str(c) for c in typing.get_args(_base(kind))])
    if limit := _LIMIT.match(message):
        return f"{_LIMIT_WORDING[limit[1]]} {float(limit[2]):g}"
    if message.startswith("Expected `str` matching regex"):
        (pattern,) = [m.pattern for m in _rules(kind, msgspec.Meta) if m.pattern is not None]
        shown = pattern.replace("\\Z", "$")  # the schema's end of text, as users write it
        return f"must match the pattern {shown!r}"
    expected = _EXPECTED_TYPE.match(message)
    if expected and expected[1] in _TYPE_WORDING:
        return _TYPE_WORDING[expected[1]]
    return message  # the decode hook's own words


def _one_of(choices: list[str]) -> str:
    quoted = [repr(c) for c in choices]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]

"""docs/reference/configuration.md from the settings' schema: every key with its type,
constraints, default, environment variable and description, as ``proxy/config`` declares
them (msgspec Structs; ``Meta(description=…)`` beside each field, a ``Check``'s rule in
its docstring's first line, the ``*_file`` keys from ``sources.SECRET_FILES``)."""

from __future__ import annotations

import ipaddress
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal

import msgspec

from proxy.config.json_schema import file_key_description
from proxy.config.schema import Document
from proxy.config.secret import Secret
from proxy.config.section import Check, IPNetwork, Section
from proxy.config.sources import SECRET_FILES, env_name

NAMES: dict[Any, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    Secret: "secret",
    Path: "path",
    IPNetwork: "network",
}
LIMITS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


class Undescribed(Exception):
    """A key without a description: the schema must say what every key is for."""


@dataclass(frozen=True)
class Key:
    dotted: str
    kind: str
    constraints: list[str]
    default: str
    env: str | None  # None: inside a list, set with the whole list
    description: str


@dataclass(frozen=True)
class Part:
    """One field's type taken apart: the base type, its metadata, optional or not."""

    base: Any
    metas: list[msgspec.Meta]
    checks: list[Check]
    optional: bool


def keys(cls: type[Section] = Document, prefix: str = "", in_list: bool = False) -> list[Key]:
    """Every key of ``cls`` (and its sections), in the schema's order."""
    return list(_keys(cls, prefix, in_list))


def sections(
    cls: type[Section] = Document, prefix: str = "", doc: str | None = None
) -> Iterator[tuple[str, str]]:
    """Each section's dotted name (``""`` for the top level) and description."""
    yield prefix.rstrip("."), doc or _section_doc(cls)
    for field in msgspec.structs.fields(cls):
        part = _part(field.type)
        nested, suffix = _nested(part.base)
        if nested is not None:
            described = [m.description for m in part.metas if m.description]
            said = [d[0].upper() + d[1:] + "." for d in described[-1:]]
            yield from sections(nested, f"{prefix}{field.name}{suffix}.", *said)


def _keys(cls: type[Section], prefix: str, in_list: bool) -> Iterator[Key]:
    section_path = tuple(prefix.rstrip(".").split(".")) if prefix else ()
    for field in msgspec.structs.fields(cls):
        part = _part(field.type)
        nested, suffix = _nested(part.base)
        dotted = prefix + field.name
        if nested is not None:
            yield from _keys(nested, f"{dotted}{suffix}.", in_list or suffix == "[]")
            continue
        yield _key(dotted, field, part, in_list)
        for path, key, file_key, many in SECRET_FILES:
            if path == section_path and key == field.name:
                env = None if in_list else env_name(prefix + file_key)
                yield Key(
                    prefix + file_key, "path", [], "unset", env, file_key_description(key, many)
                )


def _key(dotted: str, field: msgspec.structs.FieldInfo, part: Part, in_list: bool) -> Key:
    descriptions = [m.description for m in part.metas if m.description]
    if not descriptions:
        raise Undescribed(f"{dotted}: no Meta(description=...) in proxy/config")
    return Key(
        dotted,
        _kind(part.base),
        _constraints(part),
        _default(field),
        None if in_list else env_name(dotted),
        descriptions[-1],
    )


def _part(kind: Any) -> Part:
    metas: list[msgspec.Meta] = []
    checks: list[Check] = []
    optional = False
    while True:
        if typing.get_origin(kind) is Annotated:
            kind, *extras = typing.get_args(kind)
            metas += [e for e in extras if isinstance(e, msgspec.Meta)]
            checks += [e for e in extras if isinstance(e, Check)]
        elif typing.get_origin(kind) in (UnionType, typing.Union):
            (kind,) = [a for a in typing.get_args(kind) if a is not type(None)]
            optional = True
        else:
            return Part(kind, metas, checks, optional)


def _nested(base: Any) -> tuple[type[Section] | None, str]:
    """The section a field holds, and ``"[]"`` when it is a list of them."""
    if isinstance(base, type) and issubclass(base, Section):
        return base, ""
    if typing.get_origin(base) is list:
        item = _part(typing.get_args(base)[0]).base
        if isinstance(item, type) and issubclass(item, Section):
            return item, "[]"
    return None, ""


def _kind(base: Any) -> str:
    origin = typing.get_origin(base)
    if origin is Literal:
        return "string"
    if origin is list:
        return f"list of {_kind(_part(typing.get_args(base)[0]).base)}"
    if origin is dict:
        return f"mapping of {_kind(_part(typing.get_args(base)[1]).base)}"
    return NAMES[base]


def _constraints(part: Part) -> list[str]:
    found: list[str] = []
    if typing.get_origin(part.base) is Literal:
        found.append("one of " + ", ".join(f"`{c}`" for c in typing.get_args(part.base)))
    for meta in part.metas:
        found += [
            f"{sign} {_number(getattr(meta, name))}"
            for name, sign in LIMITS
            if getattr(meta, name) is not None
        ]
        if meta.pattern is not None:
            found.append(f"matches `{meta.pattern.replace(chr(92) + 'Z', '$')}`")
        if meta.min_length is not None:
            found.append(f"length ≥ {meta.min_length}")
        if meta.max_length is not None:
            found.append(f"length ≤ {meta.max_length}")
    if typing.get_origin(part.base) is list:
        item = _part(typing.get_args(part.base)[0])
        found += [f"each: {c}" for c in _constraints(item)]
    found += [_rule(check) for check in part.checks]
    return found


def _rule(check: Check) -> str:
    doc = (check.check.__doc__ or "").strip()
    if not doc:
        raise Undescribed(f"{check.check.__qualname__}: a Check needs a docstring")
    rule = doc.splitlines()[0].rstrip(".").replace("``", "`")
    return rule[0].lower() + rule[1:]


def _default(field: msgspec.structs.FieldInfo) -> str:
    if field.default is msgspec.NODEFAULT and field.default_factory is msgspec.NODEFAULT:
        return "required"
    value = field.default if field.default_factory is msgspec.NODEFAULT else field.default_factory()
    return _value(value)


def _value(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float | int):
        return f"`{_number(value)}`"
    if isinstance(value, list):
        return "`[" + ", ".join(_plain(v) for v in value) + "]`"
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{value}`"
    return f"`{value}`"


def _plain(value: Any) -> str:
    return str(value) if isinstance(value, str | ipaddress._BaseNetwork) else repr(value)


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _section_doc(cls: type[Section]) -> str:
    if cls is Document:
        return "Keys outside every section."
    doc = (cls.__doc__ or "").strip()
    if not doc:
        raise Undescribed(f"{cls.__name__}: a section needs a docstring")
    return " ".join(doc.split("\n\n")[0].split())

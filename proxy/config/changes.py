"""Which settings differ between two loaded configurations, by their dotted names (never
their values: they may be secrets). SIGHUP applies some live and names the rest."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from proxy.config.schema import Document


def changed_keys(old: Document, new: Document) -> list[str]:
    """The settings as written (``Settings``' resolved mode and client list derive from
    them), in the schema's order; a list or a value that is no section is one key."""
    return list(_changed(old, new, Document.__struct_fields__, ""))


def _changed(old: object, new: object, fields: tuple[str, ...], prefix: str) -> Iterator[str]:
    for name in fields:
        before, after, key = getattr(old, name), getattr(new, name), prefix + name
        if isinstance(before, msgspec.Struct) and type(before) is type(after):
            yield from _changed(before, after, before.__struct_fields__, key + ".")
        elif before != after:
            yield key

"""sipgate's operations and scope names, read once from the data files beside this module
(``api-operations.tsv``, ``scopes.txt``: a snapshot of sipgate's OpenAPI description, its
source and date in their first lines; docs/clients.md says how to refresh them)."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

ALL = "all"  # grants every operation of the table (and nothing outside it)


@dataclass(frozen=True)
class Operation:
    index: int  # the row's position: what a client's granted set holds
    method: str
    template: str  # "/v2/calls/{callId}/muted"
    scopes: tuple[str, ...]  # any one grants it, as published ("all" among them or not)
    operation_id: str

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"

    def granted_by(self, scopes: frozenset[str]) -> bool:
        return ALL in scopes or not scopes.isdisjoint(self.scopes)


def _lines(name: str) -> list[str]:
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


@functools.cache
def operations() -> tuple[Operation, ...]:
    rows = []
    for index, line in enumerate(_lines("api-operations.tsv")):
        method, template, scopes, operation_id = line.split("\t")
        granting = () if scopes == "-" else tuple(scopes.split(","))
        rows.append(Operation(index, method, template, granting, operation_id))
    return tuple(rows)


@functools.cache
def scope_names() -> tuple[str, ...]:
    return tuple(_lines("scopes.txt"))


def granting(scopes: frozenset[str]) -> list[Operation]:
    """The rows these scopes grant, in the table's order."""
    return [op for op in operations() if op.granted_by(scopes)]


def granted_operations(scopes: frozenset[str]) -> frozenset[int]:
    """The rows these scopes grant, by index."""
    return frozenset(op.index for op in granting(scopes))


def closest_scopes(name: str, known: Iterable[str] = ()) -> list[str]:
    """The names nearest a mistyped one (sipgate's, and ``known`` besides), for a hint."""
    return difflib.get_close_matches(name, sorted({*scope_names(), *known}), n=3, cutoff=0.6)

"""Which operation of sipgate's table a request is: a tree by path segment per method,
built once, so a match costs O(segments), not O(operations).

A template segment (``{callId}``) matches exactly one non-empty segment. Where several
templates match, the one whose first differing segment is literal wins (OpenAPI's rule):
at each node the literal child is tried before the template child, and the template
child only when the literal branch ends without an operation. HEAD is matched as GET;
the query is not part of the path given here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from urllib.parse import unquote

from proxy.sipgate.operations import Operation, operations


@dataclass
class _Node:
    literal: dict[str, _Node] = field(default_factory=dict)
    template: _Node | None = None
    operation: Operation | None = None


class OperationIndex:
    def __init__(self, rows: tuple[Operation, ...]) -> None:
        self._roots: dict[str, _Node] = {}
        for op in rows:
            node = self._roots.setdefault(op.method, _Node())
            for segment in op.template[1:].split("/"):
                node = _child(node, segment)
            if node.operation is not None:
                raise ValueError(f"{op.name} has the shape of {node.operation.name}")
            node.operation = op

    def match(self, method: str, segments: tuple[str, ...]) -> Operation | None:
        """The operation a canonical path (``auth/clients/paths.py``) is, or None."""
        root = self._roots.get("GET" if method == "HEAD" else method)
        if root is None:
            return None
        # sipgate reads "%61" as "a": a literal is compared in the spelling it reads
        # (the gate has refused every escape that could read as "/", "." or "%").
        if any("%" in segment for segment in segments):
            segments = tuple(unquote(segment) for segment in segments)
        return _walk(root, segments, 0)


def _child(node: _Node, segment: str) -> _Node:
    if segment.startswith("{") and segment.endswith("}"):
        if node.template is None:
            node.template = _Node()
        return node.template
    return node.literal.setdefault(segment, _Node())


def _walk(node: _Node, segments: tuple[str, ...], start: int) -> Operation | None:
    for position in range(start, len(segments)):
        segment = segments[position]
        literal = node.literal.get(segment)
        if literal is None:
            if node.template is None or not segment:
                return None
            node = node.template
        elif node.template is not None and segment:
            # Both fit: the literal first; the template only if that branch finds nothing.
            found = _walk(literal, segments, position + 1)
            return found if found is not None else _walk(node.template, segments, position + 1)
        else:
            node = literal
    return node.operation


@functools.cache
def sipgate_index() -> OperationIndex:
    """The index of the shipped table, built on first use."""
    return OperationIndex(operations())

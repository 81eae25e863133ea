"""What ``sipgate-auth-proxy scopes`` prints: the table seen from a scope or a request."""

from __future__ import annotations

from proxy.sipgate.index import sipgate_index
from proxy.sipgate.operations import ALL, granting, scope_names


def scope_counts() -> list[str]:
    """One line per scope: the name and how many operations it grants."""
    width = max(len(name) for name in scope_names())
    lines = [f"{'scope':<{width}}  operations"]
    lines += [f"{name:<{width}}  {len(granting(frozenset({name}))):>10}" for name in scope_names()]
    return lines


def scope_operations(scope: str) -> list[str]:
    """The operations one scope grants, as "METHOD /path  operationId"."""
    ops = granting(frozenset({scope}))
    width = max((len(op.name) for op in ops), default=0)
    return [f"{op.name:<{width}}  {op.operation_id}" for op in ops]


def operation_line(method: str, segments: tuple[str, ...]) -> str | None:
    """The operation a request is and the scopes that grant it; None: not in the table."""
    operation = sipgate_index().match(method, segments)
    if operation is None:
        return None
    scopes = [s for s in operation.scopes if s != ALL]
    granting = ", ".join([ALL, *scopes]) if scopes else f"{ALL} only (none declared)"
    return f"{operation.name} ({operation.operation_id}): granted by {granting}"

"""The error and metric reference pages, from ``proxy/errors.py``'s class tree and from
the registry of ``proxy/ops/metrics.py``."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics import MetricWrapperBase

from proxy.errors import ProxyError
from proxy.ops.metrics import Metrics

# What a family of each type is exposed as (the text format's sample names).
EXPOSED = {
    "counter": "`{}_total`",
    "info": "`{}_info`",
    "histogram": "`{}` (`_bucket`, `_sum`, `_count`)",
    "gauge": "`{}`",
}


class Undocumented(Exception):
    """An error class without its "what to do", or a metric without help text."""


def tree(
    cls: type[ProxyError] = ProxyError, depth: int = 0
) -> Iterator[tuple[int, type[ProxyError]]]:
    """Every error class, depth first in the order they are declared."""
    yield depth, cls
    for sub in cls.__subclasses__():
        if sub.__module__ == ProxyError.__module__:  # not the tests' own subclasses
            yield from tree(sub, depth + 1)


def errors_page(mark: str) -> str:
    lines = [
        "# Error reference",
        "",
        mark,
        "",
        "Every answer the proxy makes itself (not sipgate's) is JSON with a stable code: "
        '`{"error": "<code>", "message": "<meaning>"}`, and some add fields named below '
        "their code (`login_url`, `client`, `scopes`, …). An answer with a code that is "
        "not here came from sipgate. A code indented under another is a case of it, with "
        "the same status; every 503 carries `Retry-After`.",
        "",
        "| code | status | meaning | what to do |",
        "|---|---|---|---|",
    ]
    for depth, cls in tree():
        what = cls.__dict__.get("what_to_do")
        if not what:
            raise Undocumented(f"{cls.__name__}: no what_to_do in proxy/errors.py")
        code = "&nbsp;&nbsp;&nbsp;&nbsp;" * max(depth - 1, 0) + f"`{cls.code}`"
        lines.append(f"| {code} | {cls.status} | {cls.message} | {what} |")
    lines += [
        "",
        "Besides these, the forward-auth endpoint answers `404 forward_auth_disabled` and "
        "`403 forward_auth_refused` (see [forward auth](../deployment/forward-auth.md)), "
        "the webhook path `405 method_not_allowed`, and the HTTP server its own 400, 408 "
        "and 431 (`http_error`, `bad_request`) for requests it cannot read.",
        "",
    ]
    return "\n".join(lines)


def metrics_page(mark: str) -> str:
    metrics = Metrics()
    lines = [
        "# Metrics reference",
        "",
        mark,
        "",
        "Every series on `/metrics` (Prometheus text format; on the management listener "
        "when `management.listen` is set). Label values are bounded sets the proxy "
        "chooses, never paths, users or anything a client controls. With "
        "`server.workers` > 1 each worker keeps its own counters. Besides these, "
        "prometheus_client adds a `<name>_created` gauge (when the series began) to every "
        "counter and histogram without labels.",
        "",
        "| metric | type | labels | meaning |",
        "|---|---|---|---|",
    ]
    for collector in _collectors(metrics):
        for family in collector.describe():
            if not family.documentation:
                raise Undocumented(f"{family.name}: a metric needs its help text")
            name = EXPOSED[family.type].format(family.name)
            labels = ", ".join(f"`{n}`" for n in _labels(collector, family.type)) or "—"
            lines.append(f"| {name} | {family.type} | {labels} | {family.documentation} |")
    lines.append("")
    return "\n".join(lines)


def _collectors(metrics: Metrics) -> list[MetricWrapperBase]:
    """The registry's collectors (every one a metric), in the order they were registered;
    the registry lists them only in a private mapping."""
    found = list(metrics.registry._collector_to_names)
    assert all(isinstance(c, MetricWrapperBase) for c in found)
    return [c for c in found if isinstance(c, MetricWrapperBase)]


def _labels(collector: MetricWrapperBase, kind: str) -> tuple[str, ...]:
    if kind == "info":  # its labels are the info itself, on its one sample
        return tuple(next(iter(collector.collect())).samples[0].labels)
    names: tuple[str, ...] = getattr(collector, "_labelnames", ())
    return names

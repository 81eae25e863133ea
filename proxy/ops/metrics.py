"""Prometheus metrics, one registry per application (tests run many side by side).

Label values are bounded sets chosen by the proxy (route classes, status codes,
outcomes), never paths, users or anything a client controls.

The series touched by every request (request count, request and upstream durations)
are plain Python numbers in small collectors of our own: prometheus_client's metrics
take a lock per observation (two per histogram observation), which costs more than
the counting itself. Each process serves its requests from one asyncio thread, and a
scrape runs on that thread too, so nothing here is ever updated concurrently. The
collectors render exactly what prometheus_client's Counter and Histogram would for the
same observations (tests/test_hot_path.py compares the two).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import Generic, TypeVar

import prometheus_client.metrics
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import INF, floatToGoString

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
COOKIE_BUCKETS = (512, 1024, 2048, 3072, 4096, 8192, 16384, 32768)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def _use_created() -> bool:
    # The same switch as prometheus_client's own metrics (PROMETHEUS_DISABLE_CREATED_SERIES,
    # disable_created_metrics()), read at scrape time as theirs is.
    return bool(getattr(prometheus_client.metrics, "_use_created", True))


class CounterSeries:
    """One label combination of a LocklessCounter."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self) -> None:
        self.value += 1


Series = TypeVar("Series")


class _Labelled(Generic[Series]):
    """A metric family: one series per label combination, made on first use."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self._name, self._documentation = name, documentation
        self._labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], Series] = {}

    def _new_series(self) -> Series:
        raise NotImplementedError

    def labels(self, *values: str) -> Series:
        series = self._series.get(values)
        if series is None:
            if len(values) != len(self._labelnames):
                raise ValueError("Incorrect label count")
            series = self._series[values] = self._new_series()
        return series


class LocklessCounter(_Labelled[CounterSeries]):
    """A Counter with labels, without a lock per increment (see the module docstring)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
    ) -> None:
        super().__init__(name, documentation, labelnames)
        registry.register(self)

    def _new_series(self) -> CounterSeries:
        return CounterSeries()

    def describe(self) -> list[Metric]:
        return [Metric(self._name, self._documentation, "counter")]

    def collect(self) -> list[Metric]:
        family = Metric(self._name, self._documentation, "counter")
        created = _use_created()
        for values, series in self._series.items():
            labels = dict(zip(self._labelnames, values, strict=True))
            family.add_sample(self._name + "_total", labels, series.value)
            if created:
                family.add_sample(self._name + "_created", labels, series.created)
        return [family]


class HistogramSeries:
    """One label combination of a LocklessHistogram: a count per bucket and the sum."""

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds  # upper bounds, ascending, the last one +Inf
        self.counts = [0] * len(bounds)  # not cumulative: summed up at scrape time
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        self.sum += amount
        # The first bucket whose bound is >= amount; NaN fits none, as in prometheus_client.
        if amount == amount:
            self.counts[bisect_left(self.bounds, amount)] += 1


class LocklessHistogram(_Labelled[HistogramSeries]):
    """A Histogram without a lock per observation (see the module docstring)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: CollectorRegistry,
        labelnames: Sequence[str] = (),
    ) -> None:
        super().__init__(name, documentation, labelnames)
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError("Buckets not in sorted order")
        self._bounds = bounds if bounds[-1] == INF else [*bounds, INF]
        # prometheus_client's own spelling of the bounds ("0.001", "1.0", "+Inf")
        self._le = [floatToGoString(b) for b in self._bounds]  # type: ignore[no-untyped-call]
        self._unlabelled = None if self._labelnames else self.labels()
        registry.register(self)

    def _new_series(self) -> HistogramSeries:
        return HistogramSeries(self._bounds)

    def observe(self, amount: float) -> None:
        """For a histogram without labels; one with labels observes through labels()."""
        if self._unlabelled is None:
            raise ValueError(f"{self._name} has labels: observe through labels()")
        self._unlabelled.observe(amount)

    def describe(self) -> list[Metric]:
        return [Metric(self._name, self._documentation, "histogram")]

    def collect(self) -> list[Metric]:
        family = Metric(self._name, self._documentation, "histogram")
        created = _use_created()
        for values, series in self._series.items():
            labels = dict(zip(self._labelnames, values, strict=True))
            self._add_samples(family, labels, series, created)
        return [family]

    def _add_samples(
        self, family: Metric, labels: dict[str, str], series: HistogramSeries, created: bool
    ) -> None:
        # Sample for sample what prometheus_client's Histogram yields, floats included.
        cumulative = 0.0
        for le, count in zip(self._le, series.counts, strict=True):
            cumulative += count
            family.add_sample(self._name + "_bucket", {**labels, "le": le}, cumulative)
        family.add_sample(self._name + "_count", labels, cumulative)
        if self._bounds[0] >= 0:
            family.add_sample(self._name + "_sum", labels, series.sum)
        if created:
            family.add_sample(self._name + "_created", labels, series.created)


class Metrics:
    def __init__(self) -> None:
        self._children: dict[tuple[str, int], tuple[CounterSeries, HistogramSeries]] = {}
        self.registry = CollectorRegistry()
        r = self.registry
        # Registered in this order, exposed in this order.
        self.requests = LocklessCounter(
            "sipgate_proxy_requests",
            "Requests answered, by route class and HTTP status.",
            ["route", "status"],
            registry=r,
        )
        self.request_seconds = LocklessHistogram(
            "sipgate_proxy_request_duration_seconds",
            "Time from request to the end of the response, by route class.",
            labelnames=["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_seconds = LocklessHistogram(
            "sipgate_proxy_upstream_duration_seconds",
            "Time until the upstream's response headers arrived.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "sipgate_proxy_upstream_errors",
            "Upstream calls that failed, by kind (timeout, unreachable).",
            ["kind"],
            registry=r,
        )
        self.refreshes = Counter(
            "sipgate_proxy_refreshes",
            "Token refreshes by outcome (ok, shared, grace, fatal, transient).",
            ["outcome"],
            registry=r,
        )
        self.logins = Counter(
            "sipgate_proxy_logins",
            "Login callbacks by outcome.",
            ["outcome"],
            registry=r,
        )
        self.upstream_401_retries = Counter(
            "sipgate_proxy_upstream_401_retries",
            "Bodiless requests retried once after an upstream 401 and a forced refresh.",
            registry=r,
        )
        self.session_cookie_bytes = LocklessHistogram(
            "sipgate_proxy_session_cookie_bytes",
            "Size of the session cookies written (all chunks of one session together).",
            buckets=COOKIE_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "sipgate_proxy_store_errors",
            "Requests answered 503 because the session store (Redis) was unavailable.",
            registry=r,
        )
        self.service_identity = Gauge(
            "sipgate_proxy_service_identity_usable",
            "Service mode: 1 while the stored identity can be used, 0 when a sign-in is needed.",
            registry=r,
        )
        self.ready = Gauge("sipgate_proxy_ready", "1 when the proxy is ready to serve.", registry=r)

    def count_request(self, route: str, status: int, seconds: float) -> None:
        children = self._children.get((route, status))
        if children is None:
            children = self._children[(route, status)] = (
                self.requests.labels(route, str(status)),
                self.request_seconds.labels(route),
            )
        children[0].value += 1
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""Prometheus metrics, one registry per application (tests run many side by side).

Label values are bounded sets chosen by the proxy (route classes, status codes,
outcomes), never paths, users or anything a client controls.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
COOKIE_BUCKETS = (512, 1024, 2048, 3072, 4096, 8192, 16384, 32768)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sipgate_proxy_requests",
            "Requests answered, by route class and HTTP status.",
            ["route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "sipgate_proxy_request_duration_seconds",
            "Time from request to the end of the response, by route class.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_seconds = Histogram(
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
        self.session_cookie_bytes = Histogram(
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
        # Label children cached: labels() does a locked dict lookup on every call.
        children = self._children.get((route, status))
        if children is None:
            children = (
                self.requests.labels(route, str(status)),
                self.request_seconds.labels(route),
            )
            self._children[(route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

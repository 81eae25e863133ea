"""The per-request hot path: the metrics exposition as declared with prometheus_client's
own types, one middleware layer doing what the former chain of six did."""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, make_mocked_request
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    enable_created_metrics,
    generate_latest,
)

from proxy import __version__, config
from proxy import request_state as state
from proxy.app import create_app
from proxy.ops import observe
from proxy.ops.metrics import COOKIE_BUCKETS, LATENCY_BUCKETS, Metrics
from tests.conftest import PAT_ENV, ProxyFactory

NOW = 1_700_000_000.125
SPA = "https://app.example"

ClientFactory = Callable[[web.Application], Any]


@pytest.fixture
def fixed_clock() -> Iterator[None]:
    """Every series stamps _created with time.time(): the same instant for both registries."""
    with mock.patch("time.time", return_value=NOW):
        yield


def test_created_series_follow_prometheus_clients_switch(fixed_clock: None) -> None:
    metrics = Metrics()
    metrics.count_request("proxy", 200, 0.2)
    disable_created_metrics()  # type: ignore[no-untyped-call]
    try:
        assert b"_created" not in metrics.render()
    finally:
        enable_created_metrics()  # type: ignore[no-untyped-call]
    assert b"_created" in metrics.render()


class ReferenceMetrics:
    """The proxy's metrics as they were declared with prometheus_client's own classes."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "sipgate_proxy_requests",
            "Requests answered, by route class (proxy, login, health, metrics, forward_auth, "
            "webhooks) and HTTP status.",
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
        self.connections_open = Gauge(
            "sipgate_proxy_connections_open",
            "Connections open on the main listener.",
            registry=r,
        )
        self.connections_refused = Counter(
            "sipgate_proxy_connections_refused",
            "Connections to the main listener answered 503 and closed at once because "
            "server.max_connections were open.",
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
            "Login callbacks by outcome (ok, idp_error, invalid_state, rejected, "
            "idp_unavailable, not_allowed).",
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
        self.client_requests = Counter(
            "sipgate_proxy_client_requests",
            "Shared modes: requests by client (auth.clients[].name) and HTTP status.",
            ["client", "status"],
            registry=r,
        )
        self.policy_denied = Counter(
            "sipgate_proxy_policy_denied",
            "Shared modes: requests refused by the client gate, by client and reason "
            "(credentials, network, policy, rate_limit).",
            ["client", "reason"],
            registry=r,
        )
        self.webhooks = Counter(
            "sipgate_proxy_webhooks",
            "sipgate.io webhooks by event and outcome (delivered, replayed, bad_signature, "
            "source_refused, app_error, bad_request, unavailable).",
            ["event", "outcome"],
            registry=r,
        )
        Info("sipgate_proxy_build", "The running release.", registry=r).info(
            {"version": __version__, "python": platform.python_version()}
        )
        self.service_identity = Gauge(
            "sipgate_proxy_service_identity_usable",
            "Service mode: 1 while the stored identity can be used, 0 when a sign-in is needed.",
            registry=r,
        )
        self.ready = Gauge("sipgate_proxy_ready", "1 when the proxy is ready to serve.", registry=r)

    def count_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)


def test_metrics_exposition_is_unchanged(fixed_clock: None) -> None:
    ours, theirs = Metrics(), ReferenceMetrics()
    assert ours.render() == generate_latest(theirs.registry)  # nothing observed yet
    for metrics in (ours, theirs):
        for route, status, seconds in (
            ("proxy", 200, 0.004),
            ("proxy", 200, 0.0101),
            ("login", 302, 0.25),
            ("proxy", 502, 31.0),
            ("health", 200, 0.0001),
            ("proxy", 404, 0.001),
        ):
            metrics.count_request(route, status, seconds)
        metrics.upstream_seconds.observe(0.003)
        metrics.upstream_seconds.observe(0.5)
        metrics.session_cookie_bytes.observe(3072)
        metrics.session_cookie_bytes.observe(40_000)
        metrics.upstream_errors.labels("timeout").inc()
        metrics.connections_open.set(3)
        metrics.connections_refused.inc()
        metrics.refreshes.labels("ok").inc()
        metrics.logins.labels("ok").inc()
        metrics.upstream_401_retries.inc()
        metrics.store_errors.inc()
        metrics.service_identity.set(1)
        metrics.ready.set(1)
    assert ours.render() == generate_latest(theirs.registry)


# --- the observer --------------------------------------------------------------------


async def observed(aiohttp_client: ClientFactory, noted: dict[web.RequestKey[Any], Any]) -> str:
    """What the observer records for one request whose layers noted ``noted``."""
    metrics = Metrics()

    async def handler(request: web.Request) -> web.Response:
        for key, value in noted.items():
            request[key] = value
        return web.Response()

    app = web.Application(middlewares=[observe.observer(metrics)])
    app.router.add_get("/{tail:.*}", handler)
    client = await aiohttp_client(app)
    async with client.get("/v2/x") as resp:
        assert resp.status == 200
    return metrics.render().decode()


async def test_observer_counts_what_the_layers_noted(aiohttp_client: ClientFactory) -> None:
    text = await observed(
        aiohttp_client,
        {
            state.UPSTREAM_SECONDS: 0.002,
            state.UPSTREAM_ERROR: "timeout",
            state.REFRESH_OUTCOME: "grace",
            state.LOGIN_OUTCOME: "ok",
            state.STORE_ERROR: True,
            state.UPSTREAM_401_RETRIED: True,
            state.SESSION_COOKIE_BYTES: 2000,
        },
    )
    assert 'sipgate_proxy_requests_total{route="proxy",status="200"} 1.0' in text
    assert "sipgate_proxy_upstream_duration_seconds_count 1.0" in text
    assert 'sipgate_proxy_upstream_errors_total{kind="timeout"} 1.0' in text
    assert 'sipgate_proxy_refreshes_total{outcome="grace"} 1.0' in text
    assert 'sipgate_proxy_logins_total{outcome="ok"} 1.0' in text
    assert "sipgate_proxy_store_errors_total 1.0" in text
    assert "sipgate_proxy_upstream_401_retries_total 1.0" in text
    assert 'sipgate_proxy_session_cookie_bytes_bucket{le="2048.0"} 1.0' in text


async def test_observer_counts_flags_only_when_set(aiohttp_client: ClientFactory) -> None:
    noted = {state.STORE_ERROR: False, state.UPSTREAM_401_RETRIED: False}
    text = await observed(aiohttp_client, noted)
    assert "sipgate_proxy_store_errors_total 0.0" in text
    assert "sipgate_proxy_upstream_401_retries_total 0.0" in text
    assert "sipgate_proxy_upstream_duration_seconds_count 0.0" in text


def test_request_id_kept_when_valid_else_made() -> None:
    for sent, kept in (("abc-123", True), ("", False), ("bad id", False), ("x" * 129, False)):
        request = make_mocked_request("GET", "/", headers={"X-Request-ID": sent})
        observe.start(request)
        assert (request[state.REQUEST_ID] == sent) is kept
        assert len(request[state.REQUEST_ID]) == (len(sent) if kept else 32)


# --- middlewares, one per concern -------------------------------------------------------

OAUTH_ENV = {
    "SIPGATE_PROXY_PUBLIC_URL": "http://localhost:8080",
    "SIPGATE_PROXY_UPSTREAM__URL": "http://127.0.0.1:9",
    "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": "http://127.0.0.1:9/realms/test",
    "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": "client",
    "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": "secret",
    "SIPGATE_PROXY_SESSION__ALLOWED_ORIGINS": f"[{SPA}]",
}
PREFLIGHT = {"Origin": SPA, "Access-Control-Request-Method": "POST"}


@pytest.mark.parametrize(
    "env", [{**PAT_ENV, "SIPGATE_PROXY_UPSTREAM__URL": "http://127.0.0.1:9"}, OAUTH_ENV]
)
def test_middlewares_one_per_concern_in_the_documented_order(env: dict[str, str]) -> None:
    app = create_app(config.load(None, env))
    names = [m.__name__ for m in app.middlewares]  # type: ignore[attr-defined]
    assert names == [
        "observe",
        "refuse_faulty_framing",
        "errors_as_json",
        "to_the_proxy",
        "preflight",
    ]
    hooks = [h.__name__ for h in app.on_response_prepare]
    assert hooks == ["add_request_id", "write_cookies", "add_cors_headers"]


async def test_preflight_on_the_proxys_own_routes_passes_the_session_layer(
    aiohttp_client: ClientFactory,
) -> None:
    client: TestClient[web.Request, web.Application] = await aiohttp_client(
        create_app(config.load(None, OAUTH_ENV))
    )
    async with client.options("/oauth2/userinfo", headers=PREFLIGHT) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == SPA
        assert resp.headers["X-Request-ID"]
    async with client.get("/oauth2/userinfo", headers={"Origin": SPA}) as resp:
        assert resp.status == 401  # no session: JSON, with the CORS headers
        assert resp.headers["Access-Control-Allow-Origin"] == SPA
        assert (await resp.json())["error"] == "unauthenticated"
    async with client.get("/metrics") as resp:
        text = await resp.text()
    assert 'sipgate_proxy_requests_total{route="proxy",status="204"} 1.0' in text
    assert 'sipgate_proxy_requests_total{route="login",status="401"} 1.0' in text


async def test_pat_mode_answers_preflights_and_sets_cors_headers(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy({"SIPGATE_PROXY_SESSION__ALLOWED_ORIGINS": f"[{SPA}]"})
    async with aiohttp.ClientSession() as client:
        async with client.options(proxy.make_url("/v2/x"), headers=PREFLIGHT) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == SPA
            assert resp.headers["X-Request-ID"]
        async with client.options(proxy.make_url("/v2/x"), headers={"Origin": SPA}) as resp:
            assert resp.status == 200  # not a preflight: the upstream's to answer
            echoed = await resp.json()
            assert echoed["method"] == "OPTIONS"
            assert resp.headers["Access-Control-Allow-Origin"] == SPA
        async with client.get(
            proxy.make_url("/v2/x"), headers={"Origin": "https://evil.example"}
        ) as resp:
            assert resp.status == 403  # a foreign page: refused, as JSON, without CORS
            assert (await resp.json())["error"] == "cross_site_request"
            assert "Access-Control-Allow-Origin" not in resp.headers
            assert resp.headers["X-Request-ID"]


# --- the Cookie header, parsed once per request ------------------------------------------


async def test_the_cookie_header_is_parsed_once_per_request(
    aiohttp_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cookie that is present but no session: the authenticator loads it, sees it is
    # present, and expires it (three readers); one parse serves them all.
    from proxy.session.cookie_chunks import own_cookies as parse

    parses: list[int] = []

    def counted(headers: Any, name: str) -> dict[str, str]:
        parses.append(1)
        return parse(headers, name)

    monkeypatch.setattr("proxy.session.request_cookies.own_cookies", counted)
    client: TestClient[web.Request, web.Application] = await aiohttp_client(
        create_app(config.load(None, OAUTH_ENV))
    )
    cookie = {"Cookie": "a=1; sipgate_proxy_0=1.garbage; b=2", "Accept": "application/json"}
    async with client.get("/v2/account", headers=cookie) as resp:
        assert resp.status == 401
        assert "sipgate_proxy_0=;" in resp.headers["Set-Cookie"]  # expired
    assert len(parses) == 1

"""OpenTelemetry traces, checked at a real OTLP/HTTP collector stand-in (tests/support/otlp.py)
that decodes what the proxy's SDK exports: one trace per request, continuing the caller's,
with the session load, the refresh and the upstream call as its children, and never a
token in an attribute."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import CLIENT_SECRET, PAT_ENV, OAuthStack, ProxyFactory, StackFactory
from tests.support.otlp import RECEIVER, Received, ReceivedSpan, create_collector_app
from tests.support.processes import free_port, running
from tests.support.scripted_browser import ScriptedBrowser
from tests.support.secrets import WATCH
from tests.support.upstream import create_upstream_app

JSON = {"Accept": "application/json"}
SERVER, INTERNAL, CLIENT = 2, 1, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
COLLECTOR_KEY = "collector-api-key-" + secrets.token_hex(8)
WATCH.add(COLLECTOR_KEY)
# version, trace id, parent id, flags (sampled; 03: its trace id is random, W3C level 2)
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-0[13]")


@pytest.fixture(autouse=True)
def export_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's batch processor waits 5 s between exports by default."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")


@pytest.fixture
async def collector(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    return await aiohttp_server(create_collector_app())


def tracing_env(collector: TestServer) -> dict[str, str]:
    return {
        "SIPGATE_PROXY_TRACING__OTLP_ENDPOINT": str(collector.make_url("")).rstrip("/"),
        "SIPGATE_PROXY_TRACING__HEADERS": f"{{x-api-key: {COLLECTOR_KEY}}}",
    }


def received(collector: TestServer) -> Received:
    return collector.app[RECEIVER]


def new_traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def upstream_saw(body: str, name: str) -> list[str]:
    return [v for k, v in json.loads(body)["headers"] if k.lower() == name]


def upstream_parent(body: str) -> tuple[str, str]:
    """The trace and parent id of the one traceparent the upstream saw (sampled)."""
    (traceparent,) = upstream_saw(body, "traceparent")
    match = TRACEPARENT.fullmatch(traceparent)
    assert match is not None, traceparent
    return match[1], match[2]


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "proxy.access"]


def one(spans: list[ReceivedSpan], name: str, kind: int = INTERNAL) -> ReceivedSpan:
    (found,) = [s for s in spans if s.name == name and s.span.kind == kind]
    return found


def attribute_values(spans: list[ReceivedSpan]) -> list[str]:
    values = [str(v) for s in spans for v in (*s.attributes.values(), *s.resource.values())]
    return values + [e.name for s in spans for e in s.span.events]


def idp_issued(stack: OAuthStack) -> set[str]:
    """Refresh tokens, grants, codes and sessions in the IdP's state file (their ids)."""
    state = json.loads(stack.idp.state_path.read_text())
    return {str(e["id"]) for e in state.get("entries", []) if len(str(e.get("id", ""))) >= 12}


# --- one refreshing request, end to end ---------------------------------------------------


async def test_refreshing_request_is_one_trace_that_continues_the_callers(
    oauth_stack: StackFactory, collector: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    env = {**tracing_env(collector), "SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "4"}
    stack = await oauth_stack(env, access_ttl=8)
    traceparent, trace_id, caller_span = new_traceparent()
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "alice", "/")
        await asyncio.sleep(4.2)  # within the skew: this request refreshes
        caplog.clear()
        headers = {**JSON, "traceparent": traceparent, "tracestate": "caller=1"}
        url = f"{stack.public_url}/v2/account?secret_query=swordfish"
        status, _, body, _ = await browser.request("GET", url, headers=headers)
        cookies = browser.jar(stack.public_url)
    assert status == 200
    await received(collector).wait_for(
        lambda spans: len([s for s in spans if s.trace_id == trace_id]) >= 6
    )
    chain = received(collector).trace(trace_id)
    request = one(chain, "GET", SERVER)  # a proxied request is named by its method alone
    assert request.parent_id == caller_span
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["url.path"] == "/v2/account"
    load, refresh, save = (
        one(chain, "session load"),
        one(chain, "refresh"),
        one(chain, "session save"),
    )
    assert {load.parent_id, refresh.parent_id, save.parent_id} == {request.span_id}
    assert refresh.attributes["sipgate_proxy.refresh.outcome"] == "ok"
    assert load.attributes["sipgate_proxy.session.found"] is True
    (idp_call,) = [s for s in chain if s.attributes.get("sipgate_proxy.peer") == "idp"]
    assert (idp_call.span.kind, idp_call.parent_id) == (CLIENT, refresh.span_id)
    (upstream_call,) = [s for s in chain if s.attributes.get("sipgate_proxy.peer") == "upstream"]
    assert (upstream_call.span.kind, upstream_call.parent_id) == (CLIENT, request.span_id)
    assert upstream_call.attributes["http.response.status_code"] == 200
    # the upstream's parent is the proxy's CLIENT span, with the caller's tracestate kept
    assert upstream_parent(body) == (trace_id, upstream_call.span_id)
    assert upstream_saw(body, "tracestate") == ["caller=1"]
    (line,) = access_lines(caplog)
    assert (line.trace_id, line.span_id) == (trace_id, request.span_id)  # type: ignore[attr-defined]
    secrets_seen = {*stack.verifier.tokens_seen, *cookies.values(), *idp_issued(stack)}
    secrets_seen |= {CLIENT_SECRET, COLLECTOR_KEY, "swordfish"}
    values = attribute_values(received(collector).spans)
    assert [v for v in values for s in secrets_seen if s in v] == []
    assert not any("bearer" in v.lower() for v in values)
    assert all(h.get("x-api-key") == COLLECTOR_KEY for h in received(collector).headers)


# --- where a trace starts ---------------------------------------------------------------


async def traced_get(
    make_proxy: ProxyFactory, collector: TestServer, headers: dict[str, str]
) -> tuple[str, ReceivedSpan, ReceivedSpan]:
    proxy = await make_proxy(tracing_env(collector))
    async with aiohttp.ClientSession() as client:
        async with client.get(proxy.make_url("/v2/account"), headers=headers) as resp:
            assert resp.status == 200
            body = await resp.text()
    spans = await received(collector).wait_for(lambda spans: len(spans) >= 2)
    server = next(s for s in spans if s.span.kind == SERVER)
    client_span = next(s for s in spans if s.span.kind == CLIENT)
    return body, server, client_span


async def test_request_without_traceparent_starts_a_trace(
    make_proxy: ProxyFactory, collector: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    body, server, client_span = await traced_get(make_proxy, collector, {})
    assert server.parent_id == ""
    assert len(server.trace_id) == 32
    assert (client_span.trace_id, client_span.parent_id) == (server.trace_id, server.span_id)
    assert upstream_parent(body) == (server.trace_id, client_span.span_id)
    assert upstream_saw(body, "tracestate") == []
    (line,) = access_lines(caplog)
    assert line.trace_id == server.trace_id  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "traceparent",
    ["garbage", "00-" + "0" * 32 + "-" + "1" * 16 + "-01", "00-abc-def-01", "ff-" + "1" * 49],
)
async def test_malformed_traceparent_starts_a_new_trace(
    make_proxy: ProxyFactory, collector: TestServer, traceparent: str
) -> None:
    headers = {"traceparent": traceparent, "tracestate": "stale=1"}
    body, server, client_span = await traced_get(make_proxy, collector, headers)
    assert server.parent_id == ""
    # neither the malformed field nor its tracestate reaches the upstream
    assert upstream_parent(body) == (server.trace_id, client_span.span_id)
    assert upstream_saw(body, "tracestate") == []


async def test_error_answer_marks_the_request_span_failed(
    make_proxy: ProxyFactory, collector: TestServer
) -> None:
    proxy = await make_proxy(tracing_env(collector))
    async with aiohttp.ClientSession() as client:
        async with client.get(proxy.make_url("/__test/status/503")) as resp:
            assert resp.status == 503
    spans = await received(collector).wait_for(lambda spans: len(spans) >= 2)
    server = next(s for s in spans if s.span.kind == SERVER)
    assert server.span.status.code == 2  # STATUS_CODE_ERROR
    assert server.attributes["error.type"] == "503"


# --- who decides: the caller's sampled flag, or the proxy alone ---------------------------


async def spans_of_sampled_callers(
    make_proxy: ProxyFactory, collector: TestServer, env: dict[str, str], count: int = 20
) -> tuple[list[str], list[str], list[ReceivedSpan]]:
    """``count`` requests, each with its own sampled traceparent, to a proxy that samples
    nothing itself (sample_ratio 0); its spans once it stopped (stopping flushes them)."""
    proxy = await make_proxy(
        {**tracing_env(collector), **env, "SIPGATE_PROXY_TRACING__SAMPLE_RATIO": "0"}
    )
    callers, bodies = [], []
    async with aiohttp.ClientSession() as client:
        for _ in range(count):
            traceparent, trace_id, span_id = new_traceparent()
            headers = {"traceparent": traceparent, "tracestate": "caller=1"}
            async with client.get(proxy.make_url("/v2/account"), headers=headers) as resp:
                assert resp.status == 200
                bodies.append(await resp.text())
            callers.append(f"{trace_id}-{span_id}")
    await proxy.close()
    return callers, bodies, received(collector).spans


async def test_a_callers_sampled_flag_is_followed_when_incoming_context_is_trusted(
    make_proxy: ProxyFactory, collector: TestServer
) -> None:
    """tracing.trust_incoming: true (the default): the caller's decision wins."""
    callers, _, spans = await spans_of_sampled_callers(make_proxy, collector, {})
    assert len(spans) == 40  # the request's span and the upstream call's, each
    servers = [s for s in spans if s.span.kind == SERVER]
    assert sorted(f"{s.trace_id}-{s.parent_id}" for s in servers) == sorted(callers)


async def test_untrusted_incoming_context_starts_a_root_trace_that_links_the_callers(
    make_proxy: ProxyFactory, collector: TestServer
) -> None:
    untrusted = {"SIPGATE_PROXY_TRACING__TRUST_INCOMING": "false"}
    _, bodies, spans = await spans_of_sampled_callers(make_proxy, collector, untrusted)
    assert spans == []  # sample_ratio 0 is the proxy's word: nothing is exported
    for body in bodies:  # the upstream sees no caller's context, and nothing sampled
        (traceparent,) = upstream_saw(body, "traceparent")
        assert int(traceparent.rsplit("-", 1)[1], 16) & 1 == 0  # not sampled
        assert upstream_saw(body, "tracestate") == []
    # Sampled by the proxy itself: a root of its own, the caller's span only linked.
    traceparent, trace_id, caller_span = new_traceparent()
    headers = {"traceparent": traceparent, "tracestate": "caller=1"}
    proxy = await make_proxy({**tracing_env(collector), **untrusted})
    async with aiohttp.ClientSession() as client:
        async with client.get(proxy.make_url("/v2/account"), headers=headers) as resp:
            body = await resp.text()
    spans = await received(collector).wait_for(lambda spans: len(spans) >= 2)
    server = next(s for s in spans if s.span.kind == SERVER)
    assert server.parent_id == ""
    assert server.trace_id != trace_id
    assert [(link.trace_id.hex(), link.span_id.hex()) for link in server.span.links] == [
        (trace_id, caller_span)
    ]
    client_span = next(s for s in spans if s.span.kind == CLIENT)
    assert upstream_parent(body) == (server.trace_id, client_span.span_id)
    assert upstream_saw(body, "tracestate") == []


# --- tracing off: nothing changes -----------------------------------------------------------


async def test_tracing_off_passes_the_callers_trace_context_on_and_logs_no_ids(
    make_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await make_proxy()
    traceparent, _, _ = new_traceparent()
    headers = {"traceparent": traceparent, "tracestate": "caller=1"}
    async with aiohttp.ClientSession() as client:
        async with client.get(proxy.make_url("/v2/account"), headers=headers) as resp:
            body = await resp.text()
    assert upstream_saw(body, "traceparent") == [traceparent]  # as before tracing existed
    assert upstream_saw(body, "tracestate") == ["caller=1"]
    (line,) = access_lines(caplog)
    assert not hasattr(line, "trace_id")
    assert not hasattr(line, "span_id")


# --- a collector that is not there --------------------------------------------------------


async def test_requests_succeed_and_one_warning_when_the_collector_is_down(
    make_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    env = {
        "SIPGATE_PROXY_TRACING__OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "SIPGATE_PROXY_TRACING__TIMEOUT": "0.5",
    }
    proxy = await make_proxy(env)
    async with aiohttp.ClientSession() as client:
        for _ in range(3):
            for _ in range(20):
                async with client.get(proxy.make_url("/v2/account")) as resp:
                    assert resp.status == 200
            await asyncio.sleep(0.6)  # batches go out and fail meanwhile
    failing = [r for r in caplog.records if r.name.startswith("opentelemetry")]
    assert len(failing) == 1  # rate-limited: at most one a minute
    assert failing[0].getMessage().startswith("trace export failing")


# --- workers: each its own provider, every span flushed at SIGTERM ---------------------------


async def test_two_workers_export_their_spans_and_flush_them_at_sigterm(
    aiohttp_server: Callable[..., Awaitable[TestServer]], collector: TestServer, tmp_path: Path
) -> None:
    upstream = await aiohttp_server(create_upstream_app())
    port = free_port()
    env = {
        **PAT_ENV,
        **tracing_env(collector),
        "SIPGATE_PROXY_LISTEN__PORT": str(port),
        "SIPGATE_PROXY_UPSTREAM__URL": str(upstream.make_url("")).rstrip("/"),
        "SIPGATE_PROXY_SERVER__WORKERS": "2",
        "OTEL_BSP_SCHEDULE_DELAY": "600000",  # nothing is exported before the shutdown
    }
    requests = 0
    with running(["-m", "proxy"], port, env, log=tmp_path / "proxy.log") as proxy:
        connector = aiohttp.TCPConnector(force_close=True)  # new connections: both workers
        async with aiohttp.ClientSession(connector=connector) as client:
            deadline = asyncio.get_running_loop().time() + 3  # the second worker is up by then
            while asyncio.get_running_loop().time() < deadline:
                async with client.get(f"http://127.0.0.1:{port}/v2/account") as resp:
                    assert resp.status == 200
                requests += 1
                await asyncio.sleep(0.02)
        assert received(collector).spans == []  # all still in the workers' queues
        proxy.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proxy.wait, 30) == 0
    spans = received(collector).spans
    servers = [s for s in spans if s.span.kind == SERVER and s.name == "GET"]
    assert len(servers) == requests  # none lost
    assert len({s.resource["process.pid"] for s in servers}) == 2
    assert all(s.resource["service.name"] == "sipgate-auth-proxy" for s in servers)
    assert os.getpid() not in {s.resource["process.pid"] for s in servers}

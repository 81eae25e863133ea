"""Two proxy processes sharing Redis, the real IdP with refresh-token rotation on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from proxy.crypto.keys import generate_key
from tests.conftest import CLIENT_ID, CLIENT_SECRET
from tests.support.idp import RunningIdP
from tests.support.processes import free_port, running
from tests.support.redis_server import RedisServer
from tests.support.scripted_browser import ScriptedBrowser
from tests.support.upstream import VERIFIER, create_upstream_app

# 8 s tokens, 4 s skew: a refresh is due 4 s after it was issued, the token still valid
DUE = 4.2

JSON = {"Accept": "application/json"}


@dataclass
class Replicas:
    idp: RunningIdP
    upstream: TestServer
    urls: list[str]

    def grants(self, outcome: str | None = "success") -> int:
        return self.idp.token_calls("refresh_token", outcome)


@pytest.fixture
def replicas_factory(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    idp_factory: Callable[..., RunningIdP],
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> Iterator[Callable[..., Awaitable[Replicas]]]:
    """Two proxies on one Redis: the redis_server fixture's, unless ``redis`` says
    where (the session.redis_* variables of a Sentinel set or a Cluster)."""
    stack = ExitStack()

    async def start(
        env: dict[str, str] | None = None, redis: dict[str, str] | None = None, **idp_options: Any
    ) -> Replicas:
        if redis is None:
            server: RedisServer = request.getfixturevalue("redis_server")
            redis = {"SIPGATE_PROXY_SESSION__REDIS_URL": server.url}
        ports = [free_port(), free_port()]
        urls = [f"http://localhost:{port}" for port in ports]
        idp = idp_factory(f"{urls[0]}/oauth2/callback", **idp_options)
        upstream = await aiohttp_server(create_upstream_app(jwks_url=idp.jwks_uri))
        await upstream.app[VERIFIER].keys()
        common = {
            "SIPGATE_PROXY_UPSTREAM__URL": str(upstream.make_url("")).rstrip("/"),
            "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": idp.issuer,
            "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": CLIENT_ID,
            "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": CLIENT_SECRET,
            "SIPGATE_PROXY_SESSION__STORE": "redis",
            **redis,
            "SIPGATE_PROXY_SESSION__KEYS": f"[{generate_key()}]",
            **(env or {}),
        }
        for index, (port, url) in enumerate(zip(ports, urls, strict=True)):
            proxy_env = {
                **common,
                "SIPGATE_PROXY_LISTEN__PORT": str(port),
                "SIPGATE_PROXY_PUBLIC_URL": url,
            }
            log = tmp_path / f"proxy{index}.log"
            stack.enter_context(running(["-m", "proxy"], port, proxy_env, log=log))
        return Replicas(idp, upstream, urls)

    yield start
    stack.close()


async def spread(urls: list[str], cookie: str, count: int) -> list[int]:
    """``count`` concurrent requests with one cookie, alternating between the replicas."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as client:

        async def one(i: int) -> int:
            url = f"{urls[i % len(urls)]}/v2/account?i={i}"
            async with client.get(url, headers={**JSON, "Cookie": cookie}) as resp:
                await resp.read()
                return resp.status

        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def logged_in_cookie(replicas: Replicas, user: str) -> str:
    async with ScriptedBrowser() as browser:
        await browser.login(replicas.urls[0], user, "/")
        return "; ".join(f"{k}={v}" for k, v in browser.jar(replicas.urls[0]).items())


async def test_two_replicas_refresh_one_session_exactly_once(
    replicas_factory: Callable[..., Awaitable[Replicas]],
) -> None:
    replicas = await replicas_factory(
        {"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "4"}, access_ttl=8
    )
    cookie = await logged_in_cookie(replicas, "alice")
    await asyncio.sleep(DUE)  # inside the skew: every request wants a refresh
    statuses = await spread(replicas.urls, cookie, 200)
    assert statuses == [200] * 200
    assert replicas.grants(None) == 1
    # and the session lives on: the next refresh (with the rotated token) works too
    await asyncio.sleep(DUE)
    assert await spread(replicas.urls, cookie, 20) == [200] * 20
    assert replicas.grants(None) == 2
    assert replicas.idp.token_calls("refresh_token", "invalid_grant") == 0


async def test_lock_is_renewed_while_a_slow_idp_answers(
    replicas_factory: Callable[..., Awaitable[Replicas]],
) -> None:
    replicas = await replicas_factory(
        {
            "SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "4",
            "SIPGATE_PROXY_SESSION__REDIS_LOCK_TTL": "0.5",
        },
        access_ttl=8,
    )
    cookie = await logged_in_cookie(replicas, "bob")
    replicas.idp.set_faults(token_delay_ms=2000, count=1)  # 4 times the lock's initial TTL
    await asyncio.sleep(DUE)
    statuses = await spread(replicas.urls, cookie, 40)
    assert statuses == [200] * 40
    await asyncio.sleep(0.5)
    assert replicas.grants(None) == 1


async def test_redis_stopped_gives_503_and_sessions_survive_its_restart(
    replicas_factory: Callable[..., Awaitable[Replicas]], redis_server: RedisServer
) -> None:
    replicas = await replicas_factory()
    cookie = await logged_in_cookie(replicas, "carol")
    assert await spread(replicas.urls, cookie, 4) == [200] * 4
    redis_server.stop()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        headers = {**JSON, "Cookie": cookie}
        async with client.get(f"{replicas.urls[1]}/v2/account", headers=headers) as resp:
            assert resp.status == 503
            assert int(resp.headers["Retry-After"]) > 0
            assert json.loads(await resp.text())["error"] == "session_store_unavailable"
            assert "Set-Cookie" not in resp.headers  # never a silent logout
        async with client.get(f"{replicas.urls[0]}/readyz") as resp:
            assert resp.status == 503
        async with client.get(f"{replicas.urls[0]}/metrics") as resp:
            assert "sipgate_proxy_store_errors_total 0.0" in await resp.text()
        async with client.get(f"{replicas.urls[1]}/metrics") as resp:
            assert "sipgate_proxy_store_errors_total 1.0" in await resp.text()
    redis_server.start()
    assert await spread(replicas.urls, cookie, 4) == [200] * 4

"""Service mode: one operator login, then headless clients with no cookies, for as long
as the grant lives; restarts resume from the stored state; a lost grant says so."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy import config
from proxy.app import create_app
from proxy.crypto.keys import generate_key
from proxy.server import handler_args
from tests.conftest import CLIENT_ID, CLIENT_SECRET
from tests.support.idp import RunningIdP, browser_login
from tests.support.processes import free_port
from tests.support.scripted_browser import NAVIGATION, ScriptedBrowser
from tests.support.upstream import VERIFIER, create_upstream_app

# 8 s tokens, 4 s skew: a refresh is due 4 s after it was issued, the token still valid
DUE = 4.2

OPERATOR = "ops@example.com"


@dataclass
class ServiceStack:
    idp: RunningIdP
    upstream: TestServer
    proxy: TestServer
    public_url: str
    restart: Callable[[], Awaitable[TestServer]]

    def grants(self) -> int:
        return self.idp.token_calls("refresh_token", "success")


@pytest.fixture
def service_stack(
    tmp_path: Path,
    idp_factory: Callable[..., RunningIdP],
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> Callable[..., Awaitable[ServiceStack]]:
    async def start(env: dict[str, str] | None = None, **idp_options: Any) -> ServiceStack:
        port = free_port()
        public_url = f"http://localhost:{port}"
        idp = idp_factory(f"{public_url}/oauth2/callback", **idp_options)
        upstream = await aiohttp_server(create_upstream_app(jwks_url=idp.jwks_uri))
        await upstream.app[VERIFIER].keys()
        settings = config.load(
            None,
            {
                "SIPGATE_PROXY_AUTH__MODE": "service",
                "SIPGATE_PROXY_PUBLIC_URL": public_url,
                "SIPGATE_PROXY_UPSTREAM__URL": str(upstream.make_url("")).rstrip("/"),
                "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": idp.issuer,
                "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": CLIENT_ID,
                "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": CLIENT_SECRET,
                "SIPGATE_PROXY_AUTH__SERVICE__ALLOWED_SUBJECTS": f"[{OPERATOR}]",
                "SIPGATE_PROXY_AUTH__SERVICE__STATE_FILE": str(tmp_path / "identity.sealed"),
                "SIPGATE_PROXY_SESSION__KEYS": f"[{generate_key()}]",
                **(env or {}),
            },
        )

        async def launch() -> TestServer:
            app: web.Application = create_app(settings)
            return await aiohttp_server(app, port=port, **handler_args(settings))

        stack = ServiceStack(idp, upstream, await launch(), public_url, launch)
        return stack

    return start


async def call_api(stack: ServiceStack, path: str = "/v2/account") -> tuple[int, Any]:
    """A headless legacy client: no cookies, no Authorization, just the proxy's address."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        async with client.get(f"{stack.public_url}{path}") as resp:
            return resp.status, json.loads(await resp.text())


async def test_operator_signs_in_in_a_browser_then_clients_ride_many_expiries(
    service_stack: Callable[..., Awaitable[ServiceStack]], page: object
) -> None:
    from playwright.async_api import Page

    assert isinstance(page, Page)
    ttl = 2
    stack = await service_stack({"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "1"}, access_ttl=ttl)
    status, body = await call_api(stack)
    assert status == 503
    assert body["error"] == "service_identity_missing"
    assert f"{stack.public_url}/oauth2/start" in body["message"]

    await page.goto(f"{stack.public_url}/oauth2/start")
    await browser_login(page, OPERATOR)
    assert "now calls the sipgate API as" in await page.inner_text("body")

    started, statuses = time.monotonic(), []
    lifetimes = 6
    while time.monotonic() - started < lifetimes * ttl:
        status, body = await call_api(stack)
        statuses.append(status)
        assert body.get("jwt_sub") == OPERATOR
        await asyncio.sleep(0.7)
    assert set(statuses) == {200}
    assert stack.grants() >= lifetimes - 1
    status, info = await call_api(stack, "/oauth2/service")
    assert info["state"] == "ok"
    assert info["subject"] == OPERATOR
    assert info["last_refresh"] is not None


async def test_background_refresh_keeps_identity_without_any_client(
    service_stack: Callable[..., Awaitable[ServiceStack]],
) -> None:
    stack = await service_stack({"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "1"}, access_ttl=2)
    async with ScriptedBrowser() as browser:
        status, _, _ = await browser.sign_in(stack.public_url, OPERATOR)
    assert status == 200
    await asyncio.sleep(6.5)  # three access-token lifetimes with nobody calling
    assert stack.grants() >= 3
    assert (await call_api(stack))[0] == 200


async def test_restart_resumes_from_the_stored_state(
    service_stack: Callable[..., Awaitable[ServiceStack]], tmp_path: Path
) -> None:
    stack = await service_stack()
    async with ScriptedBrowser() as browser:
        await browser.sign_in(stack.public_url, OPERATOR)
    assert (await call_api(stack))[0] == 200
    state = (tmp_path / "identity.sealed").read_bytes()
    assert stack.idp.issuer.encode() not in state  # sealed, not plain tokens
    assert (tmp_path / "identity.sealed").stat().st_mode & 0o777 == 0o600
    await stack.proxy.close()
    stack.proxy = await stack.restart()
    status, body = await call_api(stack)
    assert status == 200
    assert body["jwt_sub"] == OPERATOR


async def test_revoked_grant_gives_503_metric_and_stays_ready(
    service_stack: Callable[..., Awaitable[ServiceStack]],
) -> None:
    stack = await service_stack({"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "4"}, access_ttl=8)
    async with ScriptedBrowser() as browser:
        await browser.sign_in(stack.public_url, OPERATOR)
    stack.idp.revoke_subject(OPERATOR)
    await asyncio.sleep(DUE)  # now a refresh is due
    status, body = await call_api(stack)
    assert status == 503
    assert body["error"] == "service_identity_missing"
    assert "sign in again" in body["message"]
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{stack.public_url}/readyz") as resp:
            assert resp.status == 200
        async with client.get(f"{stack.public_url}/metrics") as resp:
            assert "sipgate_proxy_service_identity_usable 0.0" in await resp.text()
    _, info = await call_api(stack, "/oauth2/service")
    assert info["state"] == "sign_in_required"
    # an operator signs in again: back in service
    async with ScriptedBrowser() as browser:
        await browser.sign_in(stack.public_url, OPERATOR)
    assert (await call_api(stack))[0] == 200


async def test_disallowed_subject_cannot_become_the_identity(
    service_stack: Callable[..., Awaitable[ServiceStack]],
) -> None:
    stack = await service_stack()
    async with ScriptedBrowser() as browser:
        status, _, body = await browser.sign_in(stack.public_url, "mallory@example.com")
    assert status == 403
    assert "not in" in body
    status, answer = await call_api(stack)
    assert status == 503
    assert answer["error"] == "service_identity_missing"
    assert stack.upstream.app[VERIFIER].accepted == 0


async def test_operator_routes_refuse_web_pages_when_host_or_origin_is_foreign(
    service_stack: Callable[..., Awaitable[ServiceStack]],
) -> None:
    stack = await service_stack()
    port = stack.proxy.port
    rebound = {"Host": f"evil.example:{port}", "Sec-Fetch-Site": "same-origin"}
    cross_site = {**NAVIGATION, "Sec-Fetch-Site": "cross-site"}
    foreign_origin = {"Origin": "https://evil.example"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        for path, headers in [
            ("/oauth2/service", rebound),  # a DNS-rebinding page reading the status
            ("/oauth2/start", rebound),
            ("/oauth2/start", cross_site),  # a link or frame on another site
            ("/oauth2/start", foreign_origin),
            ("/oauth2/service", foreign_origin),
        ]:
            url = f"{stack.public_url}{path}"
            async with client.get(url, headers=headers, allow_redirects=False) as resp:
                assert resp.status == 403, (path, headers)
                assert (await resp.json())["error"] == "cross_site_request"
        typed = {**NAVIGATION, "Sec-Fetch-Site": "none"}  # the operator types the URL
        url = f"{stack.public_url}/oauth2/start"
        async with client.get(url, headers=typed, allow_redirects=False) as resp:
            assert resp.status == 302
        async with client.get(f"{stack.public_url}/oauth2/service") as resp:  # curl
            assert resp.status == 200
    assert stack.idp.stats()["authorization"] == 0  # no refused start reached the IdP


async def test_replaced_identity_grant_is_revoked_at_the_idp(
    service_stack: Callable[..., Awaitable[ServiceStack]],
) -> None:
    backup = "backup@example.com"
    stack = await service_stack(
        {"SIPGATE_PROXY_AUTH__SERVICE__ALLOWED_SUBJECTS": f"[{OPERATOR}, {backup}]"}
    )
    async with ScriptedBrowser() as first, ScriptedBrowser() as second:
        assert (await first.sign_in(stack.public_url, OPERATOR))[0] == 200
        assert (await second.sign_in(stack.public_url, backup))[0] == 200
        assert stack.idp.stats().get("revocation", {}) == {"success": 1}
        assert [g["sub"] for g in stack.idp.grants()] == [backup]
        # the same person again, in the same IdP session: the same grant, kept
        assert (await second.sign_in(stack.public_url, backup))[0] == 200
    assert stack.idp.stats().get("revocation", {}) == {"success": 1}
    assert [g["sub"] for g in stack.idp.grants()] == [backup]
    status, body = await call_api(stack)
    assert (status, body["jwt_sub"]) == (200, backup)


async def test_refused_sign_in_grant_is_revoked_at_the_idp(
    service_stack: Callable[..., Awaitable[ServiceStack]],
) -> None:
    stack = await service_stack()
    async with ScriptedBrowser() as operator, ScriptedBrowser() as mallory:
        assert (await operator.sign_in(stack.public_url, OPERATOR))[0] == 200
        assert (await mallory.sign_in(stack.public_url, "mallory@example.com"))[0] == 403
    assert stack.idp.stats().get("revocation", {}) == {"success": 1}
    assert [g["sub"] for g in stack.idp.grants()] == [OPERATOR]
    status, body = await call_api(stack)
    assert (status, body["jwt_sub"]) == (200, OPERATOR)

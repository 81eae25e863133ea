"""/oauth2/auth behind a real nginx auth_request, configured as README shows."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from tests.conftest import ProxyFactory, StackFactory, require
from tests.support.nginx import AUTH_REQUEST_SITE, nginx, nginx_available
from tests.support.processes import free_port
from tests.support.scripted_browser import ScriptedBrowser


async def test_nginx_auth_request_injects_the_session_bearer(
    oauth_stack: StackFactory, tmp_path: Path
) -> None:
    require(*nginx_available())
    stack = await oauth_stack()
    port = free_port()
    site = AUTH_REQUEST_SITE.format(
        upstream=str(stack.upstream.make_url("")).rstrip("/"), proxy=stack.public_url
    )
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "nina", "/")
        cookie = browser.jar(stack.public_url)
        with nginx(tmp_path / "nginx", port, site):
            front = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
                headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookie.items())}
                async with client.get(f"{front}/v2/account?via=nginx", headers=headers) as r:
                    assert r.status == 200
                    echoed = json.loads(await r.text())
                async with client.get(f"{front}/v2/account") as r:
                    assert r.status == 401  # no session: nginx answers the auth's 401
                cross = {**headers, "Origin": "https://evil.example"}
                async with client.post(f"{front}/v2/sessions/sms", headers=cross) as r:
                    assert r.status == 403  # CSRF checked on the original method
    assert echoed["jwt_sub"] == "nina"
    assert echoed["raw_path"] == "/v2/account?via=nginx"
    assert stack.verifier.accepted == 1


async def test_forward_auth_answers_202_with_header_or_401(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    async with aiohttp.ClientSession() as client:
        async with client.get(proxy.make_url("/oauth2/auth")) as resp:
            assert resp.status == 202
            assert resp.headers["Authorization"].startswith("Basic ")


async def test_forward_auth_never_redirects(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack()
    async with aiohttp.ClientSession() as client:
        headers = {"Accept": "text/html", "Sec-Fetch-Mode": "navigate", "X-Original-URI": "/v2/x"}
        async with client.get(
            f"{stack.public_url}/oauth2/auth", headers=headers, allow_redirects=False
        ) as resp:
            assert resp.status == 401
            body = await resp.json()
    assert body["login_url"] == f"{stack.public_url}/oauth2/start?rd=/v2/x"

"""/oauth2/auth: who may ask (only the front proxy), what it answers, and the nginx and
Traefik recipes of docs/deployment/forward-auth.md run across refreshes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from proxy import config
from proxy.app import create_app, create_management_app
from proxy.crypto.keys import generate_key
from proxy.server import handler_args
from tests.conftest import CLIENT_ID, CLIENT_SECRET, ProxyFactory, StackFactory, require
from tests.support.idp import RunningIdP
from tests.support.nginx import (
    FRONT_SECRET,
    auth_request_site,
    error_log,
    nginx,
    nginx_available,
    recipe_block,
)
from tests.support.processes import free_port
from tests.support.scripted_browser import ScriptedBrowser
from tests.support.traefik import SEEN, create_traefik_app, traefik_config
from tests.support.upstream import VERIFIER, create_upstream_app

ServerFactory = Callable[..., Awaitable[TestServer]]
ENABLED = {
    "SIPGATE_PROXY_FORWARD_AUTH__ENABLED": "true",
    "SIPGATE_PROXY_FORWARD_AUTH__SECRET": FRONT_SECRET,
}
# What the front proxy adds to every auth subrequest (and the original method: the shared
# modes need it).
FRONT = {"X-Sipgate-Forward-Auth-Secret": FRONT_SECRET, "X-Original-Method": "GET"}
COOKIE = "sipgate_proxy"
# What a browser's fetch() of a same-origin API adds; the recipes must not pass it on.
FETCH = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}
REFRESH_DUE = 4.2  # access_ttl 8, refresh_skew 4: after this, every request refreshes


@dataclass
class Peers:
    idp: RunningIdP
    upstream: TestServer
    public_url: str
    proxy: TestServer
    management: TestServer | None
    start_replica: Callable[[], Awaitable[TestServer]]

    @property
    def proxy_url(self) -> str:
        return str(self.proxy.make_url("")).rstrip("/")


@pytest.fixture
def peers(
    aiohttp_server: ServerFactory, idp_factory: Callable[..., RunningIdP], tmp_path: Path
) -> Callable[..., Awaitable[Peers]]:
    """IdP with 30 s access tokens, an upstream that verifies them, the proxy (and its
    management listener when configured); ``start_replica`` starts another proxy with the
    same settings and keys: a fresh process with no grace cache, as a minute later."""

    async def start(
        env: dict[str, str] | None = None, config_text: str | None = None, **idp_options: Any
    ) -> Peers:
        port = free_port()
        public_url = f"http://localhost:{port}"
        idp = idp_factory(f"{public_url}/oauth2/callback", access_ttl=8, **idp_options)
        upstream = await aiohttp_server(create_upstream_app(jwks_url=idp.jwks_uri))
        await upstream.app[VERIFIER].keys()
        environ = {
            "SIPGATE_PROXY_PUBLIC_URL": public_url,
            "SIPGATE_PROXY_UPSTREAM__URL": str(upstream.make_url("")).rstrip("/"),
            "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": idp.issuer,
            "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": CLIENT_ID,
            "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": CLIENT_SECRET,
            "SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "4",
            "SIPGATE_PROXY_SESSION__KEYS": f"[{generate_key()}]",
            **(env or {}),
        }
        path = None
        if config_text is not None:
            path = tmp_path / "proxy.yaml"
            path.write_text(config_text)
        settings = config.load(path, environ)

        async def serve(port: int, first: bool = False) -> tuple[TestServer, TestServer | None]:
            app = create_app(settings)
            main = await aiohttp_server(app, port=port, **handler_args(settings))
            management = None
            if settings.management.listen is not None:
                at = settings.management.listen.port if first else free_port()
                management = await aiohttp_server(create_management_app(app), port=at)
            return main, management

        proxy, management = await serve(port, first=True)

        async def replica() -> TestServer:
            return (await serve(free_port()))[0]

        return Peers(idp, upstream, public_url, proxy, management, replica)

    return start


def session_of(jar: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in sorted(jar.items()) if k.startswith(COOKIE + "_"))


async def refreshing_requests(browser: ScriptedBrowser, front: str) -> list[tuple[int, int]]:
    """Three requests, each due for a refresh, whose API answers are 200, 404 and 402;
    (status, Set-Cookie count) of each."""
    seen = []
    for path in ("/v2/account", "/__test/status/404", "/__test/status/402"):
        await asyncio.sleep(REFRESH_DUE)
        status, _, _, set_cookies = await browser.request("GET", front + path, headers=FETCH)
        seen.append((status, len(set_cookies)))
    return seen


async def assert_session_works_on_a_fresh_replica(peers: Peers, jar: dict[str, str]) -> None:
    """The jar's session, refreshed by a proxy that has never seen it (no grace cache): a
    stale refresh token would be an invalid_grant now, and end the login."""
    replica = await peers.start_replica()
    await asyncio.sleep(REFRESH_DUE)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        headers = {"Cookie": session_of(jar), "Accept": "application/json"}
        async with client.get(replica.make_url("/v2/account"), headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            assert json.loads(await resp.text())["jwt_sub"] == "nina"
    assert peers.idp.token_calls("refresh_token", "invalid_grant") == 0


# --- the recipes, run ------------------------------------------------------------------------

# (token sizes, proxy settings, cookies): sipgate-sized tokens with an id_token fit one
# cookie of 2.9 KB; a 3 KB access token full of roles needs two.
BIG_TOKENS: dict[str, Any] = {"access_token_min_bytes": 5000, "access_token_padding": "random"}
SESSIONS = {
    "one-cookie-with-idp-logout": (
        {},
        {
            "SIPGATE_PROXY_AUTH__OAUTH2__SCOPES": "[all, openid]",
            "SIPGATE_PROXY_AUTH__OAUTH2__IDP_LOGOUT": "true",
        },
        1,
    ),
    "two-cookies": (BIG_TOKENS, {}, 2),
}


@pytest.mark.parametrize("session", SESSIONS, ids=list(SESSIONS))
async def test_nginx_recipe_keeps_the_session_when_refreshes_meet_200_404_and_402(
    peers: Callable[..., Awaitable[Peers]], tmp_path: Path, session: str
) -> None:
    require(*nginx_available())
    idp_options, env, chunks = SESSIONS[session]
    stack = await peers({**ENABLED, **env}, **idp_options)
    port, work = free_port(), tmp_path / "nginx"
    site = auth_request_site(str(stack.upstream.make_url("")).rstrip("/"), stack.proxy_url)
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "nina", "/")
        front = f"http://127.0.0.1:{port}"
        jar = browser.jar(front)
        jar.update(browser.jar(stack.public_url))
        assert len(jar) == chunks
        stack.idp.reset_stats()
        with nginx(work, port, site):
            seen = await refreshing_requests(browser, front)
            cross = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
            status, _, _, _ = await browser.request("POST", f"{front}/v2/sessions/sms", cross)
            log = error_log(work)
    assert seen == [(200, chunks), (404, chunks), (402, chunks)], log[-2000:]
    assert status == 403  # the CSRF check saw the browser's Origin, renamed by the recipe
    assert "too big header" not in log
    assert stack.idp.token_calls("refresh_token", "success") == 3
    assert stack.idp.token_calls("refresh_token", "invalid_grant") == 0
    assert len(jar) == chunks
    await assert_session_works_on_a_fresh_replica(stack, jar)


async def test_traefik_recipe_keeps_the_session_and_never_sends_it_upstream(
    peers: Callable[..., Awaitable[Peers]], aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    """Traefik's documented ForwardAuth behaviour, emulated (tests/support/traefik.py),
    with the documented dynamic configuration and proxy settings."""
    management = free_port()
    secret_file = tmp_path / "forward-auth-secret"
    secret_file.write_text(FRONT_SECRET + "\n")
    proxy_settings = (
        recipe_block("yaml", 2)
        .replace("9090", str(management))
        .replace("/run/secrets/sipgate-forward-auth-secret", str(secret_file))
    )
    stack = await peers(
        {"SIPGATE_PROXY_MANAGEMENT__LISTEN__PORT": str(management)},
        config_text=proxy_settings,
        **BIG_TOKENS,
    )
    assert stack.management is not None
    assert stack.management.port == management
    dynamic = traefik_config(recipe_block("yaml", 1), f"http://127.0.0.1:{management}/oauth2/auth")
    traefik = await aiohttp_server(
        create_traefik_app(dynamic, "sipgate-api", str(stack.upstream.make_url("")).rstrip("/"))
    )
    front = str(traefik.make_url("")).rstrip("/")
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "nina", "/")
        jar = browser.jar(front)
        jar.update(browser.jar(stack.public_url))
        stack.idp.reset_stats()
        seen = await refreshing_requests(browser, front)
        cross = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
        status, _, _, _ = await browser.request("POST", f"{front}/v2/sessions/sms", cross)
    assert seen == [(200, 2), (404, 2), (402, 2)]
    assert status == 403
    for headers in traefik.app[SEEN]:
        sent = " ".join(f"{k}: {v}" for k, v in headers.items())
        assert COOKIE not in sent  # neither Cookie nor Set-Cookie: the seal stays here
        assert FRONT_SECRET not in sent
        assert headers["Authorization"].startswith("Bearer ")
    assert stack.idp.token_calls("refresh_token", "invalid_grant") == 0
    await assert_session_works_on_a_fresh_replica(stack, jar)


# --- who may ask ---------------------------------------------------------------------------


async def test_forward_auth_is_not_served_when_disabled(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    async with aiohttp.ClientSession() as client:
        async with client.get(proxy.make_url("/oauth2/auth")) as resp:
            assert resp.status == 404
            assert "Authorization" not in resp.headers
            body = await resp.json()
    assert body["error"] == "forward_auth_disabled"
    assert "forward_auth.enabled" in body["message"]


async def test_forward_auth_answers_202_with_header_when_enabled(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy(ENABLED)
    async with aiohttp.ClientSession() as client:
        async with client.get(proxy.make_url("/oauth2/auth"), headers=FRONT) as resp:
            assert resp.status == 202
            assert resp.headers["Authorization"].startswith("Basic ")
            assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"},
        {"Sec-Fetch-Mode": "no-cors"},
        {"Origin": "http://127.0.0.1"},
    ],
    ids=["fetch", "no-cors", "origin"],
)
async def test_forward_auth_refuses_a_request_when_it_carries_browser_fetch_metadata(
    make_proxy: ProxyFactory, headers: dict[str, str]
) -> None:
    """fetch('/oauth2/auth') from a page of the proxy's origin must not read the PAT."""
    proxy = await make_proxy(ENABLED)
    async with aiohttp.ClientSession() as client:
        async with client.get(proxy.make_url("/oauth2/auth"), headers=FRONT | headers) as resp:
            assert resp.status == 403
            assert "Authorization" not in resp.headers
            body = await resp.json()
    assert body["error"] == "forward_auth_refused"
    assert next(iter(headers)) in body["message"]


async def refusal(proxy: TestServer, headers: dict[str, str]) -> str:
    """The message of a 403 forward_auth_refused that carries no credential."""
    async with aiohttp.ClientSession() as client:
        async with client.get(proxy.make_url("/oauth2/auth"), headers=headers) as resp:
            assert resp.status == 403
            assert "Authorization" not in resp.headers
            body = await resp.json()
    assert body["error"] == "forward_auth_refused"
    message: str = body["message"]
    return message


async def test_forward_auth_refuses_a_peer_when_outside_allowed_networks(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy(
        {**ENABLED, "SIPGATE_PROXY_FORWARD_AUTH__ALLOWED_NETWORKS": "[10.0.0.0/8]"}
    )
    assert "forward_auth.allowed_networks" in await refusal(proxy, FRONT)


@pytest.mark.parametrize(
    "sent",
    [None, "", FRONT_SECRET[:-1], FRONT_SECRET[:-1] + "X", FRONT_SECRET + "X", "\u00e9" * 40],
    ids=["absent", "empty", "prefix", "last-char", "longer", "non-ascii"],
)
async def test_forward_auth_refuses_a_request_without_the_front_proxys_secret(
    make_proxy: ProxyFactory, sent: str | None
) -> None:
    proxy = await make_proxy(ENABLED)
    headers = {} if sent is None else {"X-Sipgate-Forward-Auth-Secret": sent}
    assert "X-Sipgate-Forward-Auth-Secret" in await refusal(proxy, headers)


async def test_forward_auth_in_a_shared_mode_needs_the_original_method(
    make_proxy: ProxyFactory,
) -> None:
    """Review 3: the method picks a client's rule or scope; a front proxy that does not
    send it must not have a POST judged as the GET it would default to."""
    proxy = await make_proxy(ENABLED)
    without = {k: v for k, v in FRONT.items() if k != "X-Original-Method"}
    assert "X-Original-Method" in await refusal(proxy, without)


async def test_forward_auth_is_served_on_the_management_listener_only_when_configured(
    make_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    env = {
        **ENABLED,
        "SIPGATE_PROXY_FORWARD_AUTH__LISTENER": "management",
        "SIPGATE_PROXY_MANAGEMENT__LISTEN__PORT": str(free_port()),
    }
    main = await make_proxy(env)
    management = await aiohttp_server(create_management_app(main.app))
    # Another origin than every proxied page: the browser's metadata is the original's.
    relayed = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"} | FRONT
    async with aiohttp.ClientSession() as client:
        async with client.get(main.make_url("/oauth2/auth"), headers=FRONT) as resp:
            assert resp.status == 404
            assert "Authorization" not in resp.headers
            assert "management" in (await resp.json())["message"]
        async with client.get(management.make_url("/oauth2/auth"), headers=relayed) as resp:
            assert resp.status == 202
            assert resp.headers["Authorization"].startswith("Basic ")


# --- what the original request was ----------------------------------------------------------


async def test_forward_auth_ignores_x_forwarded_method_when_nginx_headers_are_configured(
    oauth_stack: StackFactory,
) -> None:
    """nginx passes the client's own X-Forwarded-Method to the auth subrequest: a
    cross-site POST claiming to be a GET must still meet the CSRF check."""
    stack = await oauth_stack(ENABLED)
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "nina", "/")
        headers = FRONT | {
            "X-Original-Method": "POST",
            "X-Original-URI": "/v2/sessions/sms",
            "X-Forwarded-Method": "GET",
            "X-Original-Origin": "https://evil.example",
        }
        status, _, body, _ = await browser.request(
            "GET", f"{stack.public_url}/oauth2/auth", headers
        )
    assert status == 403, body


async def test_forward_auth_falls_back_to_root_when_the_original_uri_is_unparseable(
    oauth_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    stack = await oauth_stack(ENABLED)
    async with aiohttp.ClientSession() as client:
        headers = {"X-Original-URI": "//[::1]@", "X-Original-Method": "GET"} | FRONT
        with caplog.at_level(logging.INFO):
            async with client.get(f"{stack.public_url}/oauth2/auth", headers=headers) as resp:
                assert resp.status == 401
                body = await resp.json()
    assert body["login_url"] == f"{stack.public_url}/oauth2/start?rd=/"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_forward_auth_never_redirects(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack(ENABLED)
    async with aiohttp.ClientSession() as client:
        headers = {"Accept": "text/html", "X-Original-URI": "/v2/x"} | FRONT
        async with client.get(
            f"{stack.public_url}/oauth2/auth", headers=headers, allow_redirects=False
        ) as resp:
            assert resp.status == 401
            body = await resp.json()
    assert body["login_url"] == f"{stack.public_url}/oauth2/start?rd=/v2/x"

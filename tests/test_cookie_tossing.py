"""Cookie tossing: a sibling subdomain (``evil.example.com`` beside ``proxy.example.com``)
may set ``sipgate_proxy_0=…; Domain=example.com``, and the browser sends it to the proxy.
Planted with a session of the attacker's own, it signs the victim in as the attacker.
Only a ``__Host-`` name prevents it (browsers refuse a ``__Host-`` cookie with a Domain),
so behind an ``https://`` public_url that is the default name; an explicit
``session.cookie_name`` is kept as it is.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from proxy import config
from proxy.app import create_app
from proxy.crypto.sealing import KeyRing
from proxy.oauth.tokens import TokenSet
from proxy.server import handler_args
from tests.conftest import CLIENT_ID, CLIENT_SECRET
from tests.support.secrets import WATCH
from tests.support.sessions import cookie_store, seal
from tests.test_faults import KEY, as_jar, cookie_header

ServerFactory = Callable[..., Awaitable[TestServer]]
HTTPS_ENV = {
    "SIPGATE_PROXY_PUBLIC_URL": "https://proxy.example.com",
    "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": "http://127.0.0.1:1/auth/realms/none",
    "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": CLIENT_ID,
    "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": CLIENT_SECRET,
    "SIPGATE_PROXY_SESSION__KEYS": f"[{base64.b64encode(KEY).decode()}]",
}


def session_cookie(name: str, subject: str) -> str:
    """A valid session of ``subject`` as this proxy seals it under the name ``name``."""
    tokens = TokenSet(f"{subject}.access.token", "r", time.time() + 3600, 4e9)
    jar = as_jar(
        seal(cookie_store(KeyRing([KEY]), name, True, 30 * 86400), tokens, time.time(), {})
    )
    for value in (*jar.values(), tokens.access_token):
        WATCH.add(value)
    return cookie_header(jar)


async def https_proxy(
    aiohttp_server: ServerFactory, upstream: TestServer, **env: str
) -> tuple[TestServer, config.Settings]:
    environ = {**HTTPS_ENV, "SIPGATE_PROXY_UPSTREAM__URL": str(upstream.make_url("")).rstrip("/")}
    settings = config.load(None, {**environ, **env})
    return await aiohttp_server(create_app(settings), **handler_args(settings)), settings


async def bearer_upstream_saw(proxy: TestServer, cookie: str) -> tuple[int, str | None]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        headers = {"Cookie": cookie, "Accept": "application/json"}
        async with client.get(proxy.make_url("/v2/x"), headers=headers) as resp:
            body = await resp.json()
            if resp.status != 200:
                return resp.status, None
            sent = [v for k, v in body["headers"] if k.lower() == "authorization"]
            return resp.status, sent[0]


async def test_a_tossed_cookie_is_no_session_behind_an_https_public_url(
    aiohttp_server: ServerFactory, upstream: TestServer
) -> None:
    proxy, settings = await https_proxy(aiohttp_server, upstream)
    assert settings.session.cookie_name == "__Host-sipgate_proxy"
    # The attacker's own session, tossed from a sibling subdomain under the plain name:
    tossed = session_cookie("sipgate_proxy", "mallory")
    assert await bearer_upstream_saw(proxy, tossed) == (401, None)
    # The victim's own session, which only the proxy's host can set:
    own = session_cookie("__Host-sipgate_proxy", "victim")
    assert await bearer_upstream_saw(proxy, own) == (200, "Bearer victim.access.token")
    # Tossed beside the victim's own, it changes nothing.
    assert await bearer_upstream_saw(proxy, f"{tossed}; {own}") == (
        200,
        "Bearer victim.access.token",
    )


async def test_login_cookies_carry_the_host_prefix_behind_an_https_public_url(
    aiohttp_server: ServerFactory, upstream: TestServer
) -> None:
    proxy, _ = await https_proxy(aiohttp_server, upstream)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        url = proxy.make_url("/oauth2/start?rd=/v2/x")
        async with client.get(url, allow_redirects=False) as resp:
            assert resp.status == 302
            (flow,) = resp.headers.getall("Set-Cookie")
    assert flow.startswith("__Host-sipgate_proxy_flow_")
    attributes = [a.strip().lower() for a in flow.split(";")[1:]]
    assert "secure" in attributes
    assert "path=/" in attributes
    assert not [a for a in attributes if a.startswith("domain")]


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"SIPGATE_PROXY_SESSION__COOKIE_NAME": "sipgate_proxy"}, "sipgate_proxy"),
        ({"SIPGATE_PROXY_SESSION__COOKIE_NAME": "my_app"}, "my_app"),
        ({"SIPGATE_PROXY_SESSION__COOKIE_NAME": "__Secure-x"}, "__Secure-x"),
    ],
)
async def test_an_explicit_cookie_name_is_kept_behind_an_https_public_url(
    aiohttp_server: ServerFactory, upstream: TestServer, env: dict[str, str], name: str
) -> None:
    proxy, settings = await https_proxy(aiohttp_server, upstream, **env)
    assert settings.session.cookie_name == name
    own = session_cookie(name, "victim")
    assert await bearer_upstream_saw(proxy, own) == (200, "Bearer victim.access.token")


def test_the_plain_default_name_stays_for_local_http_and_without_secure_cookies() -> None:
    local = {**HTTPS_ENV, "SIPGATE_PROXY_PUBLIC_URL": "http://localhost:8080"}
    assert config.load(None, local).session.cookie_name == "sipgate_proxy"
    plain_http = {**HTTPS_ENV, "SIPGATE_PROXY_PUBLIC_URL": "http://127.0.0.1:8080"}
    assert config.load(None, plain_http).session.cookie_name == "sipgate_proxy"


async def test_cookies_of_the_old_default_name_never_reach_the_upstream(
    aiohttp_server: ServerFactory, upstream: TestServer
) -> None:
    """After the upgrade browsers still hold sipgate_proxy_* cookies (sealed sessions) for
    up to max_lifetime; with upstream.forward_cookies they must not go to sipgate."""
    proxy, _ = await https_proxy(
        aiohttp_server, upstream, SIPGATE_PROXY_UPSTREAM__FORWARD_COOKIES="true"
    )
    old = session_cookie("sipgate_proxy", "victim")
    own = session_cookie("__Host-sipgate_proxy", "victim")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        headers = {"Cookie": f"{old}; app=1; {own}; sipgate_proxy_flow_x=z", "Accept": "*/*"}
        async with client.get(proxy.make_url("/v2/x"), headers=headers) as resp:
            assert resp.status == 200
            body = await resp.json()
    assert [v for k, v in body["headers"] if k.lower() == "cookie"] == ["app=1"]

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy import config
from proxy.app import create_app
from proxy.server import handler_args
from tests.support.idp import RunningIdP, idp_available, start_idp
from tests.support.processes import free_port
from tests.support.redis_server import RedisServer, redis_available
from tests.support.secrets import WATCH
from tests.support.upstream import VERIFIER, BearerVerifier, create_upstream_app

IN_CI = os.environ.get("CI") == "true"

# Every log record of the whole run goes to the watch (see test_log_hygiene.py).
logging.getLogger().addHandler(WATCH)
logging.getLogger().setLevel(logging.INFO)

PAT_ENV = {
    "SIPGATE_PROXY_AUTH__MODE": "personal_access_token",
    "SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN_ID": "token-AB12cd",
    "SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN": "3f1c0ad1-5a6e-4b8e-9a55-2d0c0c8e7a11",
}


def require(available: bool, reason: str) -> None:
    """Skip a test that needs a missing peer, except in CI where that is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture
async def upstream(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    return await aiohttp_server(create_upstream_app())


ProxyFactory = Callable[..., Awaitable[TestServer]]


@pytest.fixture
def make_proxy(
    aiohttp_server: Callable[..., Awaitable[TestServer]], upstream: TestServer
) -> ProxyFactory:
    """Start the real proxy app on a loopback socket, in PAT mode unless told otherwise."""

    async def start(env: dict[str, str] | None = None, **kwargs: Any) -> TestServer:
        environ = {
            **PAT_ENV,
            "SIPGATE_PROXY_UPSTREAM__URL": str(upstream.make_url("")).rstrip("/"),
            **(env or {}),
        }
        settings = config.load(None, environ)
        app: web.Application = create_app(settings)
        return await aiohttp_server(app, **handler_args(settings), **kwargs)

    return start


CLIENT_ID = "2556404-0-dc848ae6-085c-11e8-92a6-31b99c83912e"
CLIENT_SECRET = "test-client-secret"
WATCH.add(CLIENT_SECRET)
WATCH.add(PAT_ENV["SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN"])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The log hygiene check runs last, over the lines of every test before it."""
    items.sort(key=lambda item: item.name == "test_no_secret_in_any_log_line")


@dataclass
class OAuthStack:
    """A real IdP, an upstream double that verifies its JWTs, and the proxy between."""

    idp: RunningIdP
    upstream: TestServer
    proxy: TestServer
    public_url: str

    @property
    def verifier(self) -> BearerVerifier:
        return self.upstream.app[VERIFIER]


StackFactory = Callable[..., Awaitable[OAuthStack]]


@pytest.fixture
def idp_factory(tmp_path: Path) -> Iterator[Callable[..., RunningIdP]]:
    require(*idp_available())
    started: list[RunningIdP] = []

    def start(redirect_uri: str, **options: Any) -> RunningIdP:
        idp = start_idp(
            tmp_path / f"idp{len(started)}",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            redirect_uris=[redirect_uri],
            **options,
        )
        started.append(idp)
        return idp

    yield start
    for idp in started:
        idp.stop()
        WATCH.add_idp_state(idp.state_path)


@pytest.fixture
def oauth_stack(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    idp_factory: Callable[..., RunningIdP],
) -> StackFactory:
    """Start IdP, upstream and proxy; keyword arguments go to the IdP, ``env`` to the proxy."""

    async def start(
        env: dict[str, str] | None = None,
        issuer_for: Callable[[RunningIdP], Awaitable[str]] | None = None,
        **idp_options: Any,
    ) -> OAuthStack:
        port = free_port()
        public_url = f"http://localhost:{port}"
        idp = idp_factory(f"{public_url}/oauth2/callback", **idp_options)
        # issuer_for: the issuer the proxy is told, e.g. a relay in front of the IdP
        issuer = idp.issuer if issuer_for is None else await issuer_for(idp)
        upstream = await aiohttp_server(create_upstream_app(jwks_url=idp.jwks_uri))
        await upstream.app[VERIFIER].keys()  # fetched now: tests may stop the IdP later
        environ = {
            "SIPGATE_PROXY_PUBLIC_URL": public_url,
            "SIPGATE_PROXY_UPSTREAM__URL": str(upstream.make_url("")).rstrip("/"),
            "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": issuer,
            "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": CLIENT_ID,
            "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": CLIENT_SECRET,
            **(env or {}),
        }
        settings = config.load(None, environ)
        proxy = await aiohttp_server(create_app(settings), port=port, **handler_args(settings))
        return OAuthStack(idp, upstream, proxy, public_url)

    return start


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    require(*redis_available())
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
async def page() -> AsyncIterator[object]:
    require(shutil.which(CHROMIUM) is not None, "Debian chromium is not installed")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        require(False, "playwright is not installed")
        raise
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context()
        yield await context.new_page()
        await browser.close()

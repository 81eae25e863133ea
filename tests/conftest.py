from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy import config
from proxy.app import create_app
from proxy.server import handler_args
from tests.support.upstream import create_upstream_app

IN_CI = os.environ.get("CI") == "true"

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

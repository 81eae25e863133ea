"""Wiring: settings in, aiohttp application out. Nothing else imports this module."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from proxy.config import Settings
from proxy.credentials import Authenticator
from proxy.errors import ProxyError, json_error
from proxy.forward import Forwarder
from proxy.pat import ClientNetworks, PersonalAccessTokenAuth

log = logging.getLogger(__name__)

FORWARDER = web.AppKey("forwarder", Forwarder)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[_errors_as_json, _unrouted_to_proxy])
    app[AUTHENTICATOR] = _authenticator(settings)
    app.cleanup_ctx.append(_upstream_client(settings))
    app.router.add_route("*", "/{tail:.*}", _proxy)
    return app


def _authenticator(settings: Settings) -> Authenticator:
    if settings.auth.mode == "personal_access_token":
        networks = ClientNetworks(settings.auth.allowed_client_networks)
        return PersonalAccessTokenAuth(settings.auth.personal_access_token, networks)
    raise NotImplementedError(f"auth.mode {settings.auth.mode} is not available yet")


def _upstream_client(
    settings: Settings,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def open_client(app: web.Application) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=settings.upstream.connect_timeout,
            sock_read=settings.upstream.read_timeout,
        )
        connector = aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True)
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # upstream cookies go to the client, not here
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
        ) as client:
            app[FORWARDER] = Forwarder(
                settings.upstream, client, own_cookie_prefix=settings.session.cookie_name
            )
            yield

    return open_client


async def _proxy(request: web.Request) -> web.StreamResponse:
    credentials = await request.app[AUTHENTICATOR].authenticate(request)
    return await request.app[FORWARDER].forward(request, credentials)


@web.middleware
async def _errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProxyError as err:
        return err.to_response()
    except web.HTTPException as err:
        if err.status < 400:
            raise
        return json_error(err.status, "http_error", err.reason)


@web.middleware
async def _unrouted_to_proxy(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Targets the router cannot match ("*", "http://host" without a path) still belong to
    # the proxy, which forwards them or refuses them with a clear error.
    if isinstance(request.match_info.http_exception, web.HTTPNotFound):
        return await _proxy(request)
    return await handler(request)

"""CORS, decided by the proxy alone (the upstream cannot know which origins the proxy's
cookie or token may be spent from): preflights answered, headers set on every answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy.auth.origin import OriginPolicy, vary_with_origin

ResponseHook = Callable[[web.Request, web.StreamResponse], Awaitable[None]]


def cors_preflight(origins: OriginPolicy) -> Middleware:
    @web.middleware
    async def preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            headers = origins.preflight_headers(
                request.headers.get("Origin"),
                request.headers.get("Access-Control-Request-Method"),
                request.headers.get("Access-Control-Request-Headers"),
            )
            if headers is not None:
                return web.Response(status=204, headers=headers)
        return await handler(request)

    return preflight


def cors_headers(origins: OriginPolicy) -> ResponseHook:
    """on_response_prepare: ours replace the upstream's CORS headers; Vary is added to."""

    async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        allowed = origins.cors_headers(request.headers.get("Origin"))
        if allowed:
            headers.update(allowed)
        vary = vary_with_origin(headers.getall("Vary", ()))
        if vary is not None:  # added to the upstream's, never in place of it
            headers["Vary"] = vary

    return add_cors_headers

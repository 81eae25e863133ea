"""``GET /oauth2/auth``: the proxy as an authentication service for nginx ``auth_request``
and Traefik ``ForwardAuth``. 202 with the ``Authorization`` header to inject (refreshed
when due, new cookies in ``Set-Cookie``), or 401 with the login URL. Never a redirect:
nginx only understands 2xx, 401 and 403 from an auth subrequest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from proxy.credentials import Authenticator
from proxy.errors import ProxyError, Unauthenticated

# Where the front proxies put the original request's method and URI.
METHOD_HEADERS = ("X-Forwarded-Method", "X-Original-Method")
URI_HEADERS = ("X-Forwarded-Uri", "X-Original-URI")


def forward_auth_handler(
    authenticator: Authenticator,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def forward_auth(request: web.Request) -> web.StreamResponse:
        original = _original_request(request)
        try:
            credentials = await authenticator.authenticate(original)
        except Unauthenticated as err:
            err.navigation = False
            return err.to_response()
        except ProxyError as err:
            return err.to_response()
        response = web.Response(status=202, headers={"Authorization": credentials.authorization})
        response.headers["Cache-Control"] = "no-store"
        for cookie in credentials.set_cookies:
            response.headers.add("Set-Cookie", cookie)
        return response

    return forward_auth


def _original_request(request: web.Request) -> web.Request:
    """The request as the front proxy received it: its method (CSRF) and URI (return path)."""
    method = next((request.headers[h] for h in METHOD_HEADERS if h in request.headers), "GET")
    uri = next((request.headers[h] for h in URI_HEADERS if h in request.headers), "/")
    if not uri.startswith("/"):
        uri = "/"
    try:
        return request.clone(method=method.upper()[:16], rel_url=uri)
    except ValueError:
        return request.clone(method="GET", rel_url="/")

"""The proxy's own cookies of one request, parsed from its Cookie headers once: the
authenticator, a refresh, a sign-out and the aiohttp-session adapter all read them."""

from __future__ import annotations

from aiohttp import web

from proxy.session.cookie_chunks import own_cookies

OWN_COOKIES = web.RequestKey("own_cookies", dict[str, str])


def request_cookies(request: web.Request, name: str) -> dict[str, str]:
    """``<name>_…`` cookies (the session's chunks, the login attempts'); ``name`` is the
    one ``session.cookie_name`` of the app, so one parse serves every reader."""
    cookies = request.get(OWN_COOKIES)
    if cookies is None:
        cookies = own_cookies(request.headers.getall("Cookie", ()), name)
        request[OWN_COOKIES] = cookies
    return cookies

"""The one place Set-Cookie headers are written: a response hook, so every answer (a
proxied one, a streamed one, the proxy's own error page, a redirect) carries the cookies
its request decided on (``request_state.set_cookies``), each line once."""

from __future__ import annotations

from aiohttp import web

from proxy.request_state import SET_COOKIES


async def write_cookies(request: web.Request, response: web.StreamResponse) -> None:
    decided = request.get(SET_COOKIES)
    if decided:
        for lines in decided.values():
            for line in lines:
                response.headers.add("Set-Cookie", line)

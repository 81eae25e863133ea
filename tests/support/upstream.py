"""A test double of api.sipgate.com: echoes what it received, plus a few fault behaviours.

Special paths live under ``/__test/``; every other path is echoed as JSON so tests can
assert exactly what the proxy sent (raw target, header list, body size and digest).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import jwt
from aiohttp import web

from tests.support.secrets import WATCH

CHUNK = 64 * 1024
JWT_CLAIMS: web.RequestKey[dict[str, Any]] = web.RequestKey("jwt_claims", dict)


async def echo(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_chunked(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    payload = {
        "method": request.method,
        "raw_path": request.raw_path,
        "headers": [[k, v] for k, v in request.headers.items()],
        "body_size": size,
        "body_sha256": digest.hexdigest(),
        "chunked": request.headers.get("Transfer-Encoding", "").lower() == "chunked",
        "jwt_sub": request.get(JWT_CLAIMS, {}).get("sub"),
    }
    return web.json_response(payload)


async def download(request: web.Request) -> web.StreamResponse:
    """Stream N bytes without holding them: /__test/download?bytes=N[&length=1]."""
    total = int(request.query["bytes"])
    response = web.StreamResponse()
    if request.query.get("length") == "1":
        response.content_length = total
    response.content_type = "application/octet-stream"
    await response.prepare(request)
    block = b"x" * CHUNK
    sent = 0 if request.method != "HEAD" else total
    while sent < total:
        piece = block[: min(CHUNK, total - sent)]
        await response.write(piece)
        sent += len(piece)
    await response.write_eof()
    return response


async def slow_stream(request: web.Request) -> web.StreamResponse:
    """N chunks, one every ``interval`` seconds: a response that takes its time."""
    chunks, interval = (
        int(request.query.get("chunks", "10")),
        float(request.query.get("interval", "0.3")),
    )
    response = web.StreamResponse()
    response.content_length = chunks * 1000
    await response.prepare(request)
    for _ in range(chunks):
        await asyncio.sleep(interval)
        await response.write(b"s" * 1000)
    await response.write_eof()
    return response


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("delay", "5")))
    return web.json_response({"slow": True})


async def stall_mid_body(request: web.Request) -> web.StreamResponse:
    """Headers and a first chunk, then silence: the proxy's read timeout must fire."""
    response = web.StreamResponse()
    response.content_length = 1_000_000
    await response.prepare(request)
    await response.write(b"y" * 1000)
    await asyncio.sleep(float(request.query.get("delay", "5")))
    return response


async def truncated(request: web.Request) -> web.StreamResponse:
    """A small answer whose body stops halfway: the connection closes after 500 of 1000."""
    response = web.StreamResponse()
    response.content_length = 1000
    await response.prepare(request)
    await response.write(b"z" * 500)
    assert request.transport is not None
    request.transport.close()
    return response


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    return web.Response(status=code, text=json.dumps({"status": code}))


async def cookies(request: web.Request) -> web.Response:
    response = web.json_response({"ok": True})
    response.headers.add("Set-Cookie", "a=1; Path=/")
    response.headers.add("Set-Cookie", "b=2; Path=/; HttpOnly")
    response.headers["Connection"] = "keep-alive, X-Hop"
    response.headers["X-Hop"] = "must not pass"
    response.headers["Keep-Alive"] = "timeout=5"
    response.headers["X-Upstream"] = "kept"
    return response


class BearerVerifier:
    """Like api.sipgate.com: /v2/ needs a Bearer JWT signed by the IdP (401 otherwise)."""

    def __init__(self, jwks_url: str) -> None:
        self.jwks_url = jwks_url
        self.jwks: dict[str, Any] | None = None
        self.rejected = 0
        self.accepted = 0
        self.reject_next = 0  # answer 401 to this many requests whatever their token
        self.tokens_seen: list[str] = []

    async def keys(self) -> dict[str, Any]:
        if self.jwks is None:
            async with aiohttp.ClientSession() as client, client.get(self.jwks_url) as resp:
                self.jwks = await resp.json()
        return self.jwks

    async def claims(self, authorization: str) -> dict[str, Any] | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            jwk = next(k for k in (await self.keys())["keys"] if k.get("kid") == kid)
            key = jwt.PyJWK(jwk).key
            return dict(
                jwt.decode(
                    token,
                    key=key,
                    algorithms=["RS256", "PS256", "ES256"],
                    options={"verify_aud": False},
                )
            )
        except (jwt.PyJWTError, StopIteration, KeyError):
            return None

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith("/v2/"):
            authorization = request.headers.get("Authorization", "")
            self.tokens_seen.append(authorization)
            WATCH.add(authorization)
            claims = await self.claims(authorization)
            if self.reject_next > 0:
                self.reject_next -= 1
                claims = None
            if claims is None:
                self.rejected += 1
                return web.json_response({"error": "invalid token"}, status=401)
            self.accepted += 1
            request[JWT_CLAIMS] = claims
        return await handler(request)


VERIFIER = web.AppKey("verifier", BearerVerifier)


HANGUPS: web.AppKey[list[str]] = web.AppKey("hangups", list)


async def hangup(request: web.Request) -> web.StreamResponse:
    """Read the request, then close the connection without answering."""
    request.app[HANGUPS].append(request.method)
    await request.read()
    assert request.transport is not None
    request.transport.close()
    return web.Response()


async def cors(request: web.Request) -> web.Response:
    """An upstream that reflects any Origin with credentials: the proxy must not pass it.
    Its ``Vary`` (``?vary=``, default ``Accept-Encoding``) must survive."""
    response = web.json_response(
        {"cors": True},
        headers={
            "Access-Control-Allow-Origin": request.headers.get("Origin", "*"),
            "Access-Control-Allow-Credentials": "true",
        },
    )
    for value in request.query.getall("vary", ["Accept-Encoding"]):
        response.headers.add("Vary", value)
    return response


async def cacheable(request: web.Request) -> web.StreamResponse:
    """An answer the upstream calls cacheable: each ``?cc=`` a Cache-Control line (default
    ``public, max-age=600``), ``Vary: Accept-Encoding``; ``?bytes=N`` streams N bytes
    without a Content-Length instead of a small JSON body."""
    response = web.StreamResponse()
    for value in request.query.getall("cc", ["public, max-age=600"]):
        if value:  # "?cc=": no Cache-Control at all
            response.headers.add("Cache-Control", value)
    response.headers["Vary"] = "Accept-Encoding"
    total = int(request.query.get("bytes", "0"))
    body = b"c" * total if total else b'{"cacheable": true}'
    if not total:
        response.content_length = len(body)
    await response.prepare(request)
    await response.write(body)
    await response.write_eof()
    return response


# Every request that reached the double, as "METHOD raw_path": what a refusal never sends.
RECEIVED = web.AppKey("received", list[str])


@web.middleware
async def note_received(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    request.app[RECEIVED].append(f"{request.method} {request.raw_path}")
    return await handler(request)


def create_upstream_app(jwks_url: str | None = None) -> web.Application:
    app = web.Application(client_max_size=1024**4, middlewares=[note_received])
    app[RECEIVED] = []
    if jwks_url:
        verifier = BearerVerifier(jwks_url)
        app[VERIFIER] = verifier
        app.middlewares.append(verifier.middleware)
    app.router.add_get("/__test/download", download)
    app.router.add_get("/__test/slow", slow)
    app.router.add_get("/__test/slow_stream", slow_stream)
    app.router.add_get("/__test/stall", stall_mid_body)
    app.router.add_get("/__test/truncated", truncated)
    app.router.add_get("/v2/__test/truncated", truncated)  # behind the token check
    app.router.add_route("*", "/__test/status/{code}", status)
    app.router.add_get("/__test/cookies", cookies)
    app.router.add_get("/__test/cors", cors)
    app.router.add_get("/__test/cacheable", cacheable)
    app[HANGUPS] = []
    app.router.add_route("*", "/__test/hangup", hangup)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


if __name__ == "__main__":
    import sys

    web.run_app(create_upstream_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None)

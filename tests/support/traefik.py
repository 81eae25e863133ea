"""Traefik is not installable here: an emulation of its documented ForwardAuth semantics
(traefik/traefik pkg/middlewares/auth/forward.go, v3), configured from the documented
recipe (docs/deployment/forward-auth.md).

- Middlewares run in the router's order, each on the request the one before left.
- The auth request is a GET to ``address`` with the request's headers (only those listed
  in ``authRequestHeaders`` when set) and X-Forwarded-Method/-Proto/-Host/-Uri/-For set by
  Traefik itself (``trustForwardHeader`` false: the client's values are replaced).
- A non-2xx auth answer goes to the client as it is: status, headers, body.
- On 2xx the ``authResponseHeaders`` are copied onto the *request* to the upstream,
  replacing what the client sent; a ``headers`` middleware later in the chain sets
  ``customRequestHeaders`` (an empty value removes the header).
- The auth answer's cookies reach the client only when their names are listed in
  ``addAuthCookiesToResponse``, whatever the upstream's status; upstream cookies of the
  same names are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from multidict import CIMultiDict

from tests.support.nginx import FRONT_SECRET, RECIPE_SECRET

HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Te",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Content-Length",
        "Host",
    )
)


def traefik_config(text: str, address: str) -> dict[str, Any]:
    """The documented dynamic configuration, the auth address and the front proxy's secret
    replaced by the test's."""
    config: dict[str, Any] = yaml.safe_load(text.replace(RECIPE_SECRET, FRONT_SECRET))
    for middleware in config["http"]["middlewares"].values():
        if "forwardAuth" in middleware:
            middleware["forwardAuth"]["address"] = address
    return config


SEEN: web.AppKey[list[CIMultiDict[str]]] = web.AppKey("seen", list)


def _cookie_name(set_cookie: str) -> str:
    return set_cookie.split("=", 1)[0].strip()


def create_traefik_app(config: Mapping[str, Any], router: str, upstream: str) -> web.Application:
    middlewares = config["http"]["middlewares"]
    chain = [middlewares[name] for name in config["http"]["routers"][router]["middlewares"]]
    seen: list[CIMultiDict[str]] = []  # what the upstream received, for the test's eyes

    async def handle(request: web.Request) -> web.StreamResponse:
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP
        )
        cookies_for_client: list[str] = []
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
            for middleware in chain:
                if "forwardAuth" in middleware:
                    answer = await _forward_auth(
                        client, middleware["forwardAuth"], request, headers
                    )
                    if isinstance(answer, web.Response):
                        return answer
                    headers, cookies_for_client = _apply_auth(
                        middleware["forwardAuth"], headers, answer
                    )
                elif "headers" in middleware:
                    for name, value in (
                        middleware["headers"].get("customRequestHeaders", {}).items()
                    ):
                        headers.popall(name, None)
                        if value:
                            headers[name] = value
            seen.append(headers)
            async with client.request(
                request.method,
                upstream + request.raw_path,
                headers=headers,
                data=await request.read(),
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                out = web.Response(status=resp.status, body=body)
                for name, value in resp.headers.items():
                    if name.lower() in HOP_BY_HOP or name.lower() == "set-cookie":
                        continue
                    out.headers.add(name, value)
                listed = _listed(chain)
                for line in resp.headers.getall("Set-Cookie", []):
                    if _cookie_name(line) not in listed:
                        out.headers.add("Set-Cookie", line)
                for line in cookies_for_client:
                    out.headers.add("Set-Cookie", line)
                return out

    app = web.Application()
    app[SEEN] = seen
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def _listed(chain: list[Mapping[str, Any]]) -> set[str]:
    names: set[str] = set()
    for middleware in chain:
        names.update(middleware.get("forwardAuth", {}).get("addAuthCookiesToResponse", []))
    return names


async def _forward_auth(
    client: aiohttp.ClientSession,
    settings: Mapping[str, Any],
    request: web.Request,
    chained: CIMultiDict[str],
) -> web.Response | tuple[CIMultiDict[str], list[str]]:
    # The request as the middlewares before this one left it (a headers middleware's
    # customRequestHeaders included).
    headers = CIMultiDict(chained)
    allowed = settings.get("authRequestHeaders")
    if allowed:
        keep = {h.lower() for h in allowed}
        headers = CIMultiDict((k, v) for k, v in headers.items() if k.lower() in keep)
    peer = request.remote or ""
    headers["X-Forwarded-For"] = peer
    headers["X-Forwarded-Method"] = request.method
    headers["X-Forwarded-Proto"] = "http"
    headers["X-Forwarded-Host"] = request.host
    headers["X-Forwarded-Uri"] = request.raw_path
    async with client.get(settings["address"], headers=headers, allow_redirects=False) as resp:
        body = await resp.read()
        if not 200 <= resp.status < 300:
            out = web.Response(status=resp.status, body=body)
            for name, value in resp.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    out.headers.add(name, value)
            return out
        return CIMultiDict(resp.headers), resp.headers.getall("Set-Cookie", [])


def _apply_auth(
    settings: Mapping[str, Any],
    headers: CIMultiDict[str],
    answer: tuple[CIMultiDict[str], list[str]],
) -> tuple[CIMultiDict[str], list[str]]:
    auth_headers, auth_cookies = answer
    for name in settings.get("authResponseHeaders", []):
        headers.popall(name, None)
        for value in auth_headers.getall(name, []):
            headers.add(name, value)
    listed = set(settings.get("addAuthCookiesToResponse", []))
    return headers, [line for line in auth_cookies if _cookie_name(line) in listed]

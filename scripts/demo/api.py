"""`make demo`'s stand-in for api.sipgate.com: a few of its answers, made up, for a
request that carries a Bearer token the demo IdP signed (checked against its JWKS) or
the demo's Personal Access Token. Every answer says it is not sipgate."""

from __future__ import annotations

import base64
import sys
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from tests.support.upstream import BearerVerifier

NOTICE = "demo stand-in for api.sipgate.com: NOT sipgate, no real account, made-up data"
DEMO_PAT = ("token-DEMO00", "00000000-0000-4000-8000-000000000000")
VERIFIER = web.AppKey("verifier", BearerVerifier)
# What the stand-in answers (anything else: 404); the demo's banner lists them.
PATHS = ("/v2/account", "/v2/balance", "/v2/history", "/v2/authorization/userinfo")


def answer(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response({"_notice": NOTICE, **data}, status=status)


@web.middleware
async def credential_checked(request: web.Request, handler: Handler) -> web.StreamResponse:
    authorization = request.headers.get("Authorization", "")
    pat = "Basic " + base64.b64encode(":".join(DEMO_PAT).encode()).decode()
    if authorization == pat:
        request["sub"] = "demo-pat-account"
        return await handler(request)
    verifier = request.app.get(VERIFIER)
    claims = await verifier.claims(authorization) if verifier is not None else None
    if claims is None:
        return answer({"error": "invalid or missing credential"}, 401)
    request["sub"] = str(claims.get("sub"))
    return await handler(request)


async def account(request: web.Request) -> web.Response:
    return answer(
        {"company": "Demo GmbH (not real)", "mainProductType": "TEAM", "sub": request["sub"]}
    )


async def balance(request: web.Request) -> web.Response:
    return answer({"amount": 4200, "currency": "EUR"})


async def history(request: web.Request) -> web.Response:
    items = [{"id": f"demo-{n}", "type": "SMS", "direction": "OUTGOING"} for n in range(3)]
    return answer({"items": items, "totalCount": len(items)})


async def userinfo(request: web.Request) -> web.Response:
    return answer({"sub": request["sub"], "domain": "demo.invalid", "locale": "en_GB"})


async def other(request: web.Request) -> web.Response:
    return answer({"error": "the demo stand-in knows only a few paths", "path": request.path}, 404)


def create_app(jwks_url: str | None) -> web.Application:
    """Without a JWKS URL (PAT mode: no IdP runs) only the demo PAT is accepted."""
    app = web.Application(middlewares=[credential_checked])
    if jwks_url:
        app[VERIFIER] = BearerVerifier(jwks_url)
    for path, handler in zip(PATHS, (account, balance, history, userinfo), strict=True):
        app.router.add_get(path, handler)
    app.router.add_route("*", "/{tail:.*}", other)
    return app


if __name__ == "__main__":
    jwks = sys.argv[2] if len(sys.argv) > 2 else None
    web.run_app(create_app(jwks), host="127.0.0.1", port=int(sys.argv[1]), print=None)

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


def answer(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response({"_notice": NOTICE, **data}, status=status)


@web.middleware
async def credential_checked(request: web.Request, handler: Handler) -> web.StreamResponse:
    authorization = request.headers.get("Authorization", "")
    pat = "Basic " + base64.b64encode(":".join(DEMO_PAT).encode()).decode()
    if authorization == pat:
        request["sub"] = "demo-pat-account"
        return await handler(request)
    claims = await request.app[VERIFIER].claims(authorization)
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


def create_app(jwks_url: str) -> web.Application:
    app = web.Application(middlewares=[credential_checked])
    app[VERIFIER] = BearerVerifier(jwks_url)
    app.router.add_get("/v2/account", account)
    app.router.add_get("/v2/balance", balance)
    app.router.add_get("/v2/history", history)
    app.router.add_get("/v2/authorization/userinfo", userinfo)
    app.router.add_route("*", "/{tail:.*}", other)
    return app


if __name__ == "__main__":
    web.run_app(create_app(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), print=None)

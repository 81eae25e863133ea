"""Service mode's request path and endpoints: headless clients get the stored identity;
an operator's login becomes that identity; ``/oauth2/service`` says how it stands."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable

from aiohttp import web

from proxy import request_state as rs
from proxy.credentials import Credentials
from proxy.login import html_page
from proxy.pat import HeadlessClientGuard
from proxy.service_identity import ServiceIdentity
from proxy.tokens import TokenSet


class ServiceAuth:
    def __init__(self, identity: ServiceIdentity, guard: HeadlessClientGuard) -> None:
        self._identity = identity
        self._guard = guard

    async def authenticate(self, request: web.Request) -> Credentials:
        self._guard.check(request)
        return await self._identity.credentials()


def login_completion(
    identity: ServiceIdentity,
) -> Callable[[web.Request, TokenSet], Awaitable[web.Response]]:
    async def complete(request: web.Request, tokens: TokenSet) -> web.Response:
        subject = html.escape(tokens.subject or "(no subject)")
        if await identity.sign_in(tokens):
            request[rs.LOGIN_OUTCOME] = "ok"
            body = f"<p>Signed in. The proxy now calls the sipgate API as <b>{subject}</b>.</p>"
            return html_page(200, "Service identity", body)
        request[rs.LOGIN_OUTCOME] = "not_allowed"
        body = (
            f"<p><b>{subject}</b> is not in <code>service.allowed_subjects</code>; "
            "the service identity is unchanged.</p>"
        )
        return html_page(403, "Service identity", body)

    return complete


def status_handler(
    identity: ServiceIdentity,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def status(request: web.Request) -> web.Response:
        return web.json_response(identity.status(), headers={"Cache-Control": "no-store"})

    return status

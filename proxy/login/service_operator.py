"""Service mode's operator endpoints: an operator's login becomes the proxy's identity;
``/oauth2/service`` says how it stands."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable

from aiohttp import web

from proxy import request_state as rs
from proxy.auth.personal_access_token import HeadlessClientGuard
from proxy.auth.service_identity import ServiceIdentity
from proxy.login.routes import LoginRoutes, html_page
from proxy.oauth.tokens import TokenSet


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


def register_operator_routes(
    router: web.UrlDispatcher,
    prefix: str,
    routes: LoginRoutes,
    identity: ServiceIdentity,
    guard: HeadlessClientGuard,
) -> None:
    """Start and status answer web pages only from the proxy's own origin and trusted
    host names, as the proxied path does; the callback is the IdP's redirect (cross-site
    by nature) and is bound to the flow cookie that start set."""
    router.add_get(f"{prefix}/start", _page_guarded(guard, routes.start), name="login:start")
    router.add_get(f"{prefix}/callback", routes.callback, name="login:callback")
    status = _page_guarded(guard, status_handler(identity))
    router.add_get(f"{prefix}/service", status, name="login:service")


def _page_guarded(
    guard: HeadlessClientGuard, handler: Callable[[web.Request], Awaitable[web.Response]]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def guarded(request: web.Request) -> web.Response:
        guard.check_page(request)
        return await handler(request)

    return guarded

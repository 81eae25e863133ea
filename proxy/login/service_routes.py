"""Service mode's operator endpoints: an operator's login becomes the proxy's identity
(``start``, ``callback``), and ``/oauth2/service`` says how it stands.

Start and status answer web pages only from the proxy's own origin and trusted host
names, as the proxied path does; the callback is the IdP's redirect (cross-site by
nature) and is bound to the flow cookie that start set."""

from __future__ import annotations

import html

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy import request_state as rs
from proxy.auth.headless_clients import HeadlessClientGuard
from proxy.auth.service_identity import ServiceIdentity
from proxy.login.pages import html_page
from proxy.login.routes import LoginCompletion, LoginRoutes
from proxy.oauth.tokens import TokenSet


def operator_sign_in(identity: ServiceIdentity) -> LoginCompletion:
    async def sign_in(request: web.Request, tokens: TokenSet, return_to: str) -> web.Response:
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

    return sign_in


def register_operator_routes(
    router: web.UrlDispatcher,
    prefix: str,
    routes: LoginRoutes,
    identity: ServiceIdentity,
    guard: HeadlessClientGuard,
) -> None:
    routes.register(router, wrap_start=lambda start: _page_guarded(guard, start))
    status = _page_guarded(guard, _status_handler(identity))
    router.add_get(f"{prefix}/service", status, name="login:service")


def _status_handler(identity: ServiceIdentity) -> Handler:
    async def status(request: web.Request) -> web.Response:
        return web.json_response(identity.status(), headers={"Cache-Control": "no-store"})

    return status


def _page_guarded(guard: HeadlessClientGuard, handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        guard.check_page(request)
        return await handler(request)

    return guarded

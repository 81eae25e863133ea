"""Service mode's operator endpoints: an operator's login becomes the proxy's identity
(``start``, ``callback``), ``/oauth2/service`` says how it stands, and ``sign_out``
removes it (the operator's reset).

Start, status and the sign-out question answer web pages only from the proxy's own
origin and trusted host names, as the proxied path does; the callback is the IdP's
redirect (cross-site by nature) and is bound to the flow cookie that start set. The
sign-out itself is a POST that passes the same check as a request that would use the
identity (``auth.allowed_client_networks``, and with ``auth.clients`` a credential whose
rules allow ``POST {prefix}/sign_out``), so whoever could not use the identity cannot
end it, and a foreign page cannot post it (CSRF)."""

from __future__ import annotations

import html

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy import request_state as rs
from proxy.auth.clients.access import SharedAccess
from proxy.auth.headless_clients import HeadlessClientGuard
from proxy.auth.redirects import login_url
from proxy.auth.service_identity import ServiceIdentity
from proxy.login.pages import html_page, service_sign_out_page, service_signed_out_page
from proxy.login.routes import LoginCompletion, LoginRoutes
from proxy.oauth.tokens import TokenSet


def operator_sign_in(identity: ServiceIdentity, prefix: str) -> LoginCompletion:
    async def sign_in(request: web.Request, tokens: TokenSet, return_to: str) -> web.Response:
        subject = html.escape(tokens.subject or "(no subject)")
        prefix_ = html.escape(prefix, quote=True)
        if await identity.sign_in(tokens):
            request[rs.LOGIN_OUTCOME] = "ok"
            body = (
                f"<p>Signed in. The proxy now calls the sipgate API as <b>{subject}</b>.</p>"
                "<p>Clients from <code>auth.allowed_client_networks</code> can call it now; "
                f'<a href="{prefix_}/service">the status</a> shows when it was last '
                f'refreshed, <a href="{prefix_}/sign_out">sign out</a> removes it.</p>'
            )
            return html_page(200, "Service identity", body)
        request[rs.LOGIN_OUTCOME] = "not_allowed"
        body = (
            f"<p><b>{subject}</b> is not in <code>auth.service.allowed_subjects</code>; "
            "the service identity is unchanged.</p>"
            "<p>Sign in as a listed subject, or add this one to the list and restart the "
            "proxy.</p>"
        )
        return html_page(403, "Not a service identity", body)

    return sign_in


def register_operator_routes(
    router: web.UrlDispatcher,
    prefix: str,
    routes: LoginRoutes,
    identity: ServiceIdentity,
    access: SharedAccess,
) -> None:
    guard = access.guard
    routes.register(router, wrap_start=lambda start: _page_guarded(guard, start))
    status = _page_guarded(guard, _status_handler(identity))
    router.add_get(f"{prefix}/service", status, name="login:service")
    ask = _page_guarded(guard, _sign_out_question(prefix, identity))
    router.add_get(f"{prefix}/sign_out", ask, name="login:sign_out")
    router.add_post(f"{prefix}/sign_out", _sign_out(prefix, identity, access))
    signed_out = _page_guarded(guard, _signed_out(prefix))
    router.add_get(f"{prefix}/signed_out", signed_out, name="login:signed_out")


def _sign_out_question(prefix: str, identity: ServiceIdentity) -> Handler:
    async def ask(request: web.Request) -> web.Response:
        subject = identity.current.tokens.subject if identity.current else None
        return service_sign_out_page(prefix, subject)

    return ask


def _sign_out(prefix: str, identity: ServiceIdentity, access: SharedAccess) -> Handler:
    async def sign_out(request: web.Request) -> web.Response:
        access.check(request)  # raises: the error middleware answers 403
        await identity.sign_out()
        return web.Response(status=303, headers={"Location": f"{prefix}/signed_out"})

    return sign_out


def _signed_out(prefix: str) -> Handler:
    async def signed_out(request: web.Request) -> web.Response:
        return service_signed_out_page(login_url("", prefix, "/"))

    return signed_out


def _status_handler(identity: ServiceIdentity) -> Handler:
    async def status(request: web.Request) -> web.Response:
        return web.json_response(identity.status(), headers={"Cache-Control": "no-store"})

    return status


def _page_guarded(guard: HeadlessClientGuard, handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        guard.check_page(request)
        return await handler(request)

    return guarded

"""The few HTML pages the proxy shows a person: small, static, no scripts.

Each says what happened and what to do next, in one shared style: an inline
``<style>`` that the pages' Content-Security-Policy admits by its hash (no
``'unsafe-inline'``, no external assets). Callers pass HTML built from fixed text;
anything that came from a request or the IdP goes through ``html.escape`` first.
"""

from __future__ import annotations

import base64
import hashlib
import html
from urllib.parse import quote

from aiohttp import web

from proxy.auth.redirects import login_url

STYLE = (
    "body{font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;"
    "background:#f4f5f7;color:#1d2129}"
    "main{max-width:34rem;margin:4rem auto;padding:1.5rem 2rem;background:#fff;"
    "border:1px solid #d8dce3;border-radius:8px}"
    "h1{font-size:1.35rem;margin:0 0 .75rem}p{margin:.6rem 0}"
    "a.button,button{display:inline-block;font:inherit;padding:.45rem 1rem;border-radius:6px;"
    "border:1px solid #1d5bd8;background:#1d5bd8;color:#fff;text-decoration:none;cursor:pointer}"
    "code{background:#eef0f3;padding:0 .25rem;border-radius:3px}"
    "footer{color:#5f6673;font-size:.85rem;margin-top:1.25rem}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
# No scripts, no subresources, no framing; the one style block by its hash; forms may
# only post back here.
CSP = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


def html_page(status: int, title: str, body: str) -> web.Response:
    """``title`` is plain text; ``body`` is HTML whose request data is already escaped."""
    title = html.escape(title)
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{title}</title><style>{STYLE}</style></head>"
        f"<body><main><h1>{title}</h1>{body}"
        "<footer>sipgate API proxy</footer></main></body></html>"
    )
    return web.Response(
        status=status,
        text=page,
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "Content-Security-Policy": CSP,
            "X-Frame-Options": "DENY",
        },
    )


def retry_page(status: int, message: str, prefix: str, return_path: str) -> web.Response:
    """A failed sign-in: what happened, and a link that starts a new attempt that lands
    where the failed one would have (``login_url`` checks the path again)."""
    retry = html.escape(login_url("", prefix, return_path), quote=True)
    body = (
        f"<p>{html.escape(message)}</p>"
        f'<p><a class="button" href="{retry}">Try again</a></p>'
        "<p>If it keeps failing, tell whoever runs this proxy: its log says why.</p>"
    )
    return html_page(status, "Sign-in failed", body)


def sign_out_page(prefix: str, return_path: str | None) -> web.Response:
    """A sign-out another site linked to: asked for, never done on its behalf."""
    target = f"{prefix}/sign_out"
    if return_path is not None:
        target += f"?rd={quote(return_path, safe='/')}"
    body = (
        "<p>Another page sent you here to sign out of the sipgate API proxy.</p>"
        f'<form method="post" action="{html.escape(target, quote=True)}">'
        '<p><button type="submit">Sign out</button></p></form>'
        "<p>If you did not mean to, just close this page: nothing has changed.</p>"
    )
    return html_page(200, "Sign out?", body)


def signed_out_page(prefix: str, idp_logout: bool) -> web.Response:
    """Where a sign-out without a return path ends: no silent sign-in again."""
    again = html.escape(login_url("", prefix, "/"), quote=True)
    idp = (
        ""
        if idp_logout
        else " While your sipgate login is still open in this browser, signing in again "
        "may not ask for your password."
    )
    body = (
        f"<p>Your session with the sipgate API proxy has ended.{idp}</p>"
        f'<p><a class="button" href="{again}">Sign in again</a></p>'
    )
    return html_page(200, "You are signed out", body)


def service_sign_out_page(prefix: str, subject: str | None) -> web.Response:
    """Service mode's reset, asked for on a page; the POST does it."""
    if subject is None:
        who = "<p>There is no service identity right now.</p>"
    else:
        who = f"<p>The proxy calls the sipgate API as <b>{html.escape(subject)}</b>.</p>"
    body = (
        f"{who}<p>Signing out removes the stored identity and ends its grant at sipgate: "
        "clients get <code>503 service_identity_missing</code> until an operator signs in "
        "again.</p>"
        f'<form method="post" action="{html.escape(prefix, quote=True)}/sign_out">'
        '<p><button type="submit">Sign out the service identity</button></p></form>'
    )
    return html_page(200, "Sign out the service identity?", body)


def service_signed_out_page(sign_in: str) -> web.Response:
    body = (
        "<p>The service identity is removed. Clients get "
        "<code>503 service_identity_missing</code> until an operator signs in again.</p>"
        f'<p><a class="button" href="{html.escape(sign_in, quote=True)}">Sign in</a></p>'
    )
    return html_page(200, "Service identity signed out", body)

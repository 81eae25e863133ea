"""The few HTML pages the proxy shows a person: small, static, no scripts."""

from __future__ import annotations

import html
from urllib.parse import quote

from aiohttp import web

from proxy.auth.redirects import login_url


def html_page(status: int, title: str, body: str) -> web.Response:
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h1>{title}</h1>{body}</body></html>"
    )
    return web.Response(
        status=status,
        text=page,
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            # No scripts, no subresources; forms may only post back here.
            "Content-Security-Policy": "default-src 'none'; form-action 'self'",
            "X-Frame-Options": "DENY",
        },
    )


def retry_page(status: int, message: str, prefix: str, return_path: str) -> web.Response:
    """A failed sign-in: what happened, and a link that starts a new attempt."""
    retry = html.escape(login_url("", prefix, return_path), quote=True)
    body = f'<p>{html.escape(message)}</p><p><a href="{retry}">Try again</a></p>'
    return html_page(status, "Sign-in", body)


def sign_out_page(prefix: str, return_path: str) -> web.Response:
    """A sign-out another site linked to: asked for, never done on its behalf."""
    target = f"{prefix}/sign_out?rd={quote(return_path, safe='/')}"
    body = (
        f'<form method="post" action="{html.escape(target, quote=True)}">'
        '<p><button type="submit">Sign out of the sipgate API proxy</button></p></form>'
    )
    return html_page(200, "Sign out", body)

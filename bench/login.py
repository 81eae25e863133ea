"""Real logins through the test IdP's form, for the proxy and for mod_auth_openidc.

Both go through the authorization-code flow exactly as a browser would (redirects,
the IdP's login form, the callback); what comes out is the Cookie header value the
benchmark then sends with every request.
"""

from __future__ import annotations

import html
from urllib.parse import urljoin

from tests.support.scripted_browser import FORM_ACTION, ScriptedBrowser


def cookie_header(jar: dict[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in jar.items())


async def proxy_login(public_url: str, username: str = "bench-user") -> str:
    """Log in through the proxy's /oauth2/start; the proxy's session cookie header."""
    async with ScriptedBrowser() as browser:
        await browser.login(public_url, username)
        jar = browser.jar(public_url)
        if not any(name.startswith("sipgate_proxy_") for name in jar):
            raise RuntimeError(f"proxy login gave no session cookie: {sorted(jar)}")
        return cookie_header(jar)


async def mod_auth_openidc_login(public_url: str, username: str = "bench-user") -> str:
    """Open a protected page of Apache, log in at the IdP, follow back; its cookie header."""
    async with ScriptedBrowser() as browser:
        url, status, body = await browser.navigate(public_url + "/")
        match = FORM_ACTION.search(body)
        if status != 200 or match is None:
            raise RuntimeError(f"expected the IdP's login form, got {status} at {url}")
        action = urljoin(url, html.unescape(match.group(1)))
        status, headers, _, _ = await browser.request(
            "POST", action, data={"username": username, "password": "pw"}
        )
        if status not in (302, 303):
            raise RuntimeError(f"login form answered {status}")
        url, status, body = await browser.navigate(urljoin(action, headers["Location"]))
        if status != 200 or not url.startswith(public_url):
            raise RuntimeError(f"mod_auth_openidc login ended at {url} with {status}: {body[:200]}")
        jar = browser.jar(public_url)
        if not any(name.startswith("mod_auth_openidc_session") for name in jar):
            raise RuntimeError(f"mod_auth_openidc login gave no session cookie: {sorted(jar)}")
        # The state cookie is spent after the callback; only the session remains useful.
        return cookie_header(
            {k: v for k, v in jar.items() if k.startswith("mod_auth_openidc_session")}
        )

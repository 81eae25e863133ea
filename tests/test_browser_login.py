"""A real Chromium logs in through the proxy, calls the API, signs out, and is sent to
login again. Every Set-Cookie it receives from the proxy is measured."""

from __future__ import annotations

import asyncio
import json

from tests.conftest import StackFactory
from tests.support.idp import LOGIN_FORM, browser_login


async def test_browser_logs_in_calls_api_and_signs_out(
    oauth_stack: StackFactory, page: object
) -> None:
    from playwright.async_api import Page, Response

    assert isinstance(page, Page)
    stack = await oauth_stack(
        {
            "SIPGATE_PROXY_AUTH__OAUTH2__SCOPES": "[all, openid]",
            "SIPGATE_PROXY_AUTH__OAUTH2__IDP_LOGOUT": "true",
        }
    )
    set_cookies: list[str] = []

    async def collect(response: Response) -> None:
        if response.url.startswith(stack.public_url):
            for header in await response.headers_array():
                if header["name"].lower() == "set-cookie":
                    set_cookies.append(header["value"])

    page.on("response", collect)

    await page.goto(f"{stack.public_url}/v2/account?from=browser")
    await browser_login(page, "alice@example.com")
    await page.wait_for_url(f"{stack.public_url}/v2/account?from=browser")
    echoed = json.loads(await page.inner_text("body"))
    assert echoed["jwt_sub"] == "alice@example.com"
    assert echoed["raw_path"] == "/v2/account?from=browser"

    # The page's own fetch() (an API call, not a navigation) rides on the session cookie.
    status = await page.evaluate("fetch('/v2/history').then(r => r.status)")
    assert status == 200
    assert stack.verifier.accepted == 2

    session_cookies = [c for c in set_cookies if c.startswith("sipgate_proxy_") and "=;" not in c]
    sizes = [len(f"Set-Cookie: {c}") for c in set_cookies]
    print(f"session Set-Cookie sizes: {[len('Set-Cookie: ' + c) for c in session_cookies]}")
    assert max(sizes) <= 4096
    assert len([c for c in session_cookies if not c.startswith("sipgate_proxy_flow_")]) == 1

    await page.goto(f"{stack.public_url}/oauth2/sign_out?rd=/v2/account")
    assert stack.idp.stats()["revocation"] == {"success": 1}
    # Signed out here and at the IdP: the next visit shows the IdP's login form again.
    await page.wait_for_selector(LOGIN_FORM)
    cookies = await page.context.cookies(stack.public_url)
    assert not [c for c in cookies if c["name"].startswith("sipgate_proxy_")]


async def test_browser_logs_in_refreshes_and_signs_out_when_cookie_name_is_host_prefixed(
    oauth_stack: StackFactory, page: object
) -> None:
    """``__Host-`` cookies must be Secure, Path=/ and carry no Domain, or Chromium drops
    them. Chromium treats http://localhost as a secure context, so Secure cookies set
    over it are kept, as over https."""
    from playwright.async_api import Page

    assert isinstance(page, Page)
    name = "__Host-sipgate_proxy"
    stack = await oauth_stack(
        {
            "SIPGATE_PROXY_SESSION__COOKIE_NAME": name,
            "SIPGATE_PROXY_SESSION__COOKIE_SECURE": "true",
            "SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "4",  # due 4 s after login
        },
        access_ttl=8,
    )

    async def own_cookies() -> list[dict[str, object]]:
        cookies = await page.context.cookies(stack.public_url)
        return [dict(c) for c in cookies if c["name"].startswith(name)]

    await page.goto(f"{stack.public_url}/v2/account?from=browser")
    await page.wait_for_selector(LOGIN_FORM)
    (flow,) = await own_cookies()  # Chromium kept the login attempt's cookie
    assert str(flow["name"]).startswith(f"{name}_flow_")
    assert (flow["path"], flow["secure"], flow["httpOnly"]) == ("/", True, True)

    await browser_login(page, "hana@example.com")
    await page.wait_for_url(f"{stack.public_url}/v2/account?from=browser")
    assert json.loads(await page.inner_text("body"))["jwt_sub"] == "hana@example.com"
    (session,) = await own_cookies()  # the flow cookie is gone, the session is there
    assert (session["name"], session["path"], session["secure"]) == (f"{name}_0", "/", True)
    assert not str(session["domain"]).startswith(".")  # host-only

    await asyncio.sleep(4.2)  # within the skew now: the next call refreshes
    status = await page.evaluate("fetch('/v2/history').then(r => r.status)")
    assert status == 200
    assert stack.idp.token_calls("refresh_token", "success") == 1
    (refreshed,) = await own_cookies()
    assert refreshed["value"] != session["value"]  # the browser took the refreshed cookie
    assert await page.evaluate("fetch('/v2/history').then(r => r.status)") == 200

    await page.goto(f"{stack.public_url}/oauth2/sign_out?rd=/oauth2/userinfo")
    assert json.loads(await page.inner_text("body"))["error"] == "unauthenticated"
    assert stack.idp.stats()["revocation"] == {"success": 1}
    assert await own_cookies() == []

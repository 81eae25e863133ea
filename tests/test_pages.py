"""The pages the proxy shows a person, against the real IdP: styled under their own CSP,
they say what happened and what to do next; sign-out without ``rd`` ends on a
signed-out page (never a silent new login); "Try again" keeps the deep link and never
leaves the origin; userinfo gives ISO 8601 times beside the epoch numbers."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from tests.conftest import StackFactory
from tests.support.idp import LOGIN_FORM, browser_login
from tests.support.scripted_browser import NAVIGATION, ScriptedBrowser

DEEP = "/v2/history?types=CALL&limit=5"


def retry_link(body: str) -> str:
    match = re.search(r'<a class="button" href="([^"]*)">Try again</a>', body)
    assert match, body
    return html.unescape(match.group(1))


async def start_state(browser: ScriptedBrowser, public_url: str, rd: str) -> str:
    url = f"{public_url}/oauth2/start?rd={quote(rd, safe='')}"
    status, headers, _, _ = await browser.request("GET", url, headers=NAVIGATION)
    assert status == 302
    return parse_qs(urlsplit(headers["Location"]).query)["state"][0]


async def test_error_page_is_styled_under_its_own_csp_in_chromium(
    oauth_stack: StackFactory, page: object
) -> None:
    from playwright.async_api import ConsoleMessage, Page

    assert isinstance(page, Page)
    stack = await oauth_stack()
    console: list[str] = []

    def keep(message: ConsoleMessage) -> None:
        console.append(message.text)

    page.on("console", keep)
    response = await page.goto(f"{stack.public_url}/oauth2/callback?state=forged&code=x")
    assert response is not None
    assert response.status == 400
    csp = response.headers["content-security-policy"]
    assert "style-src 'sha256-" in csp
    assert "unsafe-inline" not in csp
    assert "script-src" not in csp
    assert await page.title() == "Sign-in failed"
    # The style applied: Chromium refused nothing and drew the card.
    radius = await page.evaluate("getComputedStyle(document.querySelector('main')).borderRadius")
    assert radius == "8px"
    assert not [text for text in console if "Content Security Policy" in text], console
    text = await page.inner_text("main")
    assert "expired or was already used" in text  # what happened
    assert "Try again" in text  # what to do next


async def test_try_again_keeps_the_deep_link_after_an_idp_refusal(
    oauth_stack: StackFactory,
) -> None:
    stack = await oauth_stack()
    async with ScriptedBrowser() as browser:
        state = await start_state(browser, stack.public_url, DEEP)
        url = f"{stack.public_url}/oauth2/callback?error=access_denied&state={state}"
        status, _, body, _ = await browser.request("GET", url, headers=NAVIGATION)
        assert status == 403
        link = retry_link(body)
        assert link == "/oauth2/start?rd=" + quote(DEEP, safe="/")
        # Following it logs in and lands on the deep link.
        status, headers, _ = await browser.sign_in(stack.public_url, "ann", link.split("rd=")[1])
    assert (status, headers["Location"]) == (302, DEEP)


async def test_try_again_keeps_the_deep_link_when_the_attempt_was_already_used(
    oauth_stack: StackFactory,
) -> None:
    stack = await oauth_stack()
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "ben")  # the IdP now skips its form
        _, headers, _, _ = await browser.request(
            "GET", f"{stack.public_url}/oauth2/start?rd={quote(DEEP, safe='')}"
        )
        flows = dict(browser.jar(stack.public_url))
        callback, _, _ = await browser.navigate(headers["Location"], stop_at=stack.public_url)
        assert (await browser.request("GET", callback, headers=NAVIGATION))[0] == 302
        browser.jar(stack.public_url).update(flows)  # back button: the old cookie again
        status, _, body, _ = await browser.request("GET", callback, headers=NAVIGATION)
    assert status == 400
    assert retry_link(body) == "/oauth2/start?rd=" + quote(DEEP, safe="/")


@pytest.mark.parametrize("evil", ["//evil.example", "https://evil.example", "/\\evil"])
async def test_try_again_never_leaves_the_origin(oauth_stack: StackFactory, evil: str) -> None:
    stack = await oauth_stack()
    async with ScriptedBrowser() as browser:
        state = await start_state(browser, stack.public_url, evil)
        url = f"{stack.public_url}/oauth2/callback?error=access_denied&state={state}"
        _, _, body, _ = await browser.request("GET", url, headers=NAVIGATION)
        assert retry_link(body) == "/oauth2/start?rd=/"
        # The raw link, as a hand-edited retry, still lands on the origin.
        status, headers, _ = await browser.sign_in(stack.public_url, "eve", quote(evil, safe=""))
    assert (status, headers["Location"]) == (302, "/")


async def test_sign_out_without_rd_ends_on_the_signed_out_page(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack()
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "carl")
        status, headers, _, _ = await browser.request(
            "POST", f"{stack.public_url}/oauth2/sign_out", headers={"Sec-Fetch-Site": "same-origin"}
        )
        assert (status, headers["Location"]) == (302, "/oauth2/signed_out")
        logins = stack.idp.stats()["authorization"]
        url, status, body = await browser.navigate(stack.public_url + headers["Location"])
    assert (url, status) == (f"{stack.public_url}/oauth2/signed_out", 200)
    assert "<title>You are signed out</title>" in body
    assert 'href="/oauth2/start?rd=/">Sign in again</a>' in body
    assert "may not ask for your password" in body  # idp_logout is off
    assert stack.idp.stats()["authorization"] == logins  # no silent new login
    assert stack.idp.stats()["revocation"] == {"success": 1}


@pytest.mark.parametrize(
    ("rd", "location"),
    [
        ("/v2/x?a=1", "/v2/x?a=1"),  # as before: a safe path is kept
        ("/", "/"),
        ("//evil.example", "/oauth2/signed_out"),  # refused: the page, not "/"
        ("https://evil.example", "/oauth2/signed_out"),
        ("/\\evil", "/oauth2/signed_out"),
    ],
)
async def test_sign_out_with_rd_redirects_only_to_a_safe_path(
    oauth_stack: StackFactory, rd: str, location: str
) -> None:
    stack = await oauth_stack()
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "dora")
        url = f"{stack.public_url}/oauth2/sign_out?rd={quote(rd, safe='')}"
        status, headers, _, _ = await browser.request("GET", url, headers=NAVIGATION)
    assert (status, headers["Location"]) == (302, location)


async def test_cross_site_sign_out_link_without_rd_asks_and_posts_without_rd(
    oauth_stack: StackFactory,
) -> None:
    stack = await oauth_stack()
    async with ScriptedBrowser() as browser:
        status, _, body, _ = await browser.request(
            "GET",
            f"{stack.public_url}/oauth2/sign_out",
            headers={**NAVIGATION, "Sec-Fetch-Site": "cross-site"},
        )
    assert status == 200
    assert '<form method="post" action="/oauth2/sign_out">' in body
    assert "<title>Sign out?</title>" in body


async def test_idp_logout_comes_back_to_the_signed_out_page_in_chromium(
    oauth_stack: StackFactory, page: object
) -> None:
    from playwright.async_api import Page

    assert isinstance(page, Page)
    stack = await oauth_stack(
        {
            "SIPGATE_PROXY_AUTH__OAUTH2__SCOPES": "[all, openid]",
            "SIPGATE_PROXY_AUTH__OAUTH2__IDP_LOGOUT": "true",
        }
    )
    await page.goto(f"{stack.public_url}/v2/account")
    await browser_login(page, "erin@example.com")
    await page.wait_for_url(f"{stack.public_url}/v2/account")

    await page.goto(f"{stack.public_url}/oauth2/sign_out")
    await page.wait_for_url(f"{stack.public_url}/oauth2/signed_out")
    assert await page.title() == "You are signed out"
    assert "may not ask for your password" not in await page.inner_text("main")
    assert stack.idp.stats()["end_session"] >= 1
    # Signed out at the IdP too: "Sign in again" asks for the password.
    await page.click("text=Sign in again")
    await page.wait_for_selector(LOGIN_FORM)


async def test_userinfo_gives_iso_times_beside_the_epoch_numbers(
    oauth_stack: StackFactory,
) -> None:
    stack = await oauth_stack()
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "fay")
        status, _, body, _ = await browser.request("GET", f"{stack.public_url}/oauth2/userinfo")
    info = json.loads(body)
    assert status == 200
    for key in ("expires_at", "refresh_expires_at", "session_created_at"):
        iso = info[f"{key}_iso"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", iso), iso
        parsed = datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert parsed.timestamp() == info[key]  # the same instant, in UTC
    assert {"sub", "scopes", "expires_in"} <= info.keys()  # the old keys stay

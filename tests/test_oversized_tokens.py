"""Token answers too large for any session (an IdP that packs huge claims into its
tokens): refused cleanly, at login with an error page, at refresh as a transient failure
that keeps the session, and logged without the tokens."""

from __future__ import annotations

import asyncio
import logging

import pytest

from proxy.oauth.tokens import MAX_TOKEN_SET_BYTES
from tests.conftest import StackFactory
from tests.support.scripted_browser import NAVIGATION, ScriptedBrowser
from tests.support.sessions import cookie_store, seal

JSON = {"Accept": "application/json"}
HUGE = 40_000  # bytes of access token, random: more than 8 cookies even compressed


async def test_login_with_oversized_token_answer_ends_on_an_error_page(
    oauth_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    stack = await oauth_stack()
    stack.idp.set_faults(access_token_bytes=HUGE)
    async with ScriptedBrowser() as browser:
        status, _, body = await browser.sign_in(stack.public_url, "alice", "/v2/account")
        jar = browser.jar(stack.public_url)
        assert "sipgate_proxy_0" not in jar
        status_after, _, _, _ = await browser.request(
            "GET", f"{stack.public_url}/v2/account", headers=NAVIGATION
        )
    assert status == 502
    assert "more than a session can hold" in body
    assert "Try again" in body
    assert status_after == 302  # still no session: back to the login
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("more than a session holds" in r.getMessage() for r in caplog.records)


async def test_refresh_with_oversized_token_answer_keeps_the_session(
    oauth_stack: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    stack = await oauth_stack({"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "4"}, access_ttl=8)
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "bob", "/")
        stack.idp.set_faults(access_token_bytes=HUGE)
        await asyncio.sleep(4.2)  # due, still valid
        status, _, _, cookies = await browser.request(
            "GET", f"{stack.public_url}/v2/account", headers=JSON
        )
        assert status == 200  # the current token, still valid
        assert cookies == []  # the session is kept as it was
        await asyncio.sleep(4.0)  # expired now; the refresh token is not sent again at once
        status, headers, _, _ = await browser.request(
            "GET", f"{stack.public_url}/v2/account", headers=JSON
        )
    assert status == 503
    assert "Retry-After" in headers
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("TokenSetTooLarge" in r.getMessage() for r in caplog.records)


def test_the_token_set_limit_fits_the_cookie_store_even_uncompressed() -> None:
    import secrets

    from proxy.crypto.keys import decode_key, generate_key
    from proxy.crypto.sealing import KeyRing
    from proxy.oauth.tokens import TokenSet

    store = cookie_store(KeyRing([decode_key(generate_key())]), "sipgate_proxy", True, 1e6)
    third = MAX_TOKEN_SET_BYTES // 3
    tokens = TokenSet(
        access_token=secrets.token_urlsafe(third)[:third],
        refresh_token=secrets.token_urlsafe(third)[:third],
        id_token=secrets.token_urlsafe(third)[:third],
        expires_at=2e9,
        refresh_expires_at=2e9,
    )
    cookies = seal(store, tokens, 1.7e9, {})
    assert all(len("Set-Cookie: " + c) <= 4096 for c in cookies)

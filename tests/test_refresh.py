"""Refresh on the fly against the real IdP with refresh-token rotation on.

Access tokens live a few seconds here; ``refresh_skew`` decides how long before expiry
the proxy renews them, so tests reach "needs refresh" without waiting minutes.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from tests.conftest import OAuthStack, StackFactory
from tests.support.scripted_browser import NAVIGATION, ScriptedBrowser

# 8 s tokens, 4 s skew: a refresh is due 4 s after it was issued, the token still valid
DUE = 4.2

JSON = {"Accept": "application/json"}
Answer = tuple[int, list[str]]  # status and Set-Cookie values


def cookie_header(browser: ScriptedBrowser, stack: OAuthStack) -> str:
    return "; ".join(f"{k}={v}" for k, v in browser.jar(stack.public_url).items())


async def logged_in(stack: OAuthStack, browser: ScriptedBrowser, user: str) -> float:
    await browser.login(stack.public_url, user, "/")
    return time.monotonic()


def refresh_grants(stack: OAuthStack, outcome: str | None = "success") -> int:
    return stack.idp.token_calls("refresh_token", outcome)


async def concurrent_gets(stack: OAuthStack, cookie: str, count: int) -> list[Answer]:
    """``count`` GETs at once with one Cookie header: (status, Set-Cookie values) each."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as client:

        async def call(i: int) -> Answer:
            url = f"{stack.public_url}/v2/account?i={i}"
            async with client.get(url, headers={**JSON, "Cookie": cookie}) as resp:
                await resp.read()
                return resp.status, resp.headers.getall("Set-Cookie", [])

        return list(await asyncio.gather(*(call(i) for i in range(count))))


async def test_200_concurrent_requests_after_expiry_share_one_refresh(
    oauth_stack: StackFactory,
) -> None:
    stack = await oauth_stack({"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "4"}, access_ttl=8)
    async with ScriptedBrowser() as browser:
        await logged_in(stack, browser, "alice")
        await asyncio.sleep(DUE)  # now within the skew: every request wants a refresh
        results = await concurrent_gets(stack, cookie_header(browser, stack), 200)
    assert [status for status, _ in results] == [200] * 200
    assert refresh_grants(stack, None) == 1  # one grant for 200 requests, none failed
    assert all(any(c.startswith("sipgate_proxy_0=") for c in cookies) for _, cookies in results)
    assert len(set(stack.verifier.tokens_seen)) == 1  # all forwarded with the new token


async def test_old_cookie_within_grace_gets_new_tokens_without_second_grant(
    oauth_stack: StackFactory,
) -> None:
    stack = await oauth_stack({"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "4"}, access_ttl=8)
    async with ScriptedBrowser() as browser:
        await logged_in(stack, browser, "bob")
        await asyncio.sleep(DUE)
        old_jar = dict(browser.jar(stack.public_url))
        status, _, _, _ = await browser.request("GET", f"{stack.public_url}/v2/a", headers=JSON)
        assert status == 200
        assert refresh_grants(stack) == 1
        new_jar = dict(browser.jar(stack.public_url))
        assert new_jar != old_jar
        # A request that still carries the pre-refresh cookie (another tab, a request
        # that was in flight): served from the grace cache, no replay of the old token.
        browser.jar(stack.public_url).clear()
        browser.jar(stack.public_url).update(old_jar)
        status, _, _, _ = await browser.request("GET", f"{stack.public_url}/v2/b", headers=JSON)
        assert status == 200
        assert refresh_grants(stack, None) == 1
        assert stack.verifier.tokens_seen[-1] == stack.verifier.tokens_seen[-2]
        # The session is still alive: the next refresh with the newest token works.
        await asyncio.sleep(DUE)
        status, _, _, _ = await browser.request("GET", f"{stack.public_url}/v2/c", headers=JSON)
        assert status == 200
        assert refresh_grants(stack, None) == 2
        assert stack.idp.token_calls("refresh_token", "invalid_grant") == 0


async def test_trickle_of_requests_keeps_session_alive_across_many_expiries(
    oauth_stack: StackFactory,
) -> None:
    ttl = 2
    stack = await oauth_stack({"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "1"}, access_ttl=ttl)
    lifetimes = 10
    async with ScriptedBrowser() as browser:
        started = await logged_in(stack, browser, "carol")
        statuses = []
        while time.monotonic() - started < lifetimes * ttl:
            status, _, _, _ = await browser.request(
                "GET", f"{stack.public_url}/v2/account", headers=JSON
            )
            statuses.append(status)
            await asyncio.sleep(0.4)
    assert set(statuses) == {200}
    assert refresh_grants(stack) >= lifetimes - 1
    assert refresh_grants(stack, None) == refresh_grants(stack)  # no failed refresh


async def test_idp_down_uses_valid_token_then_503_then_recovers(
    oauth_stack: StackFactory,
) -> None:
    ttl = 3
    stack = await oauth_stack({"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "2.5"}, access_ttl=ttl)
    async with ScriptedBrowser() as browser:
        started = await logged_in(stack, browser, "dave")
        stack.idp.stop()
        await asyncio.sleep(max(0.0, started + 1 - time.monotonic()))
        # Refresh is due, the IdP is down, the token is still valid: forwarded.
        status, _, _, _ = await browser.request("GET", f"{stack.public_url}/v2/a", headers=JSON)
        assert status == 200
        await asyncio.sleep(max(0.0, started + ttl + 0.5 - time.monotonic()))
        # Now it has expired: 503 with Retry-After, and the session is kept.
        status, headers, body, cookies = await browser.request(
            "GET", f"{stack.public_url}/v2/a", headers=JSON
        )
        assert status == 503
        assert int(headers["Retry-After"]) > 0
        assert json.loads(body)["error"] == "idp_unavailable"
        assert cookies == []
        status, _, _, _ = await browser.request(
            "GET", f"{stack.public_url}/v2/a", headers=NAVIGATION
        )
        assert status == 503  # a browser is not sent to a login that cannot work
        stack.idp.start()
        status, _, _, cookies = await browser.request(
            "GET", f"{stack.public_url}/v2/a", headers=JSON
        )
        assert status == 200
        assert any(c.startswith("sipgate_proxy_0=") for c in cookies)


async def test_idp_answering_503_is_transient(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack({"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "4"}, access_ttl=8)
    async with ScriptedBrowser() as browser:
        await logged_in(stack, browser, "erin")
        stack.idp.set_faults(token_status=503, count=1)
        await asyncio.sleep(DUE)
        status, _, _, cookies = await browser.request(
            "GET", f"{stack.public_url}/v2/a", headers=JSON
        )
        assert status == 200  # still-valid token used
        assert cookies == []
        status, _, _, cookies = await browser.request(
            "GET", f"{stack.public_url}/v2/a", headers=JSON
        )
        assert status == 200
        assert any(c.startswith("sipgate_proxy_0=") for c in cookies)
    assert refresh_grants(stack) == 1


async def test_revoked_refresh_token_ends_session(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack({"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "4"}, access_ttl=8)
    async with ScriptedBrowser() as browser:
        await logged_in(stack, browser, "frank")
        jar = dict(browser.jar(stack.public_url))
        stack.idp.revoke_subject("frank")
        await asyncio.sleep(DUE)
        status, _, body, cookies = await browser.request(
            "GET", f"{stack.public_url}/v2/a", headers=JSON
        )
        assert status == 401
        assert json.loads(body)["error"] == "unauthenticated"
        assert any(c.startswith("sipgate_proxy_0=;") and "Max-Age=0" in c for c in cookies)
        browser.jar(stack.public_url).update(jar)  # the same dead cookie, as a navigation
        status, headers, _, _ = await browser.request(
            "GET", f"{stack.public_url}/v2/a", headers=NAVIGATION
        )
        assert status == 302
        assert "/oauth2/start" in headers["Location"]
    assert stack.idp.token_calls("refresh_token", "invalid_grant") == 1  # never re-sent


async def test_upstream_401_triggers_one_refresh_and_one_retry(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack()
    async with ScriptedBrowser() as browser:
        await logged_in(stack, browser, "grace")
        stack.verifier.reject_next = 1
        status, _, body, cookies = await browser.request(
            "GET", f"{stack.public_url}/v2/account", headers=JSON
        )
        assert status == 200
        assert json.loads(body)["jwt_sub"] == "grace"
        assert any(c.startswith("sipgate_proxy_0=") for c in cookies)
        assert refresh_grants(stack) == 1
        assert len(stack.verifier.tokens_seen) == 2
        assert stack.verifier.tokens_seen[0] != stack.verifier.tokens_seen[1]
        # Still 401 after the retry: passed on, no second refresh.
        stack.verifier.reject_next = 2
        status, _, _, _ = await browser.request(
            "GET", f"{stack.public_url}/v2/account", headers=JSON
        )
        assert status == 401
        assert refresh_grants(stack) == 2
        # A request with a body is never replayed: its 401 passes through.
        stack.verifier.reject_next = 1
        status, _, _, _ = await browser.request(
            "POST", f"{stack.public_url}/v2/sms", headers=JSON, data=b"{}"
        )
        assert status == 401
        assert refresh_grants(stack) == 2


async def test_a_path_that_always_answers_401_forces_one_refresh_per_token(
    oauth_stack: StackFactory,
) -> None:
    """The retry with the fresh token is refused too: the token is not what the upstream
    minds, so later 401s with it are passed on without another grant, until the token
    changes (here: an ordinary refresh when it is due)."""
    stack = await oauth_stack({"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "4"}, access_ttl=8)
    always_401 = f"{stack.public_url}/__test/status/401"
    async with ScriptedBrowser() as browser:
        await logged_in(stack, browser, "ida")
        statuses = [(await browser.request("GET", always_401, headers=JSON))[0] for _ in range(10)]
        assert statuses == [401] * 10
        assert refresh_grants(stack) == 1
        # the token is fine elsewhere: the session goes on
        status, _, _, _ = await browser.request("GET", f"{stack.public_url}/v2/a", headers=JSON)
        assert status == 200
        await asyncio.sleep(DUE)  # an ordinary refresh changes the token: one more may force
        for _ in range(3):
            status, _, _, _ = await browser.request("GET", always_401, headers=JSON)
            assert status == 401
        assert refresh_grants(stack) == 3  # the ordinary one and one forced
    assert stack.idp.token_calls("refresh_token", "invalid_grant") == 0


async def test_upstream_403_and_402_never_trigger_refresh(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack()
    async with ScriptedBrowser() as browser:
        await logged_in(stack, browser, "heidi")
        for code in (403, 402):
            status, _, _, _ = await browser.request(
                "GET", f"{stack.public_url}/__test/status/{code}", headers=JSON
            )
            assert status == code
    assert refresh_grants(stack, None) == 0


async def test_refreshed_cookies_survive_an_upstream_error(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack({"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "4"}, access_ttl=8)
    async with ScriptedBrowser() as browser:
        await logged_in(stack, browser, "leo")
        await asyncio.sleep(DUE)
        await stack.upstream.close()  # upstream down: the answer will be 502
        status, _, _, cookies = await browser.request(
            "GET", f"{stack.public_url}/v2/a", headers=JSON
        )
    assert status == 502
    assert refresh_grants(stack) == 1
    # the rotated refresh token reached the browser anyway: it will not replay the old one
    assert any(c.startswith("sipgate_proxy_0=") and "Max-Age=0" not in c for c in cookies)
    assert len(cookies) == len(set(cookies))  # each Set-Cookie line once (issue 14)


async def test_slow_idp_is_not_asked_again_right_after_a_timeout(
    oauth_stack: StackFactory,
) -> None:
    stack = await oauth_stack(
        {
            "SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "4",
            "SIPGATE_PROXY_AUTH__OAUTH2__TIMEOUT": "1",
        },
        access_ttl=8,
    )
    async with ScriptedBrowser() as browser:
        await logged_in(stack, browser, "mia")
        stack.idp.set_faults(token_delay_ms=3000)
        await asyncio.sleep(DUE)
        timings = []
        for _ in range(3):
            started = time.monotonic()
            status, _, _, _ = await browser.request("GET", f"{stack.public_url}/v2/a", headers=JSON)
            timings.append(time.monotonic() - started)
            assert status == 200  # the still-valid token is used
    assert timings[0] >= 0.9  # the first waited for the timeout …
    assert max(timings[1:]) < 0.5  # … the next ones did not wait again
    await asyncio.sleep(2.5)  # the IdP counts the delayed call once it has answered it
    assert stack.idp.token_calls("refresh_token", None) == 1


async def test_grace_copy_comes_with_its_cookie_when_skew_is_below_five_seconds(
    oauth_stack: StackFactory,
) -> None:
    # 4 s tokens, 1 s skew: a grace copy always has under 5 s left, so it takes the
    # "refresh the grace copy too" path, where its cookie used to be dropped.
    stack = await oauth_stack({"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "1"}, access_ttl=4)
    async with ScriptedBrowser() as browser:
        await logged_in(stack, browser, "erin")
        cookie = cookie_header(browser, stack)  # sent by all 200: the pre-refresh cookie
        await asyncio.sleep(3.2)  # within the skew: due
        results = await concurrent_gets(stack, cookie, 1)  # refreshes
        results += await concurrent_gets(stack, cookie, 199)  # grace copies
    assert [status for status, _ in results] == [200] * 200
    without_cookie = [c for _, c in results if not any(v.startswith("sipgate_proxy_0=") for v in c)]
    assert len(without_cookie) == 0
    assert refresh_grants(stack, "invalid_grant") == 0


async def test_refreshed_cookie_is_set_once_when_the_upstream_answer_breaks_off(
    oauth_stack: StackFactory,
) -> None:
    stack = await oauth_stack({"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "4"}, access_ttl=8)
    async with ScriptedBrowser() as browser:
        await logged_in(stack, browser, "nora")
        await asyncio.sleep(DUE)
        status, _, _, cookies = await browser.request(
            "GET", f"{stack.public_url}/__test/truncated", headers=JSON
        )
    assert status == 502
    assert refresh_grants(stack) == 1
    assert any(c.startswith("sipgate_proxy_0=") for c in cookies)
    assert len(cookies) == len(set(cookies))  # each Set-Cookie line once


async def test_a_refresh_then_a_retry_then_a_502_sets_each_cookie_once(
    oauth_stack: StackFactory,
) -> None:
    # Due on arrival (refresh 1), the upstream answers 401 (forced refresh 2), the retry's
    # answer breaks off (502): the page carries the newest session cookies, each name once.
    stack = await oauth_stack({"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "4"}, access_ttl=8)
    async with ScriptedBrowser() as browser:
        await logged_in(stack, browser, "olga")
        await asyncio.sleep(DUE)
        stack.verifier.reject_next = 1
        status, _, _, cookies = await browser.request(
            "GET", f"{stack.public_url}/v2/__test/truncated", headers=JSON
        )
        assert status == 502
        assert refresh_grants(stack) == 2
        names = [c.split("=", 1)[0] for c in cookies]
        assert "sipgate_proxy_0" in names
        assert len(names) == len(set(names))
        # the cookie it set holds the second refresh's tokens: the session goes on
        status, _, _, _ = await browser.request(
            "GET", f"{stack.public_url}/v2/account", headers=JSON
        )
        assert status == 200
    assert stack.idp.token_calls("refresh_token", "invalid_grant") == 0

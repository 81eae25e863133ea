"""OAuth2 login through the proxy against a real oidc-provider with Keycloak's paths."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import pytest

from tests.conftest import CLIENT_ID, StackFactory
from tests.support.scripted_browser import NAVIGATION, ScriptedBrowser


async def test_login_then_api_call_carries_verified_bearer(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack()
    async with ScriptedBrowser() as browser:
        landed = await browser.login(stack.public_url, "alice", "/v2/account?x=1")
        assert landed == "/v2/account?x=1"
        status, _, body, _ = await browser.request("GET", f"{stack.public_url}/v2/account")
    echoed = json.loads(body)
    assert status == 200
    assert echoed["jwt_sub"] == "alice"  # the upstream verified the JWT against the JWKS
    assert stack.verifier.accepted == 1
    assert stack.idp.token_calls("authorization_code", "success") == 1
    assert stack.idp.stats()["token_auth"] == {"client_secret_post": 1}


async def test_longest_deep_link_is_kept_when_logging_in(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack()
    longest = "/v2/account?q=" + "a" * (2048 - len("/v2/account?q="))  # 2048: rd's limit
    async with ScriptedBrowser() as browser:
        status, headers, body = await browser.sign_in(stack.public_url, "lena", quote(longest))
        assert (status, headers.get("Location")) == (302, longest), body[:200]
        _, status, body = await browser.navigate(stack.public_url + headers["Location"])
    assert status == 200
    assert json.loads(body)["raw_path"] == longest  # arrived at the API unchanged


@pytest.mark.parametrize(
    ("too_long", "landing"),
    [
        ("/v2/account?q=" + "a" * 2048, "/v2/account"),  # query too long: cut to the path
        ("/v2/account#" + "a" * 2048, "/v2/account"),  # fragment too long: the same
        ("/v2/" + "a" * 2048 + "?q=1", "/"),  # the path itself too long: the root
    ],
)
async def test_over_long_deep_link_lands_on_its_path_when_logging_in(
    oauth_stack: StackFactory, too_long: str, landing: str
) -> None:
    stack = await oauth_stack()
    async with ScriptedBrowser() as browser:
        status, headers, body = await browser.sign_in(stack.public_url, "max", quote(too_long))
    assert "expired" not in body
    assert (status, headers.get("Location")) == (302, landing)


async def test_start_redirects_to_keycloak_authorize_with_pkce(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack()
    async with ScriptedBrowser() as browser:
        status, headers, _, cookies = await browser.request(
            "GET", f"{stack.public_url}/oauth2/start?rd=/v2/history"
        )
    assert status == 302
    location = urlsplit(headers["Location"])
    assert location.path == "/auth/realms/sipgate-apps/protocol/openid-connect/auth"
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == f"{stack.public_url}/oauth2/callback"
    assert query["response_type"] == "code"
    assert query["scope"] == "all"
    assert query["code_challenge_method"] == "S256"
    assert len(query["state"]) >= 43
    assert "nonce" not in query  # no openid scope, no nonce
    (flow_cookie,) = cookies
    assert flow_cookie.startswith("sipgate_proxy_flow_")
    assert "Path=/oauth2/" in flow_cookie
    assert "HttpOnly" in flow_cookie


async def test_openid_scope_sends_and_checks_nonce(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack({"SIPGATE_PROXY_AUTH__OAUTH2__SCOPES": "[all, openid]"})
    async with ScriptedBrowser() as browser:
        assert await browser.login(stack.public_url, "bob", "/") == "/"
        status, _, body, _ = await browser.request("GET", f"{stack.public_url}/oauth2/userinfo")
    info = json.loads(body)
    assert status == 200
    assert info["sub"] == "bob"  # taken from the ID token after its nonce was checked


async def test_unauthenticated_navigation_redirects_api_gets_401(
    oauth_stack: StackFactory,
) -> None:
    stack = await oauth_stack()
    async with ScriptedBrowser() as browser:
        url = f"{stack.public_url}/v2/account?a=1"
        status, headers, _, _ = await browser.request("GET", url, headers=NAVIGATION)
        assert status == 302
        assert headers["Location"] == f"{stack.public_url}/oauth2/start?rd=/v2/account%3Fa%3D1"
        status, headers, body, _ = await browser.request(
            "GET", url, headers={"Accept": "application/json"}
        )
        assert status == 401
        assert json.loads(body)["login_url"].startswith(f"{stack.public_url}/oauth2/start")
        status, _, _, _ = await browser.request("POST", url, headers=NAVIGATION)
        assert status == 401  # only GET/HEAD navigations start a login
    assert stack.verifier.accepted + stack.verifier.rejected == 0  # nothing reached upstream


async def test_callback_state_is_single_use(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack()
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "grace")  # the IdP now skips its form
        status, headers, _, _ = await browser.request(
            "GET", f"{stack.public_url}/oauth2/start?rd=/"
        )
        flow_jar = dict(browser.jar(stack.public_url))
        callback, _, _ = await browser.navigate(headers["Location"], stop_at=stack.public_url)
        # first use: works
        status, _, _, _ = await browser.request("GET", callback, headers=NAVIGATION)
        assert status == 302
        # replay with the flow cookie restored: refused, with a page, not a redirect
        browser.jar(stack.public_url).update(flow_jar)
        status, headers, body, _ = await browser.request("GET", callback, headers=NAVIGATION)
    assert status == 400
    assert "expired or was already used" in body
    assert headers["Content-Type"].startswith("text/html")


async def test_callback_error_from_idp_shows_page_with_retry(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack()
    async with ScriptedBrowser() as browser:
        _, headers, _, _ = await browser.request("GET", f"{stack.public_url}/oauth2/start?rd=/v2/x")
        state = parse_qs(urlsplit(headers["Location"]).query)["state"][0]
        status, _, body, _ = await browser.request(
            "GET",
            f"{stack.public_url}/oauth2/callback?error=access_denied&state={state}"
            "&error_description=%3Cscript%3E&session_state=x&iss=y",
        )
    assert status == 403
    assert "access_denied" in body
    assert "<script>" not in body
    assert 'href="/oauth2/start?rd=/v2/x"' in body


async def test_sign_out_revokes_and_clears_cookies(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack()
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "carol", "/")
        assert browser.jar(stack.public_url)
        status, headers, _, cookies = await browser.request(
            "GET", f"{stack.public_url}/oauth2/sign_out?rd=//evil.example"
        )
        assert status == 302
        assert headers["Location"] == "/oauth2/signed_out"  # a refused rd: not "/"
        assert all("Max-Age=0" in c for c in cookies)
        assert not any(k.startswith("sipgate_proxy_") for k in browser.jar(stack.public_url))
        status, _, _, _ = await browser.request(
            "GET", f"{stack.public_url}/v2/account", headers={"Accept": "application/json"}
        )
        assert status == 401
    assert stack.idp.stats()["revocation"] == {"success": 1}


async def test_sign_out_falls_back_to_legacy_logout_without_revoke(
    oauth_stack: StackFactory,
) -> None:
    stack = await oauth_stack()
    stack.idp.set_faults(revoke_enabled=False)
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "dave", "/")
        await browser.request("POST", f"{stack.public_url}/oauth2/sign_out")
    assert stack.idp.stats()["legacy_logout"] == {"success": 1}


async def test_userinfo_without_session_is_401(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack()
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{stack.public_url}/oauth2/userinfo") as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "unauthenticated"


async def test_cross_site_post_with_session_is_refused(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack()
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "erin", "/")
        url = f"{stack.public_url}/v2/sessions/sms"
        status, _, _, _ = await browser.request(
            "POST", url, headers={"Origin": "https://evil.example"}, data=b"{}"
        )
        assert status == 403
        status, _, _, _ = await browser.request(
            "POST", url, headers={"Sec-Fetch-Site": "cross-site"}, data=b"{}"
        )
        assert status == 403
        status, _, _, _ = await browser.request(
            "POST", url, headers={"Origin": stack.public_url}, data=b"{}"
        )
        assert status == 200
    assert stack.verifier.accepted == 1


async def test_tampered_session_cookie_is_no_session(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack()
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "frank", "/")
        jar = browser.jar(stack.public_url)
        value = jar["sipgate_proxy_0"]
        jar["sipgate_proxy_0"] = value[:-5] + ("AAAAA" if not value.endswith("AAAAA") else "BBBBB")
        status, _, body, cookies = await browser.request(
            "GET", f"{stack.public_url}/v2/account", headers={"Accept": "application/json"}
        )
    assert status == 401
    assert json.loads(body)["error"] == "unauthenticated"
    assert any(c.startswith("sipgate_proxy_0=;") and "Max-Age=0" in c for c in cookies)


async def test_client_secret_basic_and_discovery(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack(
        {
            "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_AUTH": "client_secret_basic",
            "SIPGATE_PROXY_AUTH__OAUTH2__DISCOVERY": "true",
        },
        token_endpoint_auth_method="client_secret_basic",
    )
    async with ScriptedBrowser() as browser:
        assert await browser.login(stack.public_url, "ivan", "/x") == "/x"
        status, _, _, _ = await browser.request("GET", f"{stack.public_url}/v2/account")
    assert status == 200
    assert stack.idp.stats()["token_auth"] == {"client_secret_basic": 1}


async def test_cors_preflight_and_headers_only_for_allowed_origins(
    oauth_stack: StackFactory,
) -> None:
    stack = await oauth_stack({"SIPGATE_PROXY_SESSION__ALLOWED_ORIGINS": "[https://app.example]"})
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "judy", "/")
        preflight = {
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        url = f"{stack.public_url}/v2/sessions/sms"
        status, headers, _, _ = await browser.request("OPTIONS", url, headers=preflight)
        assert status == 204
        assert headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert headers["Access-Control-Allow-Credentials"] == "true"
        status, headers, _, _ = await browser.request(
            "OPTIONS", url, headers={**preflight, "Origin": "https://evil.example"}
        )
        assert "Access-Control-Allow-Origin" not in headers
        status, headers, _, _ = await browser.request(
            "POST", url, headers={"Origin": "https://app.example"}, data=b"{}"
        )
        assert status == 200
        assert headers["Access-Control-Allow-Origin"] == "https://app.example"
        status, _, _, _ = await browser.request(
            "POST", url, headers={"Origin": "https://evil.example"}, data=b"{}"
        )
        assert status == 403


async def test_cross_site_link_to_sign_out_asks_first(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack()
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "kim", "/")
        status, _, body, cookies = await browser.request(
            "GET",
            f"{stack.public_url}/oauth2/sign_out?rd=/v2/x",
            headers={**NAVIGATION, "Sec-Fetch-Site": "cross-site"},
        )
        assert status == 200
        assert '<form method="post" action="/oauth2/sign_out?rd=/v2/x">' in body
        assert cookies == []
        assert stack.idp.stats().get("revocation", {}) == {}
        status, headers, _, _ = await browser.request(
            "POST",
            f"{stack.public_url}/oauth2/sign_out?rd=/v2/x",
            headers={"Origin": stack.public_url},
        )
        assert status == 302
        assert headers["Location"] == "/v2/x"


async def test_unicode_cookie_is_no_session_not_500(oauth_stack: StackFactory) -> None:
    stack = await oauth_stack()
    for path in ("/v2/account", "/oauth2/userinfo", "/oauth2/sign_out"):
        async with ScriptedBrowser() as browser:
            browser.jar(stack.public_url)["sipgate_proxy_0"] = "².abc"
            status, _, _, _ = await browser.request("GET", f"{stack.public_url}{path}")
            assert status in (302, 401), path


async def test_first_session_cookie_wins_when_a_duplicate_is_tossed(
    oauth_stack: StackFactory,
) -> None:
    """A sibling subdomain can add a second ``sipgate_proxy_0`` (Domain=parent); browsers
    send the older of two same-path cookies first, so the first one is the proxy's own."""
    stack = await oauth_stack()
    jars = {}
    for user in ("victim", "mallory"):
        async with ScriptedBrowser() as browser:
            await browser.login(stack.public_url, user, "/")
            jars[user] = browser.jar(stack.public_url)
    seen = {}
    for first, last in (("victim", "mallory"), ("mallory", "victim")):
        cookie = "; ".join(f"{k}={v}" for jar in (jars[first], jars[last]) for k, v in jar.items())
        for path in ("/v2/account", "/oauth2/userinfo"):
            async with aiohttp.ClientSession() as client:
                url = f"{stack.public_url}{path}"
                async with client.get(url, headers={"Cookie": cookie}) as resp:
                    body = await resp.json()
            seen[first, path] = body.get("jwt_sub", body.get("sub"))
    assert seen == {
        ("victim", "/v2/account"): "victim",
        ("victim", "/oauth2/userinfo"): "victim",
        ("mallory", "/v2/account"): "mallory",
        ("mallory", "/oauth2/userinfo"): "mallory",
    }

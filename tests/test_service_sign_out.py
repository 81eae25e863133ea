"""Service mode's operator reset: ``/oauth2/sign_out`` is the proxy's own route there (it
was forwarded upstream), asks on a page, and its POST removes the stored identity and
revokes its grant, only for a caller that could use the identity, never for a foreign
page."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from proxy.config.client_credentials import token_sha256
from tests.support.scripted_browser import NAVIGATION, ScriptedBrowser
from tests.support.upstream import VERIFIER
from tests.test_service_mode import OPERATOR, ServiceStack, call_api, service_stack

__all__ = ["service_stack"]  # the fixture, shared with test_service_mode

TYPED = {**NAVIGATION, "Sec-Fetch-Site": "none"}  # the operator types the URL


async def post_sign_out(
    stack: ServiceStack, headers: dict[str, str]
) -> tuple[int, str | None, str]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        url = f"{stack.public_url}/oauth2/sign_out"
        async with client.post(url, headers=headers, allow_redirects=False) as resp:
            return resp.status, resp.headers.get("Location"), await resp.text()


async def test_operator_signs_out_the_identity_then_clients_get_503(
    service_stack: Callable[..., Awaitable[ServiceStack]], tmp_path: Path
) -> None:
    stack = await service_stack()
    async with ScriptedBrowser() as browser:
        assert (await browser.sign_in(stack.public_url, OPERATOR))[0] == 200
        # GET asks (and is the proxy's own page, not the API's): nothing changes yet
        status, headers, body, _ = await browser.request(
            "GET", f"{stack.public_url}/oauth2/sign_out", headers=TYPED
        )
        assert status == 200
        assert headers["Content-Type"].startswith("text/html")
        assert OPERATOR in body
        assert '<form method="post" action="/oauth2/sign_out">' in body
    assert (await call_api(stack))[0] == 200
    accepted = stack.upstream.app[VERIFIER].accepted

    own = {"Origin": stack.public_url, "Sec-Fetch-Site": "same-origin"}
    status, location, _ = await post_sign_out(stack, own)
    assert (status, location) == (303, "/oauth2/signed_out")
    async with ScriptedBrowser() as browser:
        _, status, body = await browser.navigate(f"{stack.public_url}{location}")
    assert status == 200
    assert "<title>Service identity signed out</title>" in body
    assert 'href="/oauth2/start?rd=/">Sign in</a>' in body

    status, answer = await call_api(stack)
    assert (status, answer["error"]) == (503, "service_identity_missing")
    assert not (tmp_path / "identity.sealed").exists()
    assert stack.idp.stats()["revocation"] == {"success": 1}
    assert stack.idp.grants() == []
    _, info = await call_api(stack, "/oauth2/service")
    assert (info["state"], info["subject"]) == ("no_identity", None)
    assert stack.upstream.app[VERIFIER].accepted == accepted  # sign_out never went upstream

    async with ScriptedBrowser() as browser:  # and back in service after a new sign-in
        assert (await browser.sign_in(stack.public_url, OPERATOR))[0] == 200
    assert (await call_api(stack))[0] == 200


async def test_foreign_page_cannot_sign_out_the_identity(
    service_stack: Callable[..., Awaitable[ServiceStack]],
) -> None:
    stack = await service_stack()
    async with ScriptedBrowser() as browser:
        assert (await browser.sign_in(stack.public_url, OPERATOR))[0] == 200
    port = stack.proxy.port
    for headers in (
        {"Origin": "https://evil.example"},  # a form on another site
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "null"},
        {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"},  # rebound
    ):
        status, _, body = await post_sign_out(stack, headers)
        assert status == 403, headers
        assert json.loads(body)["error"] == "cross_site_request"
    assert (await call_api(stack))[0] == 200
    assert stack.idp.stats().get("revocation", {}) == {}


async def test_sign_out_with_clients_needs_a_credential_whose_rules_allow_it(
    service_stack: Callable[..., Awaitable[ServiceStack]],
) -> None:
    reader, ops = ("token-Read01", "reader-secret"), ("token-Opsr01", "ops-secret")
    clients = [
        {"name": "reader", "token_id": reader[0], "token_sha256": token_sha256(reader[1])}
        | {"allow": ["GET /v2/**"]},
        {"name": "ops", "token_id": ops[0], "token_sha256": token_sha256(ops[1])}
        | {"allow": ["POST /oauth2/sign_out"]},
    ]
    stack = await service_stack({"SIPGATE_PROXY_AUTH__CLIENTS": json.dumps(clients)})
    async with ScriptedBrowser() as browser:
        assert (await browser.sign_in(stack.public_url, OPERATOR))[0] == 200

    def basic(pair: tuple[str, str]) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(":".join(pair).encode()).decode()}

    status, _, body = await post_sign_out(stack, {})  # anonymous: deny
    assert (status, json.loads(body)["error"]) == (401, "invalid_client_credentials")
    status, _, body = await post_sign_out(stack, basic(reader))
    assert (status, json.loads(body)["error"]) == (403, "forbidden_by_policy")
    assert stack.idp.grants() != []
    status, location, _ = await post_sign_out(stack, basic(ops))
    assert (status, location) == (303, "/oauth2/signed_out")
    assert stack.idp.grants() == []

"""IdP answers that arrive in several pieces, as they do from login.sipgate.com.

A relay in front of the real test IdP writes every answer in two parts with a pause, so
the token answer's body is not all there when its headers are.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.conftest import StackFactory
from tests.support.idp import RunningIdP
from tests.support.scripted_browser import ScriptedBrowser
from tests.support.split_relay import SplitRelay

JSON = {"Accept": "application/json"}


@pytest.fixture
async def relays() -> AsyncIterator[list[SplitRelay]]:
    started: list[SplitRelay] = []
    yield started
    for relay in started:
        await relay.stop()


async def test_login_and_refreshes_work_when_idp_answers_arrive_in_two_pieces(
    oauth_stack: StackFactory, relays: list[SplitRelay]
) -> None:
    async def through_relay(idp: RunningIdP) -> str:
        relay = await SplitRelay(idp.port).start()
        relays.append(relay)
        return idp.issuer.replace(f":{idp.port}/", f":{relay.port}/")

    stack = await oauth_stack(
        {"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "1"}, issuer_for=through_relay, access_ttl=2
    )
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "alice", "/")
        statuses = []
        for _ in range(5):
            await asyncio.sleep(1.1)  # within the skew: this request refreshes
            status, _, _, _ = await browser.request(
                "GET", f"{stack.public_url}/v2/account", headers=JSON
            )
            statuses.append(status)
        sign_out, _, _, _ = await browser.request("POST", f"{stack.public_url}/oauth2/sign_out")
    assert relays[0].split_writes >= 7  # the code exchange, 5 refreshes, the revocation
    assert statuses == [200] * 5
    assert stack.idp.token_calls("authorization_code", "success") == 1
    assert stack.idp.token_calls("refresh_token", "success") == 5
    assert stack.idp.token_calls("refresh_token", "invalid_grant") == 0
    assert sign_out in (200, 302, 303)
    assert stack.idp.stats().get("revocation", {}) != {}

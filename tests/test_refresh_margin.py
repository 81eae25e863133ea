"""Access tokens that live shorter than ``refresh_skew``: refreshed at half their life,
not on every request (oauth2) or every half second (service mode's background loop).
And requests that share one service-mode refresh store its result once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from proxy import config
from proxy.auth.identity_state import FileState
from proxy.auth.service_identity import IdentityPolicy, ServiceIdentity
from proxy.crypto.keys import decode_key, generate_key
from proxy.crypto.sealing import KeyRing
from proxy.oauth.client import OAuthClient
from proxy.refresh.single_flight import Refresher
from proxy.session.codec import StoredSession
from tests.conftest import CLIENT_ID, CLIENT_SECRET, StackFactory
from tests.support.scripted_browser import ScriptedBrowser
from tests.test_service_mode import OPERATOR, ServiceStack, service_stack

__all__ = ["service_stack"]  # the fixture, shared with the service-mode tests

JSON = {"Accept": "application/json"}


async def test_token_shorter_than_skew_is_refreshed_at_half_its_life_when_oauth2(
    oauth_stack: StackFactory,
) -> None:
    stack = await oauth_stack(access_ttl=4)  # refresh_skew: the default 30 s
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "alice", "/")
        logged_in = time.monotonic()
        for _ in range(8):
            status, _, _, _ = await browser.request(
                "GET", f"{stack.public_url}/v2/account", headers=JSON
            )
            assert status == 200
            await asyncio.sleep(0.1)
        assert time.monotonic() - logged_in < 1.8
        assert stack.idp.token_calls("refresh_token") == 0  # was 8: one per request
        await asyncio.sleep(max(0.0, 2.2 - (time.monotonic() - logged_in)))
        for _ in range(5):
            status, _, _, _ = await browser.request(
                "GET", f"{stack.public_url}/v2/account", headers=JSON
            )
            assert status == 200
    assert stack.idp.token_calls("refresh_token") == 1
    assert stack.idp.token_calls("refresh_token", "success") == 1


async def test_service_background_refresh_runs_at_half_life_when_token_shorter_than_skew(
    service_stack: Callable[..., Awaitable[ServiceStack]],
) -> None:
    stack = await service_stack(access_ttl=4)  # refresh_skew: the default 30 s
    async with ScriptedBrowser() as browser:
        status, _, _ = await browser.sign_in(stack.public_url, OPERATOR)
    assert status == 200
    await asyncio.sleep(7.0)
    # refreshes near 2, 4 and 6 s; the old loop refreshed every 0.5 s (about 14)
    assert 2 <= stack.grants() <= 4
    assert stack.idp.token_calls("refresh_token", "invalid_grant") == 0


class CountingState:
    """The service identity's file state, counting how often it is written."""

    def __init__(self, inner: FileState) -> None:
        self._inner = inner
        self.saves = 0

    async def load(self) -> StoredSession | None:
        return await self._inner.load()

    async def save(self, stored: StoredSession) -> None:
        self.saves += 1
        await self._inner.save(stored)

    async def clear(self) -> None:
        await self._inner.clear()


async def test_requests_sharing_one_service_refresh_write_the_state_once(
    service_stack: Callable[..., Awaitable[ServiceStack]], tmp_path: Path
) -> None:
    key = generate_key()
    state_file = tmp_path / "identity.sealed"
    stack = await service_stack({"SIPGATE_PROXY_SESSION__KEYS": f"[{key}]"}, access_ttl=4)
    async with ScriptedBrowser() as browser:
        status, _, _ = await browser.sign_in(stack.public_url, OPERATOR)
    assert status == 200
    await stack.proxy.close()  # its background loop must not refresh the same grant
    settings = config.load(
        None,
        {
            "SIPGATE_PROXY_AUTH__MODE": "service",
            "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": stack.idp.issuer,
            "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": CLIENT_ID,
            "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": CLIENT_SECRET,
            "SIPGATE_PROXY_AUTH__SERVICE__ALLOWED_SUBJECTS": f"[{OPERATOR}]",
            "SIPGATE_PROXY_AUTH__SERVICE__STATE_FILE": str(state_file),
            "SIPGATE_PROXY_SESSION__KEYS": f"[{key}]",
        },
    )
    assert isinstance(settings.mode, config.ServiceMode)
    client = settings.mode.client
    state = CountingState(FileState(state_file, KeyRing([decode_key(key)])))
    async with aiohttp.ClientSession() as http:
        oauth = OAuthClient(client, "http://localhost/cb", lambda: http)
        identity = ServiceIdentity(
            state,
            Refresher(oauth),
            oauth,
            IdentityPolicy(frozenset([OPERATOR]), refresh_skew=30, login_url="/"),
        )
        await asyncio.sleep(2.2)  # past half the token's life: due
        answers = await asyncio.gather(*(identity.credentials() for _ in range(50)))
    assert len({c.authorization for c in answers}) == 1
    assert stack.grants() == 1
    assert state.saves == 1  # was 50: every request stored the shared answer again

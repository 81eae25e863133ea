"""One contract, both session stores: the cookie store and the Redis store."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from proxy.crypto.sealing import KeyRing
from proxy.oauth.tokens import TokenSet
from proxy.session.store import SessionStore
from tests.support.redis_server import RedisServer
from tests.support.sessions import connect, cookie_store, redis_store
from tests.test_session_cookie import NOW, as_jar, sipgate_tokens

KEY = os.urandom(32)


@pytest.fixture(params=["cookie", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    if request.param == "cookie":
        yield cookie_store(KeyRing([KEY]), "sipgate_proxy", True, 30 * 86400, lambda: NOW)
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    client = connect(server.url)
    yield redis_store(client, KeyRing([KEY]), "sipgate_proxy", True, 30 * 86400, clock=lambda: NOW)
    await client.aclose()


async def test_saved_session_loads_back(store: SessionStore) -> None:
    headers = await store.save(sipgate_tokens(), NOW - 5, {}, new_session=True)
    loaded = await store.load(as_jar(headers))
    assert loaded is not None
    assert loaded.tokens == sipgate_tokens()
    assert loaded.created == NOW - 5


async def test_every_set_cookie_fits_4096_bytes(store: SessionStore) -> None:
    headers = await store.save(sipgate_tokens(), NOW, {}, new_session=True)
    assert headers
    assert all(len(f"Set-Cookie: {h}") <= 4096 for h in headers)
    assert all("HttpOnly" in h and "SameSite=Lax" in h and "Secure" in h for h in headers)


async def test_no_or_foreign_cookies_are_no_session(store: SessionStore) -> None:
    assert await store.load({}) is None
    assert not store.present({"other": "1"})
    assert await store.load({"sipgate_proxy_0": "1.AAAA"}) is None
    assert store.present({"sipgate_proxy_0": "1.AAAA"})


async def test_tampered_cookie_is_no_session(store: SessionStore) -> None:
    jar = as_jar(await store.save(sipgate_tokens(), NOW, {}, new_session=True))
    value = jar["sipgate_proxy_0"]
    tampered = value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB")
    assert await store.load({"sipgate_proxy_0": tampered}) is None


async def test_refreshed_tokens_replace_the_old_ones(store: SessionStore) -> None:
    jar = as_jar(await store.save(sipgate_tokens(), NOW, {}, new_session=True))
    newer = TokenSet("new-access", "new-refresh", NOW + 600, NOW + 86400, "all", "sub")
    jar.update(as_jar(await store.save(newer, NOW, jar)))
    loaded = await store.load(jar)
    assert loaded is not None
    assert loaded.tokens.refresh_token == "new-refresh"


async def test_cleared_session_is_gone(store: SessionStore) -> None:
    jar = as_jar(await store.save(sipgate_tokens(), NOW, {}, new_session=True))
    expired = await store.clear(jar)
    assert all("Max-Age=0" in h for h in expired)
    remaining = {k: v for k, v in jar.items() if k not in {h.split("=")[0] for h in expired}}
    assert await store.load(remaining) is None


async def test_fully_expired_session_is_no_session(store: SessionStore) -> None:
    dead = TokenSet("a", "r", expires_at=NOW - 10, refresh_expires_at=NOW - 1)
    headers = await store.save(dead, NOW - 100, {}, new_session=True)
    assert await store.load(as_jar(headers)) is None

"""What only the Redis store promises: server-side end of sessions, small cookies,
session-id rotation at login, no regression to older tokens, 503 when Redis is away."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from proxy.errors import StoreUnavailable
from proxy.redis_store import RedisSessionStore, connect
from proxy.sealing import KeyRing
from proxy.tokens import TokenSet
from tests.support.redis_server import RedisServer
from tests.test_session_cookie import NOW, as_jar, sipgate_tokens


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisSessionStore]:
    client = connect(redis_server.url, timeout=0.5)
    yield RedisSessionStore(
        client, KeyRing([os.urandom(32)]), "sipgate_proxy", True, 30 * 86400, clock=lambda: NOW
    )
    await client.aclose()


async def test_cookie_is_one_small_id(store: RedisSessionStore) -> None:
    headers = await store.save(sipgate_tokens(), NOW, {}, new_session=True)
    assert len(headers) == 1
    name_value = headers[0].split(";", 1)[0]
    print(f"redis store cookie: {len(name_value)} bytes name=value, {len(headers[0])} Set-Cookie")
    assert len(name_value) < 120


async def test_replayed_cookie_after_sign_out_is_worthless(store: RedisSessionStore) -> None:
    jar = as_jar(await store.save(sipgate_tokens(), NOW, {}, new_session=True))
    stolen = dict(jar)
    await store.clear(jar)
    assert await store.load(stolen) is None


async def test_login_never_continues_a_planted_session_id(store: RedisSessionStore) -> None:
    planted = as_jar(await store.save(sipgate_tokens(), NOW, {}, new_session=True))
    victim = TokenSet("victim-access", "victim-refresh", NOW + 300, NOW + 86400, "all", "victim")
    after_login = as_jar(await store.save(victim, NOW, planted, new_session=True))
    assert after_login["sipgate_proxy_0"] != planted["sipgate_proxy_0"]
    assert await store.load(planted) is None  # the old id is gone, not the victim's now
    loaded = await store.load(after_login)
    assert loaded is not None
    assert loaded.tokens.subject == "victim"


async def test_older_token_set_never_replaces_a_newer_one(store: RedisSessionStore) -> None:
    jar = as_jar(await store.save(sipgate_tokens(), NOW, {}, new_session=True))
    newer = TokenSet("a2", "r2", NOW + 600, NOW + 86400)
    older = TokenSet("a1", "r1", NOW + 300, NOW + 86400)
    await store.save(newer, NOW, jar)
    await store.save(older, NOW, jar)  # a slow replica, late
    loaded = await store.load(jar)
    assert loaded is not None
    assert loaded.tokens.refresh_token == "r2"


async def test_operator_ends_all_sessions_of_a_subject(store: RedisSessionStore) -> None:
    alice = TokenSet("a", "r", NOW + 300, NOW + 86400, subject="alice")
    bob = TokenSet("b", "s", NOW + 300, NOW + 86400, subject="bob")
    jars = [as_jar(await store.save(alice, NOW, {}, new_session=True)) for _ in range(3)]
    bobs = as_jar(await store.save(bob, NOW, {}, new_session=True))
    assert await store.end_subject("alice") == 3
    for jar in jars:
        assert await store.load(jar) is None
    assert await store.load(bobs) is not None


async def test_redis_away_is_store_unavailable_not_no_session(
    store: RedisSessionStore, redis_server: RedisServer
) -> None:
    jar = as_jar(await store.save(sipgate_tokens(), NOW, {}, new_session=True))
    redis_server.stop()
    with pytest.raises(StoreUnavailable):
        await store.load(jar)
    assert not await store.ping()
    redis_server.start()
    assert await store.load(jar) is not None  # the same session, back


async def test_end_sessions_command_ends_them(
    store: RedisSessionStore, redis_server: RedisServer
) -> None:
    from tests.test_cli import run_cli

    alice = TokenSet("a", "r", NOW + 300, NOW + 86400, subject="alice@example.com")
    jar = as_jar(await store.save(alice, NOW, {}, new_session=True))
    env = {
        "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": "x",
        "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": "y",
        "SIPGATE_PROXY_SESSION__STORE": "redis",
        "SIPGATE_PROXY_SESSION__REDIS_URL": redis_server.url,
    }
    result = run_cli("end-sessions", "alice@example.com", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ended 1 session(s)"
    assert await store.load(jar) is None

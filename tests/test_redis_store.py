"""What only the Redis store promises: server-side end of sessions, small cookies,
session-id rotation at login, no regression to older tokens, 503 when Redis is away."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

import pytest

from proxy.crypto.sealing import KeyRing
from proxy.errors import StoreUnavailable
from proxy.oauth.tokens import TokenSet
from proxy.session.redis_backend import RedisBackend
from proxy.session.redis_connection import RedisClient
from proxy.session.store import SessionStore
from tests.support.redis_server import RedisServer
from tests.support.sessions import connect, end_subject, redis_store
from tests.test_session_cookie import NOW, as_jar, sipgate_tokens


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[SessionStore]:
    client = connect(redis_server.url, timeout=0.5)
    yield redis_store(
        client, KeyRing([os.urandom(32)]), "sipgate_proxy", True, 30 * 86400, clock=lambda: NOW
    )
    await client.aclose()


async def test_cookie_is_one_small_id(store: SessionStore) -> None:
    headers = await store.save(sipgate_tokens(), NOW, {}, new_session=True)
    assert len(headers) == 1
    name_value = headers[0].split(";", 1)[0]
    print(f"redis store cookie: {len(name_value)} bytes name=value, {len(headers[0])} Set-Cookie")
    assert len(name_value) < 120


async def test_replayed_cookie_after_sign_out_is_worthless(store: SessionStore) -> None:
    jar = as_jar(await store.save(sipgate_tokens(), NOW, {}, new_session=True))
    stolen = dict(jar)
    await store.clear(jar)
    assert await store.load(stolen) is None


async def test_login_never_continues_a_planted_session_id(store: SessionStore) -> None:
    planted = as_jar(await store.save(sipgate_tokens(), NOW, {}, new_session=True))
    victim = TokenSet("victim-access", "victim-refresh", NOW + 300, NOW + 86400, "all", "victim")
    after_login = as_jar(await store.save(victim, NOW, planted, new_session=True))
    assert after_login["sipgate_proxy_0"] != planted["sipgate_proxy_0"]
    assert await store.load(planted) is None  # the old id is gone, not the victim's now
    loaded = await store.load(after_login)
    assert loaded is not None
    assert loaded.tokens.subject == "victim"


async def test_older_token_set_never_replaces_a_newer_one(store: SessionStore) -> None:
    jar = as_jar(await store.save(sipgate_tokens(), NOW, {}, new_session=True))
    newer = TokenSet("a2", "r2", NOW + 600, NOW + 86400)
    older = TokenSet("a1", "r1", NOW + 300, NOW + 86400)
    await store.save(newer, NOW, jar)
    await store.save(older, NOW, jar)  # a slow replica, late
    loaded = await store.load(jar)
    assert loaded is not None
    assert loaded.tokens.refresh_token == "r2"


async def test_operator_ends_all_sessions_of_a_subject(store: SessionStore) -> None:
    alice = TokenSet("a", "r", NOW + 300, NOW + 86400, subject="alice")
    bob = TokenSet("b", "s", NOW + 300, NOW + 86400, subject="bob")
    jars = [as_jar(await store.save(alice, NOW, {}, new_session=True)) for _ in range(3)]
    bobs = as_jar(await store.save(bob, NOW, {}, new_session=True))
    assert await end_subject(store, "alice") == 3
    for jar in jars:
        assert await store.load(jar) is None
    assert await store.load(bobs) is not None


async def test_redis_away_is_store_unavailable_not_no_session(
    store: SessionStore, redis_server: RedisServer
) -> None:
    jar = as_jar(await store.save(sipgate_tokens(), NOW, {}, new_session=True))
    redis_server.stop()
    with pytest.raises(StoreUnavailable):
        await store.load(jar)
    assert isinstance(store.backend, RedisBackend)
    assert not await store.backend.ping()
    redis_server.start()
    assert await store.load(jar) is not None  # the same session, back


async def test_end_sessions_command_ends_them(
    store: SessionStore, redis_server: RedisServer
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


# --- the per-subject index -------------------------------------------------------------
# Read straight from Redis: the index is "{ns}:subject-sessions:<sha256(sub)>", a sorted set
# of record keys scored with their expiry.

DAY = 86400.0
MAX_LIFETIME = 30 * DAY


def index_key(subject: str) -> str:
    return f"sipgate-proxy:subject-sessions:{hashlib.sha256(subject.encode()).hexdigest()}"


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[RedisClient]:
    client = connect(redis_server.url, timeout=0.5)
    yield client
    await client.aclose()


@pytest.fixture
def clock() -> list[float]:
    return [NOW]


@pytest.fixture
def timed_store(raw: RedisClient, clock: list[float]) -> SessionStore:
    keys = KeyRing([os.urandom(32)])
    return redis_store(raw, keys, "sipgate_proxy", True, MAX_LIFETIME, clock=lambda: clock[0])


def alice(now: float, refresh_for: float = DAY) -> TokenSet:
    return TokenSet("a", "r", now + 300, now + refresh_for, "all", "alice")


async def test_sign_out_removes_the_session_from_its_subject_index(
    timed_store: SessionStore, raw: RedisClient
) -> None:
    kept = as_jar(await timed_store.save(alice(NOW), NOW, {}, new_session=True))
    ended = as_jar(await timed_store.save(alice(NOW), NOW, {}, new_session=True))
    assert await raw.zcard(index_key("alice")) == 2
    await timed_store.clear(ended)
    assert await raw.zcard(index_key("alice")) == 1
    await timed_store.clear(kept)
    assert await raw.exists(index_key("alice")) == 0
    assert await end_subject(timed_store, "alice") == 0


async def test_subject_index_lives_no_longer_than_its_sessions_when_refreshed_daily(
    timed_store: SessionStore, raw: RedisClient, clock: list[float]
) -> None:
    jar = as_jar(await timed_store.save(alice(NOW), NOW, {}, new_session=True))
    index_ttl = await raw.pttl(index_key("alice")) / 1000
    assert 0 < index_ttl <= DAY  # the session's own TTL (its refresh token), not 30 days
    for day in range(1, 30):  # refreshed every day until max_lifetime ends the session
        clock[0] = NOW + day * DAY
        await timed_store.save(alice(clock[0]), NOW, jar)
    session_left = NOW + MAX_LIFETIME - clock[0]
    index_ttl = await raw.pttl(index_key("alice")) / 1000
    assert 0 < index_ttl <= session_left  # not renewed past the login's max_lifetime


async def test_subject_index_drops_sessions_that_expired_when_a_new_one_is_saved(
    timed_store: SessionStore, raw: RedisClient
) -> None:
    await timed_store.save(alice(NOW, refresh_for=1), NOW, {}, new_session=True)
    await asyncio.sleep(1.2)  # that session's record expires in Redis
    await timed_store.save(alice(NOW), NOW, {}, new_session=True)
    assert await raw.zcard(index_key("alice")) == 1
    assert await raw.pttl(index_key("alice")) / 1000 <= DAY  # a short one never shortens it


async def test_sessions_indexed_before_the_index_was_sorted_still_end(
    timed_store: SessionStore, raw: RedisClient
) -> None:
    # 0.1 kept the index as a set at "{ns}:subject:<sha256(sub)>"; its records point there.
    legacy = f"sipgate-proxy:subject:{hashlib.sha256(b'alice').hexdigest()}"
    old = as_jar(await timed_store.save(alice(NOW), NOW, {}, new_session=True))
    signed_out = as_jar(await timed_store.save(alice(NOW), NOW, {}, new_session=True))
    records = [key async for key in raw.scan_iter("sipgate-proxy:session:*")]
    await raw.delete(index_key("alice"))
    for record in records:
        await raw.hset(record, "idx", legacy)
        await raw.sadd(legacy, record)
    await timed_store.clear(signed_out)
    assert await raw.scard(legacy) == 1
    assert await end_subject(timed_store, "alice") == 1
    assert await timed_store.load(old) is None
    assert await raw.exists(legacy) == 0

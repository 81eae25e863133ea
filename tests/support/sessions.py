"""Session stores for the tests, and the cookie store's calls run to their end at once."""

from __future__ import annotations

import time
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from proxy.clock import Clock
from proxy.config import RedisServer, Secret
from proxy.crypto.sealing import KeyRing
from proxy.oauth.tokens import TokenSet
from proxy.session.codec import StoredSession
from proxy.session.cookie_backend import cookie_session_store
from proxy.session.redis_backend import RedisBackend, redis_session_store
from proxy.session.redis_connection import RedisClient, connect_server
from proxy.session.store import SessionStore

T = TypeVar("T")

cookie_store = cookie_session_store


def connect(url: str, timeout: float = 2.0, cluster: bool = False) -> RedisClient:
    """A client as the proxy makes one, for a server (or a cluster node) by URL."""
    return connect_server(RedisServer(Secret(url), cluster), timeout)


def redis_store(
    client: RedisClient,
    keys: KeyRing,
    name: str,
    secure: bool,
    max_lifetime: float,
    clock: Clock = time.time,
) -> SessionStore:
    return redis_session_store(RedisBackend(client, keys, name), name, secure, max_lifetime, clock)


def run_now(coroutine: Coroutine[Any, Any, T]) -> T:
    """The cookie backend does no I/O, so its coroutines finish without suspending: run
    one here, from sync code (hypothesis) or inside a running loop alike."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise AssertionError("a cookie-store call suspended")


def seal(
    store: SessionStore, tokens: TokenSet, created: float, cookies: Mapping[str, str]
) -> list[str]:
    return run_now(store.save(tokens, created, cookies))


def opened(store: SessionStore, cookies: Mapping[str, str]) -> StoredSession | None:
    return run_now(store.load(cookies))


async def end_subject(store: SessionStore, subject: str) -> int:
    assert isinstance(store.backend, RedisBackend)
    return await store.backend.end_subject(subject)

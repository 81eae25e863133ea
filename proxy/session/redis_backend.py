"""The Redis store: the browser holds only a sealed random session id; the token set
lives in Redis, sealed with the same session keys, for as long as its refresh token.

    {ns}:session:<sha256(id)>   hash {data: sealed token set, exp: access expiry,
                                idx: its subject key}, TTL
    {ns}:subject:<sha256(sub)>  set of session keys, so an operator can end them all;
                                pruned on sign-out and of expired records whenever one
                                is saved, and it lives as long as its longest session

A session record is only replaced by a newer one (higher access-token expiry), so a slow
replica can never put a rotated-out refresh token back. Redis errors become
``StoreUnavailable`` (503, the session is kept), never a logout.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable
from typing import TypeVar

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from proxy.clock import Clock
from proxy.crypto import b64
from proxy.crypto.sealing import KeyRing, context
from proxy.errors import StoreUnavailable
from proxy.session import codec as session_codec
from proxy.session.codec import StoredSession
from proxy.session.cookie_chunks import CookieAttributes
from proxy.session.store import SessionCookie, SessionStore

log = logging.getLogger(__name__)

ID_BYTES = 32
NAMESPACE = "sipgate-proxy"
T = TypeVar("T")

# Replace the record only with a newer token set, and keep the subject's index to the
# live records (KEYS: record[, index]; ARGV: data, exp, ttl ms). The index expires with
# its longest-lived record: extended, never shortened, never past that.
_SAVE_IF_NEWER = """
local current = redis.call('HGET', KEYS[1], 'exp')
if current and tonumber(current) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'exp', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local index = KEYS[2]
if not index then return 1 end
redis.call('HSET', KEYS[1], 'idx', index)
redis.call('SADD', index, KEYS[1])
for _, member in ipairs(redis.call('SMEMBERS', index)) do
  if redis.call('EXISTS', member) == 0 then redis.call('SREM', index, member) end
end
if redis.call('PTTL', index) < tonumber(ARGV[3]) then redis.call('PEXPIRE', index, ARGV[3]) end
return 1
"""

# Delete a record and take it out of its subject's index (KEYS: record).
_DELETE = """
local index = redis.call('HGET', KEYS[1], 'idx')
local deleted = redis.call('DEL', KEYS[1])
if index then redis.call('SREM', index, KEYS[1]) end
return deleted
"""


def connect(url: str, timeout: float = 2.0) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        # A pooled connection that Redis closed (restart, failover) is retried on a new
        # one instead of failing the request.
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), retries=2),
        retry_on_error=[RedisConnectionError],
    )


async def call(awaitable: Awaitable[T]) -> T:
    """Await a Redis command; any Redis failure is the store being unavailable."""
    try:
        return await awaitable
    except (RedisError, OSError) as err:
        log.warning("session store unavailable: %s", type(err).__name__)
        raise StoreUnavailable() from None


class RedisBackend:
    """Records in Redis under hashed keys; the cookie value is a sealed random id."""

    def __init__(
        self, client: redis.Redis, keys: KeyRing, cookie_name: str, namespace: str = NAMESPACE
    ) -> None:
        self._redis = client
        self._keys = keys
        self._namespace = namespace
        self._id_context = context("session-id", cookie_name)
        self._save_if_newer = client.register_script(_SAVE_IF_NEWER)
        self._delete = client.register_script(_DELETE)

    async def read(self, value: str) -> StoredSession | None:
        session_id = self._session_id(value)
        if session_id is None:
            return None
        key = self._record_key(session_id)
        sealed = await call(self._redis.hget(key, "data"))
        if not isinstance(sealed, bytes):
            return None  # ended, expired or signed out
        return session_codec.open_sealed(self._keys, sealed, context("redis-session", key))

    async def write(self, stored: StoredSession, previous: str | None, ttl: float) -> str:
        # A login (no previous) always gets a fresh id: an id planted beforehand must not
        # become a session of the user who logs in (session fixation).
        session_id = self._session_id(previous) if previous is not None else None
        session_id = session_id or secrets.token_bytes(ID_BYTES)
        key, tokens = self._record_key(session_id), stored.tokens
        record = session_codec.seal(self._keys, stored, context("redis-session", key))
        keys = [key, self._subject_key(tokens.subject)] if tokens.subject else [key]
        await call(
            self._save_if_newer(keys=keys, args=[record, tokens.expires_at, int(ttl * 1000)])
        )
        return b64.encode(self._keys.seal(session_id, self._id_context))

    async def delete(self, value: str) -> None:
        session_id = self._session_id(value)
        if session_id is not None:
            await call(self._delete(keys=[self._record_key(session_id)]))

    async def end_subject(self, subject: str) -> int:
        """Delete every session of one user (an operator's action); how many there were."""
        index = self._subject_key(subject)
        members = await call(self._redis.smembers(index))
        deleted = 0
        if members:
            deleted = int(await call(self._redis.delete(*members)))
        await call(self._redis.delete(index))
        return deleted

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    def _session_id(self, value: str) -> bytes | None:
        if len(value) > 256:
            return None
        sealed = b64.decode(value)
        session_id = self._keys.open(sealed, self._id_context) if sealed else None
        return session_id if session_id is not None and len(session_id) == ID_BYTES else None

    def _record_key(self, session_id: bytes) -> str:
        # Hashed: a Redis dump holds no value a browser could present.
        return f"{self._namespace}:session:{hashlib.sha256(session_id).hexdigest()}"

    def _subject_key(self, subject: str) -> str:
        digest = hashlib.sha256(subject.encode()).hexdigest()
        return f"{self._namespace}:subject:{digest}"


def redis_session_store(
    backend: RedisBackend,
    cookie_name: str,
    secure: bool,
    max_lifetime: float,
    clock: Clock = time.time,
) -> SessionStore:
    cookie = SessionCookie(cookie_name, CookieAttributes(secure=secure), max_lifetime)
    return SessionStore(backend, cookie, clock)

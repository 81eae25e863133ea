"""The Redis store: the browser holds only a sealed random session id; the token set
lives in Redis, sealed with the same session keys, for as long as its refresh token.

    {ns}:session:<sha256(id)>            hash {data: sealed token set, exp: access expiry,
                                         idx: its subject's index}, TTL
    {ns}:subject-sessions:<sha256(sub)>  sorted set: the subject's session keys, each
                                         scored with the time its record expires, so
                                         an operator can end them all; it lives as long
                                         as its longest session

A session record is only replaced by a newer one (higher access-token expiry), so a slow
replica can never put a rotated-out refresh token back. Each script touches one key, so
all of this works on a Redis Cluster, where a record and its index sit in different hash
slots; the index needs no atomicity with the record (a stale entry points at nothing).
Redis errors become ``StoreUnavailable`` (503, the session is kept), never a logout.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time

from redis.exceptions import RedisError

from proxy.clock import Clock
from proxy.crypto import b64
from proxy.crypto.sealing import KeyRing, context
from proxy.session import codec as session_codec
from proxy.session.codec import StoredSession
from proxy.session.cookie_chunks import CookieAttributes
from proxy.session.redis_connection import RedisClient, call
from proxy.session.store import SessionCookie, SessionStore

log = logging.getLogger(__name__)

ID_BYTES = 32
NAMESPACE = "sipgate-proxy"

# Replace the record only with a newer token set (KEYS: record; ARGV: data, exp, ttl ms,
# its subject's index or "").
_SAVE_IF_NEWER = """
local current = redis.call('HGET', KEYS[1], 'exp')
if current and tonumber(current) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'exp', ARGV[2])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'idx', ARGV[4]) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# Note a record in its subject's index, scored with its expiry by Redis's own clock, drop
# the expired ones, and let the index expire with its longest-lived record: extended,
# never shortened (KEYS: index; ARGV: record key, ttl ms).
_INDEX = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

# Delete a record; returns the index it was noted in (KEYS: record).
_DELETE = """
local index = redis.call('HGET', KEYS[1], 'idx')
redis.call('DEL', KEYS[1])
return index
"""


class RedisBackend:
    """Records in Redis under hashed keys; the cookie value is a sealed random id."""

    def __init__(
        self, client: RedisClient, keys: KeyRing, cookie_name: str, namespace: str = NAMESPACE
    ) -> None:
        self._redis = client
        self._keys = keys
        self._namespace = namespace
        self._id_context = context("session-id", cookie_name)
        self._save_if_newer = client.register_script(_SAVE_IF_NEWER)
        self._index = client.register_script(_INDEX)
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
        index = self._subject_key(tokens.subject) if tokens.subject else ""
        ttl_ms = int(ttl * 1000)
        saved = await call(
            self._save_if_newer(keys=[key], args=[record, tokens.expires_at, ttl_ms, index])
        )
        if saved and index:
            await call(self._index(keys=[index], args=[key, ttl_ms]))
        return b64.encode(self._keys.seal(session_id, self._id_context))

    async def delete(self, value: str) -> None:
        session_id = self._session_id(value)
        if session_id is None:
            return
        key = self._record_key(session_id)
        index = await call(self._delete(keys=[key]))
        if isinstance(index, bytes) and index.decode().startswith(self._index_prefix):
            await call(self._redis.zrem(index, key))
        elif isinstance(index, bytes):  # a set, from before the index was sorted (0.1)
            await call(self._redis.srem(index, key))

    async def end_subject(self, subject: str) -> int:
        """Delete every session of one user (an operator's action); how many there were."""
        index, legacy = self._subject_key(subject), self._legacy_subject_key(subject)
        ranked = await call(self._redis.zrange(index, 0, -1))
        members: set[bytes | str] = {member for member in ranked if isinstance(member, bytes)}
        if await call(self._redis.type(legacy)) == b"set":
            members |= await call(self._redis.smembers(legacy))
        # In a cluster, redis-py splits the DEL by hash slot.
        deleted = int(await call(self._redis.delete(*members))) if members else 0
        await call(self._redis.delete(index, legacy))
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

    @property
    def _index_prefix(self) -> str:
        return f"{self._namespace}:subject-sessions:"

    def _subject_key(self, subject: str) -> str:
        return self._index_prefix + hashlib.sha256(subject.encode()).hexdigest()

    def _legacy_subject_key(self, subject: str) -> str:
        return f"{self._namespace}:subject:{hashlib.sha256(subject.encode()).hexdigest()}"


def redis_session_store(
    backend: RedisBackend,
    cookie_name: str,
    secure: bool,
    max_lifetime: float,
    clock: Clock = time.time,
) -> SessionStore:
    cookie = SessionCookie(cookie_name, CookieAttributes(secure=secure), max_lifetime)
    return SessionStore(backend, cookie, clock)

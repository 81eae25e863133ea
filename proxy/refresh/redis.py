"""Single-flight refresh across replicas, through Redis.

    {ns}:refresh:lock:<k>    owner token, PX lock_ttl, renewed while the refresh runs
    {ns}:refresh:result:<k>  the new token set (sealed), PX grace: the shared grace cache
    {ns}:refresh:dead:<k>    the IdP said this refresh token is dead, PX grace

``k`` is the digest of the refresh token. The replica that takes the lock calls the IdP;
it renews the lock every third of its TTL, so a slow IdP never lets a second replica in
(oauth2-proxy's lock expires after 2 s, unrenewed). Only the owner releases it
(compare-and-delete). Replicas that find the lock taken wait for the result key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass

from proxy.crypto.sealing import KeyRing, context
from proxy.errors import StoreUnavailable
from proxy.oauth.tokens import TokenSet
from proxy.refresh.single_flight import Exchange, Outcome, RefreshFailed
from proxy.session import codec as session_codec
from proxy.session.codec import StoredSession
from proxy.session.redis_connection import RedisClient, call

log = logging.getLogger(__name__)

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class RedisCoordinationPolicy:
    lock_ttl: float = 5.0  # seconds; renewed every third of it while the refresh runs
    grace: float = 60.0  # seconds a result or a refusal is shared
    wait_timeout: float = 15.0  # seconds a replica waits for another one's refresh
    namespace: str = "sipgate-proxy"  # key prefix


class RedisRefreshCoordination:
    def __init__(
        self,
        client: RedisClient,
        keys: KeyRing,
        policy: RedisCoordinationPolicy = RedisCoordinationPolicy(),
    ) -> None:
        self._redis = client
        self._keys = keys
        self._lock_ttl_ms = int(policy.lock_ttl * 1000)
        self._grace_ms = int(policy.grace * 1000)
        self._wait_timeout = policy.wait_timeout
        self._prefix = f"{policy.namespace}:refresh"
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    async def coordinate(
        self, key: bytes, exchange: Exchange, tokens: TokenSet
    ) -> tuple[TokenSet, Outcome]:
        try:
            return await self._coordinate(key.hex(), exchange, tokens)
        except StoreUnavailable:
            raise RefreshFailed(Outcome.TRANSIENT, "session store unavailable") from None

    async def _coordinate(
        self, k: str, exchange: Exchange, tokens: TokenSet
    ) -> tuple[TokenSet, Outcome]:
        known = await self._known(k)
        if known is not None:
            return known, Outcome.GRACE
        owner = secrets.token_hex(16)
        lock = f"{self._prefix}:lock:{k}"
        if not await call(self._redis.set(lock, owner, nx=True, px=self._lock_ttl_ms)):
            return await self._wait_for_other(k, lock), Outcome.SHARED
        renewal = asyncio.create_task(self._keep_lock(lock, owner))
        try:
            return await self._locked(k, exchange, tokens)
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            with contextlib.suppress(StoreUnavailable):
                await call(self._release(keys=[lock], args=[owner]))

    async def _locked(
        self, k: str, exchange: Exchange, tokens: TokenSet
    ) -> tuple[TokenSet, Outcome]:
        known = await self._known(k)  # finished just before we took the lock
        if known is not None:
            return known, Outcome.GRACE
        try:
            fresh = await exchange(tokens)
        except RefreshFailed as failed:
            if failed.fatal:
                await call(self._redis.set(self._dead_key(k), b"1", px=self._grace_ms))
            raise
        await call(self._redis.set(self._result_key(k), self._seal(k, fresh), px=self._grace_ms))
        return fresh, Outcome.OK

    async def _known(self, k: str) -> TokenSet | None:
        """The result of an earlier refresh of this token, or FATAL if it is dead."""
        # Two GETs in one round trip (an MGET would fail on a cluster: two hash slots).
        pipeline = self._redis.pipeline(transaction=False)
        pipeline.get(self._result_key(k))
        pipeline.get(self._dead_key(k))
        result, dead = await call(pipeline.execute())
        if dead is not None:
            raise RefreshFailed(Outcome.FATAL, "refresh token already refused by the IdP")
        return self._open(k, result) if isinstance(result, bytes) else None

    async def _wait_for_other(self, k: str, lock: str) -> TokenSet:
        deadline = time.monotonic() + self._wait_timeout
        delay = 0.02
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.2)
            known = await self._known(k)
            if known is not None:
                return known
            if not await call(self._redis.exists(lock)):
                # The holder finished without a result: its refresh failed transiently.
                known = await self._known(k)
                if known is not None:
                    return known
                raise RefreshFailed(Outcome.TRANSIENT, "refresh by another replica failed")
        raise RefreshFailed(Outcome.TRANSIENT, "another replica's refresh took too long")

    async def _keep_lock(self, lock: str, owner: str) -> None:
        while True:
            await asyncio.sleep(self._lock_ttl_ms / 3000)
            try:
                await call(self._renew(keys=[lock], args=[owner, self._lock_ttl_ms]))
            except StoreUnavailable:
                log.warning("could not renew the refresh lock")

    def _result_key(self, k: str) -> str:
        return f"{self._prefix}:result:{k}"

    def _dead_key(self, k: str) -> str:
        return f"{self._prefix}:dead:{k}"

    def _seal(self, k: str, tokens: TokenSet) -> bytes:
        stored = StoredSession(tokens, 0.0, time.time())
        return session_codec.seal(self._keys, stored, context("refresh-result", k))

    def _open(self, k: str, sealed: bytes) -> TokenSet | None:
        stored = session_codec.open_sealed(self._keys, sealed, context("refresh-result", k))
        return stored.tokens if stored else None

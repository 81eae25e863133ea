"""The replay memory in Redis, shared by every replica: one key per event, expiring by
itself. SET NX claims the event with a pending mark that names its claim (a random
token); the app's answer replaces the mark for the replay window. Keeping and releasing
compare the mark first (one Lua script each, one key: fine on a cluster), so a replica
whose mark expired meanwhile never deletes or overwrites another replica's claim."""

from __future__ import annotations

import asyncio
import secrets
import time

import msgspec

from proxy.errors import WebhookInFlight
from proxy.session.redis_connection import RedisClient, call
from proxy.webhooks.replay import Answer

PREFIX = "sipgate-proxy:webhook:"
PENDING = b"pending:"  # + the claim's token
POLL = 0.05  # seconds between looks at another replica's pending delivery

# The answer, unless another claim holds the key now (ours, or none left: kept either way).
_KEEP = """
local held = redis.call('GET', KEYS[1])
if held == false or held == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_decode = msgspec.msgpack.Decoder(Answer).decode
_encode = msgspec.msgpack.Encoder().encode


class RedisMemory:
    def __init__(self, client: RedisClient, window: float, wait: float) -> None:
        self._client, self._window_ms, self._wait = client, int(window * 1000), wait
        self._keep = client.register_script(_KEEP)
        self._release = client.register_script(_RELEASE)
        self._claims: dict[bytes, bytes] = {}  # digest -> this process's pending mark

    async def claim(self, digest: bytes) -> Answer | None:
        key = PREFIX + digest.hex()
        mark = PENDING + secrets.token_hex(16).encode()
        deadline = time.monotonic() + self._wait
        # Pending lives as long as a delivery may take: a replica that died meanwhile
        # blocks the event no longer than that.
        pending_ms = int(self._wait * 1000) + 1000
        while True:
            if await call(self._client.set(key, mark, nx=True, px=pending_ms)):
                self._claims[digest] = mark
                return None
            held = await call(self._client.get(key))
            if isinstance(held, bytes) and not held.startswith(PENDING):
                return _decode(held)
            if time.monotonic() >= deadline:
                raise WebhookInFlight()
            if held is not None:
                await asyncio.sleep(POLL)

    async def keep(self, digest: bytes, answer: Answer) -> None:
        mark = self._claims.pop(digest, b"")
        key = PREFIX + digest.hex()
        await call(self._keep(keys=[key], args=[mark, _encode(answer), self._window_ms]))

    async def release(self, digest: bytes) -> None:
        mark = self._claims.pop(digest, b"")
        await call(self._release(keys=[PREFIX + digest.hex()], args=[mark]))

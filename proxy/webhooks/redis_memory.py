"""The replay memory in Redis, shared by every replica: one key per event, expiring by
itself. SET NX claims the event (a short-lived pending mark); the app's answer replaces
the mark for the replay window."""

from __future__ import annotations

import asyncio
import time

import msgspec

from proxy.errors import WebhookInFlight
from proxy.session.redis_connection import RedisClient, call
from proxy.webhooks.replay import Answer

PREFIX = "sipgate-proxy:webhook:"
PENDING = b"pending"
POLL = 0.05  # seconds between looks at another replica's pending delivery

_decode = msgspec.msgpack.Decoder(Answer).decode
_encode = msgspec.msgpack.Encoder().encode


class RedisMemory:
    def __init__(self, client: RedisClient, window: float, wait: float) -> None:
        self._client, self._window_ms, self._wait = client, int(window * 1000), wait

    async def claim(self, digest: bytes) -> Answer | None:
        key = PREFIX + digest.hex()
        deadline = time.monotonic() + self._wait
        # Pending lives as long as a delivery may take: a replica that died meanwhile
        # blocks the event no longer than that.
        pending_ms = int(self._wait * 1000) + 1000
        while True:
            if await call(self._client.set(key, PENDING, nx=True, px=pending_ms)):
                return None
            held = await call(self._client.get(key))
            if isinstance(held, bytes) and held != PENDING:
                return _decode(held)
            if time.monotonic() >= deadline:
                raise WebhookInFlight()
            if held is not None:
                await asyncio.sleep(POLL)

    async def keep(self, digest: bytes, answer: Answer) -> None:
        await call(self._client.set(PREFIX + digest.hex(), _encode(answer), px=self._window_ms))

    async def release(self, digest: bytes) -> None:
        await call(self._client.delete(PREFIX + digest.hex()))

"""What the app answered to an event, remembered for ``webhooks.replay_window`` seconds
under the SHA-256 of the body: the same body again gets that answer without reaching the
app. This process's memory, bounded (oldest dropped first); ``redis_memory`` shares one
between replicas.

A claim comes first: of two deliveries of one body at once, one reaches the app and the
other waits for its answer."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import msgspec

from proxy.errors import WebhookInFlight

CAPACITY = 10_000  # events remembered at most; ~1 KB each with a typical XML answer


class Answer(msgspec.Struct, frozen=True, array_like=True):
    status: int
    content_type: str | None
    body: bytes


class Memory(Protocol):
    async def claim(self, digest: bytes) -> Answer | None:
        """The remembered answer, or None: this caller delivers (then keep or release)."""

    async def keep(self, digest: bytes, answer: Answer) -> None: ...

    async def release(self, digest: bytes) -> None:
        """The delivery failed: the next delivery of the body may reach the app."""


Held = Answer | asyncio.Future[Answer | None]


class LocalMemory:
    def __init__(
        self, window: float, wait: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window, self._wait, self._clock = window, wait, clock
        self._entries: OrderedDict[bytes, tuple[float, Held]] = OrderedDict()

    async def claim(self, digest: bytes) -> Answer | None:
        self._forget_expired()
        entry = self._entries.get(digest)
        if entry is None:
            self._hold(digest, asyncio.get_running_loop().create_future())
            return None
        held = entry[1]
        if isinstance(held, Answer):
            return held
        try:
            answer = await asyncio.wait_for(asyncio.shield(held), self._wait)
        except TimeoutError:
            answer = None
        if answer is None:  # still delivering, or that delivery failed: sipgate retries
            raise WebhookInFlight()
        return answer

    async def keep(self, digest: bytes, answer: Answer) -> None:
        self._settle(digest, answer)
        self._hold(digest, answer)

    async def release(self, digest: bytes) -> None:
        self._settle(digest, None)
        self._entries.pop(digest, None)

    def _hold(self, digest: bytes, held: Held) -> None:
        self._entries[digest] = (self._clock() + self._window, held)
        self._entries.move_to_end(digest)
        while len(self._entries) > CAPACITY:
            self._entries.popitem(last=False)

    def _settle(self, digest: bytes, answer: Answer | None) -> None:
        entry = self._entries.get(digest)
        if entry is not None and isinstance(entry[1], asyncio.Future) and not entry[1].done():
            entry[1].set_result(answer)

    def _forget_expired(self) -> None:
        now = self._clock()
        while self._entries:
            digest, (expires, _) = next(iter(self._entries.items()))
            if expires > now:
                return
            del self._entries[digest]

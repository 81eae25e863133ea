"""A request body on its way upstream, cut off at the configured size."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from proxy.errors import BodyTooLarge


class CountedBody:
    """The request body as chunks, refusing to pass more than ``limit`` bytes."""

    def __init__(self, stream: aiohttp.StreamReader, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self.too_large = False

    async def chunks(self) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in self._stream.iter_any():
            sent += len(chunk)
            if sent > self._limit:
                self.too_large = True
                raise BodyTooLarge()
            yield chunk

"""The app (``webhooks.forward_to``): a target of its own, with its own client session
and timeout, never the upstream API's."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp import web
from yarl import URL

from proxy.errors import AppTimeout, AppUnreachable
from proxy.webhooks.replay import Answer

MAX_ANSWER = 1024 * 1024  # an XML answer is a few hundred bytes


class AppClient:
    def __init__(self, base_url: str, timeout: float) -> None:
        self._base, self._timeout = base_url, timeout
        self._session: aiohttp.ClientSession | None = None

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
        )
        async with session:
            self._session = session
            yield

    async def deliver(self, target: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        """POST ``body`` byte for byte to the app's URL + ``target`` (the rest of the path
        and the query, as received); the app's status, Content-Type and body."""
        assert self._session is not None, "used before start-up"
        url = URL(self._base + target, encoded=True)  # neither re-quoted nor normalised
        try:
            async with self._session.post(
                url, data=body, headers=dict(headers), allow_redirects=False
            ) as response:
                return Answer(
                    response.status, response.headers.get("Content-Type"), await _read(response)
                )
        except TimeoutError:  # before ClientError: ServerTimeoutError is both
            raise AppTimeout() from None
        except (aiohttp.ClientError, OSError):
            raise AppUnreachable() from None


async def _read(response: aiohttp.ClientResponse) -> bytes:
    body = bytearray()
    async for chunk in response.content.iter_chunked(65536):
        body += chunk
        if len(body) > MAX_ANSWER:
            raise AppUnreachable("the app's answer exceeds 1 MiB")
    return bytes(body)

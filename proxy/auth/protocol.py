"""What every authentication mode produces for one request, and the shape of a mode."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web


@dataclass(frozen=True)
class Credentials:
    authorization: str
    # Complete Set-Cookie values for the client, written before the response starts
    # (a streamed response cannot add headers once it has begun).
    set_cookies: tuple[str, ...] = field(default=())
    # Called once when the upstream answers 401 to a bodiless request: fresh credentials
    # for one retry, or None to pass the 401 on.
    reauthorize: Callable[[], Awaitable[Credentials | None]] | None = None

    def __repr__(self) -> str:
        return f"Credentials(authorization=<redacted>, set_cookies={len(self.set_cookies)})"


class Authenticator(Protocol):
    async def authenticate(self, request: web.Request) -> Credentials:
        """Credentials for this request, or raise a ProxyError (401, 403, …)."""
        ...

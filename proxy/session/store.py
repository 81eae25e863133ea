"""The session store: the rules every session keeps, whichever backend holds it.

- A session lives at most ``session.max_lifetime`` from its login (``created``), however
  often it is refreshed, and no longer than its refresh token.
- A seal from the future (beyond clock drift) or older than the lifetime is no session.
- A token set that can no longer be used is no session.
- Every write is Set-Cookie lines (chunked to fit 4 KB each, stale chunks expired) with
  the cookie attributes of the configuration, and a Max-Age that ends with the session.

The backend (``SessionBackend``) only keeps the bytes: the cookie backend puts the sealed
token set into the cookie value itself, the Redis backend a sealed random id whose record
lives in Redis. Any method may raise ``errors.StoreUnavailable`` (503, session kept).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from proxy.clock import Clock
from proxy.oauth.tokens import TokenSet
from proxy.session.codec import StoredSession
from proxy.session.cookie_chunks import (
    CookieAttributes,
    expire_chunks,
    has_chunks,
    read_chunks,
    write_chunks,
)

CLOCK_SKEW = 60.0  # seconds a seal time may lie in the future (clock drift)


class SessionBackend(Protocol):
    async def read(self, value: str) -> StoredSession | None:
        """The session a cookie value stands for, authenticated; None if there is none."""
        ...

    async def write(self, stored: StoredSession, previous: str | None, ttl: float) -> str:
        """Keep ``stored`` for ``ttl`` seconds; the cookie value that stands for it.
        ``previous``: the request's value, which a refresh continues (None: a login)."""
        ...

    async def delete(self, value: str) -> None: ...


class Sessions(Protocol):
    """What the layers above use of a store: the ``SessionStore``, or a traced one."""

    cookie_name: str

    def present(self, cookies: Mapping[str, str]) -> bool: ...

    async def load(self, cookies: Mapping[str, str]) -> StoredSession | None: ...

    async def save(
        self,
        tokens: TokenSet,
        created: float,
        cookies: Mapping[str, str],
        new_session: bool = False,
    ) -> list[str]: ...

    async def clear(self, cookies: Mapping[str, str]) -> list[str]: ...


@dataclass(frozen=True)
class SessionCookie:
    name: str  # session.cookie_name: the chunks are <name>_0 … <name>_n
    attributes: CookieAttributes
    max_lifetime: float  # session.max_lifetime, seconds from the login


class SessionStore:
    def __init__(
        self, backend: SessionBackend, cookie: SessionCookie, clock: Clock = time.time
    ) -> None:
        self.backend = backend
        self.cookie_name = cookie.name
        self._cookie = cookie
        self._clock = clock

    def present(self, cookies: Mapping[str, str]) -> bool:
        """Whether the request carries this store's cookies at all (valid or not)."""
        return has_chunks(self.cookie_name, cookies)

    async def load(self, cookies: Mapping[str, str]) -> StoredSession | None:
        value = read_chunks(self.cookie_name, cookies)
        stored = await self.backend.read(value) if value is not None else None
        return stored if stored is not None and self._alive(stored) else None

    async def save(
        self,
        tokens: TokenSet,
        created: float,
        cookies: Mapping[str, str],
        new_session: bool = False,
    ) -> list[str]:
        """Store the token set; the Set-Cookie values the answer must carry.
        ``new_session``: a login, which must never continue a session it was handed."""
        now = self._clock()
        ttl = self._seconds_left(tokens, created, now)
        previous = None if new_session else read_chunks(self.cookie_name, cookies)
        value = await self.backend.write(StoredSession(tokens, created, now), previous, ttl)
        if new_session and (planted := read_chunks(self.cookie_name, cookies)) is not None:
            await self.backend.delete(planted)
        return write_chunks(self.cookie_name, value, self._cookie.attributes, int(ttl), cookies)

    async def clear(self, cookies: Mapping[str, str]) -> list[str]:
        """Forget the session (server side too); Set-Cookie values that expire it."""
        value = read_chunks(self.cookie_name, cookies)
        if value is not None:
            await self.backend.delete(value)
        return expire_chunks(self.cookie_name, self._cookie.attributes, cookies)

    def _alive(self, stored: StoredSession) -> bool:
        now, lifetime = self._clock(), self._cookie.max_lifetime
        if stored.sealed_at > now + CLOCK_SKEW or now - stored.sealed_at > lifetime:
            return False
        if now - stored.created > lifetime:
            return False  # max_lifetime counts from the login, however often refreshed
        return not stored.tokens.unusable(now)

    def _seconds_left(self, tokens: TokenSet, created: float, now: float) -> float:
        left = min(tokens.refresh_expires_at - now, created + self._cookie.max_lifetime - now)
        return max(1.0, left)

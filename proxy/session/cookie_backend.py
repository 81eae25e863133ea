"""The cookie store: the whole token set, sealed and chunked, kept by the browser.

Nothing is stored server-side, so any replica can serve any request. Any cookie that
fails to decode (tampered, truncated, missing chunk, unknown key, too old, from the
future, absurd size) is "no session".
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping

from proxy.clock import Clock
from proxy.crypto import b64
from proxy.crypto.sealing import KeyRing, context
from proxy.oauth.tokens import TokenSet
from proxy.session import codec as session_codec
from proxy.session.codec import StoredSession
from proxy.session.cookie_chunks import (
    MAX_CHUNKS,
    CookieAttributes,
    expire_chunks,
    has_chunks,
    read_chunks,
    write_chunks,
)

CLOCK_SKEW = 60.0  # seconds a cookie's seal time may lie in the future (clock drift)
MAX_COOKIE_TEXT = MAX_CHUNKS * 4096


class CookieSessionStore:
    """The whole token set, sealed, in the browser's cookies."""

    def __init__(
        self,
        keys: KeyRing,
        cookie_name: str,
        secure: bool,
        max_lifetime: float,
        clock: Clock = time.time,
    ) -> None:
        self.cookie_name = cookie_name
        self._keys = keys
        self._context = context("session", cookie_name)
        self._attributes = CookieAttributes(secure=secure)
        self._max_lifetime = max_lifetime
        self._clock = clock
        self._opened = _OpenedCookies()

    def open(self, cookies: Mapping[str, str]) -> StoredSession | None:
        text = read_chunks(self.cookie_name, cookies)
        if text is None or len(text) > MAX_COOKIE_TEXT:
            return None
        stored = self._opened.get(text)
        if stored is None:
            sealed = b64.decode(text)
            stored = (
                session_codec.open_sealed(self._keys, sealed, self._context) if sealed else None
            )
            if stored is None:
                return None
            self._opened.put(text, stored)
        now = self._clock()
        if stored.sealed_at > now + CLOCK_SKEW or now - stored.sealed_at > self._max_lifetime:
            return None
        if now - stored.created > self._max_lifetime:
            return None  # max_lifetime counts from the login, however often it was refreshed
        return None if stored.tokens.unusable(now) else stored

    def present(self, cookies: Mapping[str, str]) -> bool:
        return has_chunks(self.cookie_name, cookies)

    def seal(self, tokens: TokenSet, created: float, cookies: Mapping[str, str]) -> list[str]:
        now = self._clock()
        value = b64.encode(
            session_codec.seal(self._keys, StoredSession(tokens, created, now), self._context)
        )
        left = min(tokens.refresh_expires_at - now, created + self._max_lifetime - now)
        max_age = int(max(0.0, min(left, self._max_lifetime)))
        return write_chunks(self.cookie_name, value, self._attributes, max_age, cookies)

    def expire(self, cookies: Mapping[str, str]) -> list[str]:
        return expire_chunks(self.cookie_name, self._attributes, cookies)

    # --- SessionStore ---------------------------------------------------------------------

    async def load(self, cookies: Mapping[str, str]) -> StoredSession | None:
        return self.open(cookies)

    async def save(
        self,
        tokens: TokenSet,
        created: float,
        cookies: Mapping[str, str],
        new_session: bool = False,
    ) -> list[str]:
        return self.seal(tokens, created, cookies)  # a new seal replaces all there was

    async def clear(self, cookies: Mapping[str, str]) -> list[str]:
        return self.expire(cookies)


class _OpenedCookies:
    """Sessions already opened, by their cookie text: a browser sends the same cookie for
    minutes, and AES-GCM + inflate + parse need not run on every request. Only
    authenticated results are kept, and the time checks still run on every use."""

    def __init__(self, limit: int = 4096) -> None:
        self._entries: OrderedDict[str, StoredSession] = OrderedDict()
        self._limit = limit

    def get(self, key: str) -> StoredSession | None:
        stored = self._entries.get(key)
        if stored is not None:
            self._entries.move_to_end(key)
        return stored

    def put(self, key: str, stored: StoredSession) -> None:
        self._entries[key] = stored
        if len(self._entries) > self._limit:
            self._entries.popitem(last=False)

"""The cookie backend: the whole token set, sealed, is the cookie value the browser keeps.

Nothing is stored server-side, so any replica can serve any request. Any value that fails
to open (tampered, truncated, missing chunk, unknown key, absurd size) is "no session".
"""

from __future__ import annotations

import time
from collections import OrderedDict

from proxy.clock import Clock
from proxy.crypto import b64
from proxy.crypto.sealing import KeyRing, context
from proxy.session import codec as session_codec
from proxy.session.codec import StoredSession
from proxy.session.cookie_chunks import MAX_CHUNKS, CookieAttributes
from proxy.session.store import SessionCookie, SessionStore

MAX_COOKIE_TEXT = MAX_CHUNKS * 4096


class CookieBackend:
    def __init__(self, keys: KeyRing, cookie_name: str) -> None:
        self._keys = keys
        self._context = context("session", cookie_name)
        self._opened = _OpenedCookies()

    async def read(self, value: str) -> StoredSession | None:
        if len(value) > MAX_COOKIE_TEXT:
            return None
        stored = self._opened.get(value, self._keys.generation)
        if stored is None:
            sealed = b64.decode(value)
            stored = (
                session_codec.open_sealed(self._keys, sealed, self._context) if sealed else None
            )
            if stored is not None:
                self._opened.put(value, stored, self._keys.generation)
        return stored

    async def write(self, stored: StoredSession, previous: str | None, ttl: float) -> str:
        # A new seal replaces whatever there was: nothing to continue.
        return b64.encode(session_codec.seal(self._keys, stored, self._context))

    async def delete(self, value: str) -> None:
        pass  # expiring the cookie is all there is to it


def cookie_session_store(
    keys: KeyRing, cookie_name: str, secure: bool, max_lifetime: float, clock: Clock = time.time
) -> SessionStore:
    cookie = SessionCookie(cookie_name, CookieAttributes(secure=secure), max_lifetime)
    return SessionStore(CookieBackend(keys, cookie_name), cookie, clock)


class _OpenedCookies:
    """Sessions already opened, by their cookie text: a browser sends the same cookie for
    minutes, and AES-GCM + inflate + parse need not run on every request. Only
    authenticated results are kept, and the store's time checks still run on every use.
    Each entry remembers the key ring's generation: after new keys, it opens again."""

    def __init__(self, limit: int = 4096) -> None:
        self._entries: OrderedDict[str, tuple[int, StoredSession]] = OrderedDict()
        self._limit = limit

    def get(self, key: str, generation: int) -> StoredSession | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] != generation:
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: str, stored: StoredSession, generation: int) -> None:
        self._entries[key] = (generation, stored)
        if len(self._entries) > self._limit:
            self._entries.popitem(last=False)

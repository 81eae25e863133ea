"""Browser sessions in encrypted, chunked cookies, as an aiohttp-session storage.

The proxy streams responses, and aiohttp-session only saves on a plain ``web.Response``,
so the storage also hands out ready Set-Cookie values (``set_cookie_headers``) that the
forwarder writes before the response starts.

Any cookie that fails to decode (tampered, truncated, missing chunk, unknown key, too
old, from the future, absurd size) is "no session": one warning line, never an error.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
import warnings
from collections.abc import Mapping
from typing import Any

import aiohttp_session
from aiohttp import web
from aiohttp.web_exceptions import NotAppKeyWarning

from proxy import session_codec
from proxy.cookie_chunks import (
    MAX_CHUNKS,
    CookieAttributes,
    expire_chunks,
    has_chunks,
    read_chunks,
    write_chunks,
)
from proxy.sealing import KeyRing, context
from proxy.session_codec import MalformedSession, StoredSession
from proxy.tokens import Clock, TokenSet

log = logging.getLogger(__name__)

# aiohttp-session keeps its state under plain string keys, which aiohttp 3.12+ warns about
# once per key; that is the library's business, not something an operator can act on.
warnings.filterwarnings("ignore", category=NotAppKeyWarning, module="aiohttp_session")

TOKENS_KEY = "tokens"
CREATED_KEY = "created_at"
CLOCK_SKEW = 60.0  # seconds a cookie's seal time may lie in the future (clock drift)
MAX_COOKIE_TEXT = MAX_CHUNKS * 4096


class CookieSessionStorage(aiohttp_session.AbstractStorage):
    def __init__(
        self,
        keys: KeyRing,
        cookie_name: str,
        secure: bool,
        max_lifetime: float,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(cookie_name=cookie_name, secure=secure, httponly=True, samesite="Lax")
        self._keys = keys
        self._context = context("session", cookie_name)
        self._attributes = CookieAttributes(secure=secure)
        self._max_lifetime = max_lifetime
        self._clock = clock

    # --- the typed interface the proxy uses -------------------------------------------

    def load(self, cookies: Mapping[str, str]) -> StoredSession | None:
        text = read_chunks(self.cookie_name, cookies)
        if text is None or len(text) > MAX_COOKIE_TEXT:
            return None
        try:
            sealed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return None
        plaintext = self._keys.open(sealed, self._context)
        if plaintext is None:
            return None
        try:
            stored = session_codec.decode(plaintext)
        except MalformedSession:
            return None
        now = self._clock()
        if stored.sealed_at > now + CLOCK_SKEW or now - stored.sealed_at > self._max_lifetime:
            return None
        if stored.tokens.refresh_expired(now) and stored.tokens.expires_at <= now:
            return None
        return stored

    def present(self, cookies: Mapping[str, str]) -> bool:
        return has_chunks(self.cookie_name, cookies)

    def set_cookie_headers(
        self, tokens: TokenSet, created: float, cookies: Mapping[str, str]
    ) -> list[str]:
        now = self._clock()
        sealed = self._keys.seal(
            session_codec.encode(StoredSession(tokens, created, now)), self._context
        )
        value = base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")
        max_age = int(max(0.0, min(tokens.refresh_expires_at - now, self._max_lifetime)))
        return write_chunks(self.cookie_name, value, self._attributes, max_age, cookies)

    def clear_cookie_headers(self, cookies: Mapping[str, str]) -> list[str]:
        return expire_chunks(self.cookie_name, self._attributes, cookies)

    # --- aiohttp-session's interface, for the proxy's own routes -----------------------

    async def load_session(self, request: web.Request) -> aiohttp_session.Session:
        stored = self.load(request.cookies)
        if stored is None:
            if self.present(request.cookies):
                log.warning("session cookie present but not valid; treating as no session")
            return aiohttp_session.Session(None, data=None, new=True, max_age=None)
        data: aiohttp_session.SessionData = {
            "created": int(stored.created),
            "session": session_data(stored),
        }
        return aiohttp_session.Session(None, data=data, new=False, max_age=None)

    async def save_session(
        self,
        request: web.Request,
        response: web.StreamResponse,
        session: aiohttp_session.Session,
    ) -> None:
        tokens = session.get(TOKENS_KEY)
        if session.empty or not isinstance(tokens, TokenSet):
            headers = self.clear_cookie_headers(request.cookies)
        else:
            created = float(session.get(CREATED_KEY, self._clock()))
            headers = self.set_cookie_headers(tokens, created, request.cookies)
        for header in headers:
            response.headers.add("Set-Cookie", header)


def session_data(stored: StoredSession) -> dict[str, Any]:
    return {TOKENS_KEY: stored.tokens, CREATED_KEY: stored.created}


def session_cookie_bytes(set_cookies: list[str]) -> int:
    """Bytes the browser will send back: name=value of every live chunk."""
    return sum(len(c.split(";", 1)[0]) for c in set_cookies if "Max-Age=0" not in c)

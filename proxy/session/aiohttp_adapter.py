"""aiohttp-session's view of the ``SessionStore``, for the routes that begin or end a
session (the login callback, sign-out).

The proxied path reads the store directly instead: aiohttp-session saves only when the
handler returns a response it can still change, and a proxied answer is streamed (its
headers leave before the handler returns). So the store hands out ready Set-Cookie
values, which the response hook writes whatever the answer (``http/cookies.py``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import aiohttp_session
from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_exceptions import NotAppKeyWarning

from proxy.oauth.tokens import TokenSet
from proxy.request_state import set_cookies
from proxy.session.request_cookies import request_cookies
from proxy.session.store import SessionStore

log = logging.getLogger(__name__)


# aiohttp-session keeps its state under plain string keys, which aiohttp 3.12+ warns about
# once per key; that is the library's business, not something an operator can act on.
warnings.filterwarnings("ignore", category=NotAppKeyWarning, module="aiohttp_session")

TOKENS_KEY = "tokens"
CREATED_KEY = "created_at"


class SessionStorage(aiohttp_session.AbstractStorage):
    """aiohttp-session's view of a ``SessionStore``."""

    def __init__(self, store: SessionStore, clock: Any) -> None:
        super().__init__(cookie_name=store.cookie_name, httponly=True, samesite="Lax")
        self.store = store
        self._clock = clock

    async def load_session(self, request: web.Request) -> aiohttp_session.Session:
        cookies = self._cookies(request)
        stored = await self.store.load(cookies)
        if stored is None:
            if self.store.present(cookies):
                log.warning("session cookie present but not valid; treating as no session")
            return aiohttp_session.Session(None, data=None, new=True, max_age=None)
        data: aiohttp_session.SessionData = {
            "created": int(stored.created),
            "session": {TOKENS_KEY: stored.tokens, CREATED_KEY: stored.created},
        }
        return aiohttp_session.Session(None, data=data, new=False, max_age=None)

    async def save_session(
        self,
        request: web.Request,
        response: web.StreamResponse,
        session: aiohttp_session.Session,
    ) -> None:
        tokens, cookies = session.get(TOKENS_KEY), self._cookies(request)
        if session.empty or not isinstance(tokens, TokenSet):
            headers = await self.store.clear(cookies)
        else:
            created = float(session.get(CREATED_KEY, self._clock()))
            headers = await self.store.save(tokens, created, cookies, session.new)
        set_cookies(request, "session", headers)

    def _cookies(self, request: web.Request) -> dict[str, str]:
        return request_cookies(request, self.store.cookie_name)


def session_cookie_bytes(set_cookies: list[str]) -> int:
    """Bytes the browser will send back: name=value of every live chunk."""
    return sum(len(c.split(";", 1)[0]) for c in set_cookies if "Max-Age=0" not in c)


def with_sessions(storage: SessionStorage) -> Callable[[Handler], Handler]:
    """aiohttp-session's middleware around one handler: only the routes that begin or end
    a session pay for it, the proxied path does not (it reads the store directly)."""
    middleware = aiohttp_session.session_middleware(storage)

    def wrap(handler: Handler) -> Handler:
        async def with_session(request: web.Request) -> web.StreamResponse:
            return await middleware(request, handler)

        return with_session

    return wrap

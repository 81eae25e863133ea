"""The shape of an authentication mode: a request in, the credentials to inject out."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from proxy.upstream.credentials import Credentials


class Authenticator(Protocol):
    async def authenticate(self, request: web.Request) -> Credentials:
        """Credentials for this request, or raise a ProxyError (401, 403, …). Cookies the
        answer must carry go to ``request_state.set_cookies``."""
        ...

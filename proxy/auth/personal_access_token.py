"""Personal Access Token mode: every request leaves with the account's Basic credentials."""

from __future__ import annotations

import base64

from aiohttp import web

from proxy.auth.clients.access import SharedAccess
from proxy.config import PersonalAccessTokenMode
from proxy.upstream.credentials import Credentials


def basic_authorization(token_id: str, token: str) -> str:
    raw = f"{token_id}:{token}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class PersonalAccessTokenAuth:
    def __init__(self, mode: PersonalAccessTokenMode, access: SharedAccess) -> None:
        self._credentials = Credentials(
            basic_authorization(mode.token_id, mode.token.get_secret_value())
        )
        self._access = access

    async def authenticate(self, request: web.Request) -> Credentials:
        self._access.check(request)
        return self._credentials

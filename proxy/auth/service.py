"""Service mode's request path: headless clients get the stored identity's credentials
(its operator endpoints are in ``login/service_routes.py``)."""

from __future__ import annotations

from aiohttp import web

from proxy.auth.clients.access import SharedAccess
from proxy.auth.service_identity import ServiceIdentity
from proxy.auth.session_scopes import ScopeCheck
from proxy.upstream.credentials import Credentials


class ServiceAuth:
    def __init__(
        self, identity: ServiceIdentity, access: SharedAccess, scopes: ScopeCheck | None = None
    ) -> None:
        self._identity = identity
        self._access = access
        self._scopes = scopes  # auth.oauth2.enforce_scopes: the identity's token's scopes

    async def authenticate(self, request: web.Request) -> Credentials:
        self._access.check(request)
        credentials = await self._identity.credentials()
        current = self._identity.current
        if self._scopes is not None and current is not None:
            self._scopes.check(request, current.tokens)
        return credentials

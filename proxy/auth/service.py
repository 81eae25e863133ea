"""Service mode's request path: headless clients get the stored identity's credentials
(its operator endpoints are in ``login/service_routes.py``)."""

from __future__ import annotations

from aiohttp import web

from proxy.auth.clients.access import SharedAccess
from proxy.auth.service_identity import ServiceIdentity
from proxy.upstream.credentials import Credentials


class ServiceAuth:
    def __init__(self, identity: ServiceIdentity, access: SharedAccess) -> None:
        self._identity = identity
        self._access = access

    async def authenticate(self, request: web.Request) -> Credentials:
        self._access.check(request)
        return await self._identity.credentials()

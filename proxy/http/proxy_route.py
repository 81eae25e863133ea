"""The catch-all route: authenticate, then forward with the mode's credentials."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.auth.protocol import Authenticator
from proxy.upstream.clients import HttpClients


def proxy_handler(authenticator: Authenticator, clients: HttpClients) -> Handler:
    async def proxy(request: web.Request) -> web.StreamResponse:
        credentials = await authenticator.authenticate(request)
        forwarder = clients.forwarder
        assert forwarder is not None, "requests are served only after start-up"
        return await forwarder.forward(request, credentials)

    return proxy

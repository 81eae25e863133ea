"""The proxy's outgoing HTTP clients, to the upstream API and to the IdP: they need a
running loop, so they open at start-up (a cleanup context) and close at shutdown."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from aiohttp.client_middlewares import ClientMiddlewareType

from proxy.config import Settings, Upstream
from proxy.upstream.forwarder import Forwarder
from proxy.upstream.own_side import OwnSide


@dataclass
class HttpClients:
    """Filled in at start-up; ``stopping`` is set on SIGTERM, so that readiness turns off
    before the listener closes."""

    upstream: aiohttp.ClientSession | None = None
    idp: aiohttp.ClientSession | None = None
    forwarder: Forwarder | None = None
    stopping: bool = False

    def idp_session(self) -> aiohttp.ClientSession:
        assert self.idp is not None, "used before start-up"
        return self.idp

    def ready(self) -> bool:
        open_ = self.upstream is not None and not self.upstream.closed
        return open_ and self.forwarder is not None and not self.stopping


@dataclass(frozen=True)
class ClientMiddlewares:
    """What wraps each outgoing call (tracing's spans); by default nothing at all."""

    upstream: tuple[ClientMiddlewareType, ...] = ()
    idp: tuple[ClientMiddlewareType, ...] = ()


def upstream_tls(upstream: Upstream) -> ssl.SSLContext | bool:
    """The configured CA bundle replaces the system's roots (as nginx's
    proxy_ssl_trusted_certificate does); without one, aiohttp's default verification."""
    if upstream.ca_file is None:
        return True
    return ssl.create_default_context(cafile=str(upstream.ca_file))


def open_clients(
    settings: Settings, clients: HttpClients, middlewares: ClientMiddlewares = ClientMiddlewares()
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def open_and_close(app: web.Application) -> AsyncIterator[None]:
        async with (
            _upstream_client(settings.upstream, middlewares.upstream) as upstream,
            _idp_client(settings, middlewares.idp) as idp,
        ):
            clients.upstream, clients.idp = upstream, idp
            clients.forwarder = Forwarder(settings.upstream, upstream, OwnSide.of(settings))
            yield

    return open_and_close


def _upstream_client(
    upstream: Upstream, middlewares: tuple[ClientMiddlewareType, ...]
) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=0, enable_cleanup_closed=True, ssl=upstream_tls(upstream)
        ),
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=upstream.connect_timeout, sock_read=upstream.read_timeout
        ),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),  # upstream cookies belong to the client
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
        middlewares=middlewares,
    )


def _idp_client(
    settings: Settings, middlewares: tuple[ClientMiddlewareType, ...]
) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=settings.auth.oauth2.timeout),
        cookie_jar=aiohttp.DummyCookieJar(),
        middlewares=middlewares,
    )

"""Wiring: settings in, aiohttp application out. Nothing else imports this module."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
import aiohttp_session
from aiohttp import web

from proxy import redis_store
from proxy import request_state as state
from proxy.browser_session import BrowserSessionAuth
from proxy.config import Settings
from proxy.cookie_chunks import CookieAttributes
from proxy.cookie_store import CookieSessionStore
from proxy.credentials import Authenticator
from proxy.csrf import OriginPolicy
from proxy.errors import ProxyError, StoreUnavailable, json_error
from proxy.forward import Forwarder
from proxy.forward_auth import forward_auth_handler
from proxy.health import Health
from proxy.keys import session_keys
from proxy.login import LoginRoutes
from proxy.login_flow import LoginFlows
from proxy.metrics import Metrics
from proxy.oauth import OAuthClient
from proxy.observe import add_request_id, observer
from proxy.pat import LOOPBACK_NAMES, ClientNetworks, PersonalAccessTokenAuth, host_name
from proxy.redis_refresh import RedisRefreshCoordination
from proxy.refresh import Coordination, Refresher
from proxy.sealing import KeyRing
from proxy.session import SessionStorage, SessionStore

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class HttpClients:
    """Client sessions need a running loop, so they are opened at start-up and filled in."""

    upstream: aiohttp.ClientSession | None = None
    idp: aiohttp.ClientSession | None = None
    forwarder: Forwarder | None = field(default=None)
    stopping: bool = False  # set on SIGTERM: readiness turns off before the listener closes

    def idp_session(self) -> aiohttp.ClientSession:
        assert self.idp is not None, "used before start-up"
        return self.idp

    def ready(self) -> bool:
        open_ = self.upstream is not None and not self.upstream.closed
        return open_ and self.forwarder is not None and not self.stopping


CLIENTS = web.AppKey("clients", HttpClients)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
ORIGINS = web.AppKey("origins", OriginPolicy)
METRICS = web.AppKey("metrics", Metrics)
HEALTH = web.AppKey("health", Health)


def create_app(settings: Settings) -> web.Application:
    metrics = Metrics()
    app = web.Application(middlewares=[observer(metrics), _errors_as_json, _unrouted_to_proxy])
    clients = HttpClients()
    app[CLIENTS], app[METRICS] = clients, metrics
    app.cleanup_ctx.append(_open_clients(settings, clients))
    app.on_response_prepare.append(add_request_id)
    health = Health(metrics, clients.ready)
    app[HEALTH] = health
    health.register(app.router, with_metrics=settings.management.listen is None)
    if settings.auth.mode == "personal_access_token":
        _wire_personal_access_token(app, settings)
    else:
        _wire_oauth2(app, settings, clients)
    app.router.add_get(
        f"{settings.auth.oauth2.path_prefix}/auth",
        forward_auth_handler(app[AUTHENTICATOR]),
        name="forward_auth",
    )
    app.router.add_route("*", "/{tail:.*}", _proxy)
    return app


def create_management_app(main: web.Application) -> web.Application:
    """Probes and /metrics on their own listener, sharing the main app's state."""
    app = web.Application(middlewares=[observer(main[METRICS])])
    app.on_response_prepare.append(add_request_id)
    main[HEALTH].register(app.router, with_metrics=True)
    return app


def _wire_personal_access_token(app: web.Application, settings: Settings) -> None:
    networks = ClientNetworks(settings.auth.allowed_client_networks)
    origins = OriginPolicy(settings.public_url, settings.session.allowed_origins)
    app[ORIGINS] = origins
    trusted = {host_name(urlsplit(settings.public_url).netloc), settings.listen.host.lower()}
    app[AUTHENTICATOR] = PersonalAccessTokenAuth(
        settings.auth.personal_access_token,
        networks,
        origins,
        frozenset(LOOPBACK_NAMES | trusted),
    )
    app.middlewares.append(_cors_preflight)
    app.on_response_prepare.append(_cors_headers)


def _wire_oauth2(app: web.Application, settings: Settings, clients: HttpClients) -> None:
    oauth2, session = settings.auth.oauth2, settings.session
    keys = KeyRing(session_keys([k.get_secret_value() for k in session.keys], settings.is_local))
    prefix = oauth2.path_prefix
    oauth = OAuthClient(oauth2, settings.public_url + prefix + "/callback", clients.idp_session)
    storage, coordination = _session_store(app, settings, keys)
    flows = LoginFlows(
        keys, session.cookie_name, CookieAttributes(settings.cookie_secure, path=prefix + "/")
    )
    origins = OriginPolicy(settings.public_url, session.allowed_origins)
    app[ORIGINS] = origins
    refresher = Refresher(
        oauth,
        timeout=oauth2.timeout,
        keep_id_token=oauth2.idp_logout,
        coordination=coordination,
    )
    app[AUTHENTICATOR] = BrowserSessionAuth(
        storage, refresher, origins, settings.public_url, prefix, oauth2.refresh_skew
    )
    routes = LoginRoutes(
        oauth, flows, storage, origins, settings.public_url, prefix, oauth2.pkce, oauth2.idp_logout
    )
    routes.register(app.router)
    app.middlewares.append(aiohttp_session.session_middleware(SessionStorage(storage, time.time)))
    app.middlewares.append(_cors_preflight)
    app.on_response_prepare.append(_cors_headers)


def _session_store(
    app: web.Application, settings: Settings, keys: KeyRing
) -> tuple[SessionStore, Coordination | None]:
    session = settings.session
    if session.store == "cookie":
        store = CookieSessionStore(
            keys, session.cookie_name, settings.cookie_secure, session.max_lifetime
        )
        return store, None
    assert session.redis_url is not None  # config guarantees it
    client = redis_store.connect(session.redis_url.get_secret_value())
    redis_sessions = redis_store.RedisSessionStore(
        client, keys, session.cookie_name, settings.cookie_secure, session.max_lifetime
    )
    app[HEALTH].checks.append(redis_sessions.ping)

    async def close_redis(app: web.Application) -> None:
        await client.aclose()

    app.on_cleanup.append(close_redis)
    coordination = RedisRefreshCoordination(client, keys, lock_ttl=session.redis_lock_ttl)
    return redis_sessions, coordination


def _open_clients(
    settings: Settings, clients: HttpClients
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def open_clients(app: web.Application) -> AsyncIterator[None]:
        upstream_timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=settings.upstream.connect_timeout,
            sock_read=settings.upstream.read_timeout,
        )
        async with (
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True),
                timeout=upstream_timeout,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),  # upstream cookies belong to the client
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
            ) as upstream,
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=settings.auth.oauth2.timeout),
                cookie_jar=aiohttp.DummyCookieJar(),
            ) as idp,
        ):
            clients.upstream, clients.idp = upstream, idp
            clients.forwarder = Forwarder(
                settings.upstream, upstream, own_cookie_prefix=settings.session.cookie_name
            )
            yield

    return open_clients


async def _proxy(request: web.Request) -> web.StreamResponse:
    credentials = await request.app[AUTHENTICATOR].authenticate(request)
    forwarder = request.app[CLIENTS].forwarder
    assert forwarder is not None
    return await forwarder.forward(request, credentials)


@web.middleware
async def _errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProxyError as err:
        if isinstance(err, StoreUnavailable):
            request[state.STORE_ERROR] = True
        return err.to_response()
    except web.HTTPException as err:
        if err.status < 400:
            raise
        return json_error(err.status, "http_error", err.reason)


@web.middleware
async def _unrouted_to_proxy(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Targets the router cannot match ("*", "http://host" without a path) still belong to
    # the proxy, which forwards them or refuses them with a clear error.
    if isinstance(request.match_info.http_exception, web.HTTPNotFound):
        return await _proxy(request)
    return await handler(request)


@web.middleware
async def _cors_preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        headers = request.app[ORIGINS].preflight_headers(
            request.headers.get("Origin"),
            request.headers.get("Access-Control-Request-Method"),
            request.headers.get("Access-Control-Request-Headers"),
        )
        if headers is not None:
            return web.Response(status=204, headers=headers)
    return await handler(request)


async def _cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    allowed = request.app[ORIGINS].cors_headers(request.headers.get("Origin"))
    if allowed:  # ours replace the upstream's: only the proxy knows which origins it trusts
        response.headers.update(allowed)

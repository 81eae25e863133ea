"""Wiring: settings in, aiohttp application out. Nothing else imports this module."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiohttp_session
from aiohttp import web
from aiohttp.typedefs import Middleware

from proxy import request_state as state
from proxy.auth.browser_session import BrowserSessionAuth
from proxy.auth.personal_access_token import (
    LOOPBACK_NAMES,
    ClientNetworks,
    HeadlessClientGuard,
    PersonalAccessTokenAuth,
    host_name,
)
from proxy.auth.protocol import Authenticator
from proxy.config import (
    CookieStore,
    OAuth2Mode,
    PersonalAccessTokenMode,
    RedisStore,
    ServiceMode,
    Settings,
    Upstream,
)
from proxy.crypto.keys import decode_key, session_keys
from proxy.crypto.sealing import KeyRing
from proxy.errors import ProxyError, StoreUnavailable, json_error
from proxy.http.forward_auth import forward_auth_handler
from proxy.http.origin import OriginPolicy, vary_with_origin
from proxy.login.flow_cookie import LoginFlows, flow_attributes
from proxy.login.redirects import login_url
from proxy.login.routes import LoginRoutes
from proxy.oauth.client import OAuthClient
from proxy.ops import observe
from proxy.ops.health import Health
from proxy.ops.metrics import Metrics
from proxy.ops.observe import add_request_id, observer
from proxy.refresh.single_flight import Coordination, Refresher
from proxy.session.aiohttp_adapter import SessionStorage, SessionStore
from proxy.session.cookie_backend import CookieSessionStore
from proxy.upstream.forwarder import Forwarder

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
MANAGEMENT_ROUTES = web.AppKey("management_routes", list[Callable[[web.UrlDispatcher], None]])


@dataclass
class Layers:
    """What the main listener's one middleware (and one on_response_prepare receiver) do
    besides observing and answering errors; the wiring fills it in. One of each, not one
    per concern: every layer costs every request a partial call, a coroutine and its frame."""

    session: Middleware | None = None  # aiohttp-session, for the proxy's own routes only
    session_prefix: str = ""
    cors: bool = False  # CORS preflights answered, CORS headers set (needs ORIGINS)


LAYERS = web.AppKey("layers", Layers)


def create_app(settings: Settings, workers_dir: Path | None = None) -> web.Application:
    """``workers_dir``: the private directory the workers of one proxy share (set by the
    supervisor with ``server.workers`` > 1): cookie-store refreshes coordinate there."""
    metrics = Metrics()
    app = web.Application()
    clients = HttpClients()
    app[CLIENTS], app[METRICS] = clients, metrics
    app[MANAGEMENT_ROUTES] = []
    app[LAYERS] = Layers()
    app.cleanup_ctx.append(_open_clients(settings, clients))
    health = Health(metrics, clients.ready)
    app[HEALTH] = health
    health.register(app.router, with_metrics=settings.management.listen is None)
    mode = settings.mode
    if isinstance(mode, PersonalAccessTokenMode):
        _wire_personal_access_token(app, settings, mode)
    elif isinstance(mode, ServiceMode):
        _wire_service(app, settings, mode, clients)
    else:
        _wire_oauth2(app, settings, mode, clients, workers_dir)
    _wire_forward_auth(app, settings)
    proxy = _proxy(app[AUTHENTICATOR], clients)
    app.router.add_route("*", "/{tail:.*}", proxy)
    layers = app[LAYERS]
    app.middlewares.append(_main_layer(metrics, layers, proxy))
    app.on_response_prepare.append(_answer_headers(app[ORIGINS] if layers.cors else None))
    return app


def create_management_app(main: web.Application) -> web.Application:
    """Probes and /metrics on their own listener, sharing the main app's state
    (and, in service mode, the operator's sign-in and status endpoints)."""
    app = web.Application(middlewares=[observer(main[METRICS]), _errors_as_json])
    app.on_response_prepare.append(add_request_id)
    main[HEALTH].register(app.router, with_metrics=True)
    for register in main[MANAGEMENT_ROUTES]:
        register(app.router)
    return app


def _wire_forward_auth(app: web.Application, settings: Settings) -> None:
    path, forward_auth = f"{settings.auth.oauth2.path_prefix}/auth", settings.forward_auth
    authenticator = app[AUTHENTICATOR]
    # Always routed on the main listener: when off or served elsewhere, a clear 404
    # rather than a request proxied upstream.
    handler = forward_auth_handler(authenticator, forward_auth, "main")
    app.router.add_get(path, handler, name="forward_auth")
    if forward_auth.enabled and forward_auth.listener == "management":

        def register(router: web.UrlDispatcher) -> None:
            handler = forward_auth_handler(authenticator, forward_auth, "management")
            router.add_get(path, handler, name="forward_auth")

        app[MANAGEMENT_ROUTES].append(register)


def _headless_guard(app: web.Application, settings: Settings) -> HeadlessClientGuard:
    networks = ClientNetworks(settings.auth.allowed_client_networks)
    origins = OriginPolicy(settings.public_url, settings.session.allowed_origins)
    app[ORIGINS] = origins
    trusted = {host_name(urlsplit(settings.public_url).netloc), settings.listen.host.lower()}
    app[LAYERS].cors = True
    return HeadlessClientGuard(networks, origins, frozenset(LOOPBACK_NAMES | trusted))


def _wire_personal_access_token(
    app: web.Application, settings: Settings, mode: PersonalAccessTokenMode
) -> None:
    guard = _headless_guard(app, settings)
    app[AUTHENTICATOR] = PersonalAccessTokenAuth(mode, guard)


def _wire_service(
    app: web.Application, settings: Settings, mode: ServiceMode, clients: HttpClients
) -> None:
    # Imported here: a cookie-store proxy never loads the Redis client (-6.6 MB RSS).
    from proxy.auth.service import ServiceAuth, login_completion, register_operator_routes
    from proxy.auth.service_identity import FileState, IdentityState, RedisState, ServiceIdentity
    from proxy.refresh.redis import RedisRefreshCoordination
    from proxy.session import redis_backend as redis_store

    oauth2 = mode.client.settings
    keys = KeyRing([decode_key(k.get_secret_value()) for k in settings.session.keys])
    prefix = oauth2.path_prefix
    oauth = OAuthClient(
        mode.client, settings.public_url + prefix + "/callback", clients.idp_session
    )
    state: IdentityState
    coordination: Coordination | None = None
    if isinstance(mode.state, Path):
        state = FileState(mode.state, keys)
    if isinstance(settings.store, RedisStore):
        client = redis_store.connect(settings.store.url.get_secret_value())
        coordination = RedisRefreshCoordination(client, keys, lock_ttl=settings.store.lock_ttl)
        if isinstance(mode.state, RedisStore):
            state = RedisState(client, keys, "sipgate-proxy")
        _close_on_cleanup(app, client)
    metrics = app[METRICS]
    identity = ServiceIdentity(
        state,
        Refresher(oauth, timeout=oauth2.timeout, coordination=coordination),
        mode.allowed_subjects,
        oauth2.refresh_skew,
        login_url(settings.public_url, prefix, "/"),
        revoker=oauth,
        report=lambda usable: metrics.service_identity.set(1 if usable else 0),
    )
    guard = _headless_guard(app, settings)
    app[AUTHENTICATOR] = ServiceAuth(identity, guard)
    name = settings.session.cookie_name
    flows = LoginFlows(keys, name, flow_attributes(name, settings.cookie_secure, prefix))
    routes = LoginRoutes(
        oauth,
        flows,
        None,  # no browser sessions in service mode
        app[ORIGINS],
        settings.public_url,
        prefix,
        oauth2.pkce,
        idp_logout=False,
    )
    routes.complete = login_completion(identity)

    def register(router: web.UrlDispatcher) -> None:
        register_operator_routes(router, prefix, routes, identity, guard)

    # The operator's endpoints sit on the management listener when there is one.
    if settings.management.listen is not None:
        app[MANAGEMENT_ROUTES].append(register)
    else:
        register(app.router)

    async def keep_fresh(app: web.Application) -> AsyncIterator[None]:
        try:
            await identity.refresh()  # resume from the stored state, renewing if due
        except Exception as err:  # the IdP may be away at start: the loop retries
            log.warning("service identity not refreshed at start: %s", type(err).__name__)
        task = asyncio.create_task(identity.keep_fresh())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(keep_fresh)


def _close_on_cleanup(app: web.Application, client: Any) -> None:
    async def close(app: web.Application) -> None:
        await client.aclose()

    app.on_cleanup.append(close)


def _wire_oauth2(
    app: web.Application,
    settings: Settings,
    mode: OAuth2Mode,
    clients: HttpClients,
    workers_dir: Path | None,
) -> None:
    oauth2, session = mode.client.settings, settings.session
    keys = KeyRing(session_keys([k.get_secret_value() for k in session.keys], settings.is_local))
    prefix = oauth2.path_prefix
    oauth = OAuthClient(
        mode.client, settings.public_url + prefix + "/callback", clients.idp_session
    )
    storage, coordination = _session_store(app, settings, keys, workers_dir)
    name = session.cookie_name
    flows = LoginFlows(keys, name, flow_attributes(name, settings.cookie_secure, prefix))
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
    layers = app[LAYERS]
    layers.session = aiohttp_session.session_middleware(SessionStorage(storage, time.time))
    layers.session_prefix = prefix
    layers.cors = True


def _session_store(
    app: web.Application, settings: Settings, keys: KeyRing, workers_dir: Path | None
) -> tuple[SessionStore, Coordination | None]:
    session, configured = settings.session, settings.store
    if isinstance(configured, CookieStore):
        store = CookieSessionStore(
            keys, session.cookie_name, settings.cookie_secure, session.max_lifetime
        )
        if workers_dir is None:
            return store, None  # one process: the refresher's own single flight suffices
        from proxy.refresh.file import FileRefreshCoordination

        wait = settings.auth.oauth2.timeout + 2  # the holder's exchange is bounded by it
        return store, FileRefreshCoordination(workers_dir, keys, wait_timeout=wait)
    from proxy.refresh.redis import RedisRefreshCoordination
    from proxy.session import redis_backend as redis_store  # imported here: see _wire_service

    client = redis_store.connect(configured.url.get_secret_value())
    redis_sessions = redis_store.RedisSessionStore(
        client, keys, session.cookie_name, settings.cookie_secure, session.max_lifetime
    )
    app[HEALTH].checks.append(redis_sessions.ping)
    _close_on_cleanup(app, client)
    coordination = RedisRefreshCoordination(client, keys, lock_ttl=configured.lock_ttl)
    return redis_sessions, coordination


def _upstream_tls(upstream: Upstream) -> ssl.SSLContext | bool:
    """The configured CA bundle replaces the system's roots (as nginx's
    proxy_ssl_trusted_certificate does); without one, aiohttp's default verification."""
    if upstream.ca_file is None:
        return True
    return ssl.create_default_context(cafile=str(upstream.ca_file))


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
                connector=aiohttp.TCPConnector(
                    limit=0, enable_cleanup_closed=True, ssl=_upstream_tls(settings.upstream)
                ),
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
                settings.upstream,
                upstream,
                own_cookie_prefix=settings.session.cookie_name,
                public_url=settings.public_url,
            )
            yield

    return open_clients


def _proxy(authenticator: Authenticator, clients: HttpClients) -> Handler:
    # Both bound now, not looked up in request.app on every request.
    async def proxy(request: web.Request) -> web.StreamResponse:
        credentials = await authenticator.authenticate(request)
        forwarder = clients.forwarder
        assert forwarder is not None
        return await forwarder.forward(request, credentials)

    return proxy


def _main_layer(metrics: Metrics, layers: Layers, proxy: Handler) -> Middleware:
    """The main listener's middleware: observer, faulty framing, errors as JSON, unrouted
    targets, the session for the proxy's own routes, CORS preflights, in this order."""
    session, own_routes, cors = layers.session, layers.session_prefix + "/", layers.cors

    def inner(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        # Returns the awaitable rather than awaiting it: no coroutine of its own.
        if isinstance(request.match_info.http_exception, web.HTTPNotFound):
            # Targets the router cannot match ("*", "http://host" without a path) still
            # belong to the proxy, which forwards them or refuses them with a clear error.
            return proxy(request)
        if cors and request.method == "OPTIONS":
            handler = functools.partial(_cors_preflight, handler=handler)
        if session is not None and request.path.startswith(own_routes):
            return session(request, handler)
        return handler(request)

    @web.middleware
    async def main_layer(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = observe.start(request)
        status = 500
        try:
            response: web.StreamResponse | None = _faulty_framing(request)
            if response is None:
                try:
                    response = await inner(request, handler)
                except ProxyError as err:
                    response = _proxy_error(request, err)
                except web.HTTPException as err:
                    if err.status < 400:
                        raise
                    response = _http_error(err)
            status = response.status
            return response
        except web.HTTPException as err:
            status = err.status
            raise
        finally:
            observe.finish(request, metrics, status, started)

    return main_layer


def _faulty_framing(request: web.Request) -> web.Response | None:
    # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request is faulty framing; nothing
    # after it on this connection may be taken as a request.
    if request.version < aiohttp.HttpVersion11 and "Transfer-Encoding" in request.headers:
        response = json_error(400, "bad_request", "Transfer-Encoding in an HTTP/1.0 request")
        response.force_close()
        return response
    return None


@web.middleware
async def _errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProxyError as err:
        return _proxy_error(request, err)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        return _http_error(err)


def _proxy_error(request: web.Request, err: ProxyError) -> web.Response:
    if isinstance(err, StoreUnavailable):
        request[state.STORE_ERROR] = True
    return err.to_response()


def _http_error(err: web.HTTPException) -> web.Response:
    return json_error(err.status, "http_error", err.reason)


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


def _answer_headers(
    origins: OriginPolicy | None,
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """on_response_prepare of the main listener: the request id and, with CORS, the CORS
    headers. One receiver for both: each receiver costs every response a coroutine."""

    async def answer_headers(request: web.Request, response: web.StreamResponse) -> None:
        observe.name_response(request, response)
        if origins is not None:
            _cors_headers(origins, request, response)

    return answer_headers


def _cors_headers(
    origins: OriginPolicy, request: web.Request, response: web.StreamResponse
) -> None:
    headers = response.headers
    allowed = origins.cors_headers(request.headers.get("Origin"))
    if allowed:  # ours replace the upstream's: only the proxy knows which origins it trusts
        headers.update(allowed)
    vary = vary_with_origin(headers.getall("Vary", ()))
    if vary is not None:  # added to the upstream's, never in place of it
        headers["Vary"] = vary

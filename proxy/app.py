"""The composition root: settings in, aiohttp application out. Each auth mode builds a
frozen record of its parts (``proxy/modes``); this module only composes them with what
every mode shares. Nothing but the entry points imports it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from proxy.config import RedisStore, Settings
from proxy.http.cookies import write_cookies
from proxy.http.cors import cors_headers, cors_preflight
from proxy.http.forward_auth import forward_auth_handler
from proxy.http.middlewares import errors_as_json, refuse_faulty_framing, unrouted_targets
from proxy.http.proxy_route import proxy_handler
from proxy.modes import build_mode
from proxy.modes.common import redis_client, redis_lifecycle
from proxy.modes.parts import CleanupContext, ModeContext, ModeParts, Register
from proxy.ops.health import Health
from proxy.ops.metrics import Metrics
from proxy.ops.observe import add_request_id, observer
from proxy.ops.reload import Live
from proxy.upstream.clients import ClientMiddlewares, HttpClients, open_clients

if TYPE_CHECKING:
    from proxy.tracing import Tracing

CLIENTS = web.AppKey("clients", HttpClients)
METRICS = web.AppKey("metrics", Metrics)
HEALTH = web.AppKey("health", Health)
# What the management listener serves besides probes and /metrics.
MANAGEMENT_ROUTES = web.AppKey("management_routes", list[Callable[[web.UrlDispatcher], None]])
RELOAD = web.AppKey("reload", tuple[Live, ...])  # what SIGHUP applies


def create_app(settings: Settings, workers_dir: Path | None = None) -> web.Application:
    """``workers_dir``: the private directory the workers of one proxy share (set by the
    supervisor with ``server.workers`` > 1)."""
    metrics, clients, tracing = Metrics(), HttpClients(), _tracing(settings)
    mode = build_mode(ModeContext(settings, clients, metrics, workers_dir, tracing))
    health = Health(metrics, clients.ready, mode.readiness)
    proxy = proxy_handler(mode.authenticator, clients)
    app = web.Application(
        middlewares=[
            *([tracing.server_middleware()] if tracing else []),  # outermost: the whole answer
            observer(metrics),
            refuse_faulty_framing,
            errors_as_json,
            unrouted_targets(proxy),
            cors_preflight(mode.origins),
        ]
    )
    app[CLIENTS], app[METRICS], app[HEALTH] = clients, metrics, health
    app[MANAGEMENT_ROUTES] = _management_routes(settings, mode)
    app[RELOAD] = mode.reload
    if tracing is not None:
        app.cleanup_ctx.append(tracing.lifecycle)  # first in, last out: every span ended
    app.cleanup_ctx.extend((open_clients(settings, clients, _traced(tracing)), *mode.lifecycle))
    app.cleanup_ctx.extend(_webhooks(app.router, settings, metrics))
    _routes(app.router, settings, mode, health)
    app.router.add_route("*", "/{tail:.*}", proxy)
    app.on_response_prepare.extend((add_request_id, write_cookies, cors_headers(mode.origins)))
    return app


def _webhooks(
    router: web.UrlDispatcher, settings: Settings, metrics: Metrics
) -> tuple[CleanupContext, ...]:
    """sipgate.io webhooks, routed before everything else on the main listener; with the
    Redis store, their replay memory is in Redis (a connection of their own)."""
    if not settings.webhooks.enabled:
        return ()
    from proxy import webhooks

    store = settings.store
    redis = redis_client(store) if isinstance(store, RedisStore) else None
    parts = webhooks.build(settings, metrics, redis.client if redis else None)
    parts.register(router)
    return (parts.lifecycle, *((redis_lifecycle(redis),) if redis else ()))


def _tracing(settings: Settings) -> Tracing | None:
    if not settings.tracing.enabled:
        return None  # and no OpenTelemetry module is ever imported
    from proxy.tracing import Tracing

    return Tracing(settings.tracing)


def _traced(tracing: Tracing | None) -> ClientMiddlewares:
    if tracing is None:
        return ClientMiddlewares()
    return ClientMiddlewares(
        (tracing.client_middleware("upstream"),), (tracing.client_middleware("idp"),)
    )


def create_management_app(main: web.Application) -> web.Application:
    """Probes and /metrics on their own listener, sharing the main app's state (and, in
    service mode, the operator's sign-in and status endpoints)."""
    app = web.Application(middlewares=[observer(main[METRICS]), errors_as_json])
    app.on_response_prepare.extend((add_request_id, write_cookies))
    main[HEALTH].register(app.router, with_metrics=True)
    for register in main[MANAGEMENT_ROUTES]:
        register(app.router)
    return app


def _routes(router: web.UrlDispatcher, settings: Settings, mode: ModeParts, health: Health) -> None:
    """The main listener's own endpoints; everything else is the proxy's."""
    health.register(router, with_metrics=settings.management.listen is None)
    mode.routes(router)
    if mode.operator_routes is not None and settings.management.listen is None:
        mode.operator_routes(router)
    # Always routed on the main listener: when off or served elsewhere, a clear 404
    # rather than a request proxied upstream.
    shared = settings.auth.mode != "oauth2"
    handler = forward_auth_handler(mode.authenticator, settings.forward_auth, "main", shared)
    router.add_get(_forward_auth_path(settings), handler, name="forward_auth")


def _management_routes(settings: Settings, mode: ModeParts) -> list[Register]:
    routes: list[Register] = []
    if mode.operator_routes is not None and settings.management.listen is not None:
        routes.append(mode.operator_routes)
    forward_auth = settings.forward_auth
    if forward_auth.enabled and forward_auth.listener == "management":
        shared = settings.auth.mode != "oauth2"
        handler = forward_auth_handler(mode.authenticator, forward_auth, "management", shared)
        path = _forward_auth_path(settings)

        def register(router: web.UrlDispatcher) -> None:
            router.add_get(path, handler, name="forward_auth")

        routes.append(register)
    return routes


def _forward_auth_path(settings: Settings) -> str:
    return f"{settings.auth.oauth2.path_prefix}/auth"

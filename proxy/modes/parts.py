"""What a mode is built from (``ModeContext``) and what it brings (``ModeParts``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from proxy.auth.origin import OriginPolicy
from proxy.auth.protocol import Authenticator
from proxy.config import Settings
from proxy.ops.metrics import Metrics
from proxy.ops.reload import Live
from proxy.upstream.clients import HttpClients

if TYPE_CHECKING:  # imported only when tracing is on (app.py)
    from proxy.tracing import Tracing

Register = Callable[[web.UrlDispatcher], None]
CleanupContext = Callable[[web.Application], AsyncIterator[None]]
ReadinessCheck = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class ModeContext:
    settings: Settings
    clients: HttpClients  # opened at start-up; the IdP session is looked up per call
    metrics: Metrics
    # The private directory the workers of one proxy share (server.workers > 1):
    # cookie-store refreshes coordinate there.
    workers_dir: Path | None = None
    tracing: Tracing | None = None  # tracing.otlp_endpoint set: spans for sessions, refreshes


def no_routes(router: web.UrlDispatcher) -> None:
    pass


@dataclass(frozen=True)
class ModeParts:
    authenticator: Authenticator
    origins: OriginPolicy  # CSRF and CORS: which origins may spend the credential
    routes: Register = no_routes  # the mode's own endpoints on the main listener
    # Endpoints for the operator: on the management listener when there is one.
    operator_routes: Register | None = None
    lifecycle: tuple[CleanupContext, ...] = ()  # background tasks, clients to close
    # Applied on SIGHUP with the configuration loaded again: session keys, the client list.
    reload: tuple[Live, ...] = ()
    readiness: tuple[ReadinessCheck, ...] = ()  # e.g. the session store answers

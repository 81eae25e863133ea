"""One TracerProvider per serving process: made with the app (in the worker, after the
fork), its exporter started with the app and shut down, every span flushed, when the
app stops. Export runs in the SDK's background thread (BatchSpanProcessor): a slow or
absent collector costs the requests nothing, and its failures are logged at most once a
minute, without the export headers."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.client_middlewares import ClientMiddlewareType
from aiohttp.typedefs import Middleware
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from proxy import __version__
from proxy.config.tracing import Tracing as TracingSettings
from proxy.refresh.single_flight import Refreshes
from proxy.session.store import Sessions
from proxy.tracing.client import client_spans
from proxy.tracing.server import server_spans
from proxy.tracing.spans import TracedRefresher, TracedSessions

log = logging.getLogger(__name__)

# Where the SDK and the exporter report failed exports, dropped spans and retries.
EXPORT_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.sdk.trace.export",
)
EXPORT_WARNING_INTERVAL = 60.0  # seconds between two warnings about failed exports


class Tracing:
    def __init__(self, settings: TracingSettings) -> None:
        self._settings = settings
        resource = Resource.create(
            {
                "service.name": settings.service_name,
                "service.version": __version__,
                "process.pid": os.getpid(),  # which worker (made after the fork)
            }
        )
        sampler = ParentBased(TraceIdRatioBased(settings.sample_ratio))
        self._provider = TracerProvider(sampler=sampler, resource=resource, shutdown_on_exit=False)
        self.tracer = self._provider.get_tracer("sipgate-auth-proxy", __version__)
        self._propagator = TraceContextTextMapPropagator()

    def server_middleware(self) -> Middleware:
        return server_spans(self.tracer, self._propagator, self._settings.trust_incoming)

    def client_middleware(self, peer: str) -> ClientMiddlewareType:
        return client_spans(self.tracer, self._propagator, peer)

    def refresher(self, refresher: Refreshes) -> Refreshes:
        return TracedRefresher(refresher, self.tracer)

    def sessions(self, sessions: Sessions) -> Sessions:
        return TracedSessions(sessions, self.tracer)

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: export from start-up on; at shutdown, send what is left."""
        settings = self._settings
        assert settings.otlp_endpoint is not None
        exporter = OTLPSpanExporter(
            endpoint=settings.otlp_endpoint,
            headers={name: value.get_secret_value() for name, value in settings.headers.items()},
            timeout=settings.timeout,
        )
        failures = _ExportFailures()
        _filter_export_logs(failures, add=True)
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        log.info("exporting traces to %s", settings.otlp_endpoint)
        yield
        await asyncio.to_thread(self._provider.shutdown)
        _filter_export_logs(failures, add=False)


class _ExportFailures(logging.Filter):
    """One warning a minute about failed exports, in the proxy's words: the SDK's own
    would come per batch (or per dropped span) with whatever the collector answered."""

    def __init__(self) -> None:
        super().__init__()
        self._next = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + EXPORT_WARNING_INTERVAL
        error = record.exc_info[1] if record.exc_info else None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = "trace export failing%s: spans are dropped, requests are not affected"
        record.args = (f" ({type(error).__name__})" if error else "",)
        record.exc_info, record.exc_text = None, None
        return True


def _filter_export_logs(failures: _ExportFailures, add: bool) -> None:
    for name in EXPORT_LOGGERS:
        logger = logging.getLogger(name)
        (logger.addFilter if add else logger.removeFilter)(failures)

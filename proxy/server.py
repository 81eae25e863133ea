"""Run the application on a socket, with the HTTP parser limits a cookie proxy needs."""

from __future__ import annotations

import logging

from aiohttp import web

from proxy.app import create_app
from proxy.config import Settings

log = logging.getLogger(__name__)


def handler_args(settings: Settings) -> dict[str, object]:
    return {
        # Chunked session cookies make Cookie headers far longer than aiohttp's 8190 bytes.
        "max_field_size": settings.server.max_field_size,
        "max_line_size": settings.server.max_field_size,
        # Bodies pass through as sent; the upstream decodes them, not the proxy.
        "auto_decompress": False,
    }


def run(settings: Settings) -> None:
    app = create_app(settings)
    log.info(
        "listening on %s:%d, forwarding to %s (%s mode)",
        settings.listen.host,
        settings.listen.port,
        settings.upstream.url,
        settings.auth.mode,
    )
    web.run_app(
        app,
        host=settings.listen.host,
        port=settings.listen.port,
        handler_args=handler_args(settings),
        shutdown_timeout=settings.server.shutdown_timeout,
        access_log=None,
        print=None,
    )

"""Run the proxy: listeners, HTTP parser limits, graceful shutdown, worker processes.

SIGTERM (what Kubernetes sends before it kills a pod): readiness turns off, the
listeners close, requests in flight get ``server.shutdown_timeout`` seconds to finish,
then the process exits 0. With ``server.workers: N`` a supervisor starts N processes that
each bind the port with SO_REUSEPORT, and passes SIGTERM on to them. With the cookie
store it first makes a private directory (0700) in which the workers coordinate their
refreshes (proxy.file_refresh), and removes it once they are gone.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from proxy import __version__
from proxy.app import CLIENTS, METRICS, RELOAD, create_app, create_management_app
from proxy.config import CookieStore, Listen, OAuth2Mode, Secret, Settings
from proxy.crypto.keys import generate_key
from proxy.http.connection_cap import ConnectionCap, default_cap
from proxy.http.connections import GuardedSite, protocol_factory
from proxy.ops import log as log_setup
from proxy.ops.reload import Loader, Reloads
from proxy.ops.signals import forward_signals, reload_on_sighup, until_signalled

log = logging.getLogger(__name__)


def handler_args(settings: Settings) -> dict[str, Any]:
    return {
        # Chunked session cookies make Cookie headers far longer than aiohttp's 8190 bytes.
        "max_field_size": settings.server.max_field_size,
        "max_line_size": settings.server.max_field_size,
        # Bodies pass through as sent; the upstream decodes them, not the proxy.
        "auto_decompress": False,
        # aiohttp's access log would write query strings (the login callback's code);
        # proxy.observe writes one line per request instead.
        "access_log": None,
        "keepalive_timeout": settings.server.keepalive_timeout,
    }


def run(settings: Settings, load: Loader | None = None) -> int:
    settings = with_session_key(settings)
    if settings.server.workers == 1:
        _use_uvloop()
        asyncio.run(serve(settings, load=load))
        return 0
    return supervise(settings, load)


def with_session_key(settings: Settings) -> Settings:
    """On a developer machine without keys: one throw-away key, shared by all workers."""
    if not isinstance(settings.mode, OAuth2Mode) or settings.session.keys or not settings.is_local:
        return settings
    log.warning(
        "no session.keys configured: using a throw-away key; sessions end when the proxy "
        "stops (create a key with 'sipgate-auth-proxy generate-key')"
    )
    session = msgspec.structs.replace(settings.session, keys=[Secret(generate_key())])
    return msgspec.structs.replace(settings, session=session)


async def serve(
    settings: Settings,
    reuse_port: bool = False,
    workers_dir: Path | None = None,
    load: Loader | None = None,
) -> None:
    app = create_app(settings, workers_dir)
    runners = await _listen(app, settings, reuse_port)
    log.info(
        "sipgate-auth-proxy %s listening on %s:%d, forwarding to %s (%s mode)",
        __version__,
        settings.listen.host,
        settings.listen.port,
        settings.upstream.url,
        settings.auth.mode,
    )
    reload_on_sighup(Reloads(settings, app[RELOAD], load).reload if load is not None else None)
    await until_signalled()
    app[CLIENTS].stopping = True
    log.info(
        "stopping: finishing requests in flight (at most %.0f s)", settings.server.shutdown_timeout
    )
    for runner in runners:
        await runner.cleanup()
    log.info("stopped")


async def _listen(
    app: web.Application, settings: Settings, reuse_port: bool
) -> list[web.AppRunner]:
    """The main listener and, when configured, the management one, started. Only the main
    one is capped: the probes must answer when it is full."""
    cap = ConnectionCap(settings.server.max_connections or default_cap(), app[METRICS])
    log.info("at most %d connections on the main listener (server.max_connections)", cap.limit)
    listeners: list[tuple[web.Application, Listen, ConnectionCap | None]] = [
        (app, settings.listen, cap)
    ]
    if settings.management.listen is not None:
        listeners.append((create_management_app(app), settings.management.listen, None))
    runners = [_runner(served, settings) for served, _, _ in listeners]
    for runner in runners:
        await runner.setup()
    # What exists now lives as long as the process: out of the collector's sight, a full
    # collection no longer walks some 40,000 start-up objects (20 ms here: a p99 spike).
    gc.collect()
    gc.freeze()
    for runner, (_, listen, capped) in zip(runners, listeners, strict=True):
        assert runner.server is not None
        factory = protocol_factory(runner.server, settings.server, capped, **handler_args(settings))
        await GuardedSite(runner, listen, factory, reuse_port).start()
    return runners


def _runner(app: web.Application, settings: Settings) -> web.AppRunner:
    return web.AppRunner(
        app,
        handle_signals=False,
        shutdown_timeout=settings.server.shutdown_timeout,
        **handler_args(settings),
    )


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()


def supervise(settings: Settings, load: Loader | None = None) -> int:
    try:
        workers_dir = _make_workers_dir(settings)
    except OSError as err:
        log.error(
            "server.runtime_dir: cannot create the workers' directory in %s (%s); set "
            "server.runtime_dir to a writable directory or server.workers to 1",
            settings.server.runtime_dir or tempfile.gettempdir(),
            err.strerror or type(err).__name__,
        )
        return 2
    try:
        return _supervise(settings, workers_dir, load)
    finally:
        if workers_dir is not None:
            shutil.rmtree(workers_dir, ignore_errors=True)


def _make_workers_dir(settings: Settings) -> Path | None:
    """The cookie store's refreshes need a place all workers see; Redis has its own."""
    if not isinstance(settings.mode, OAuth2Mode) or not isinstance(settings.store, CookieStore):
        return None
    parent = settings.server.runtime_dir
    return Path(tempfile.mkdtemp(prefix="sipgate-proxy-", dir=parent))  # mode 0700


def _supervise(settings: Settings, workers_dir: Path | None, load: Loader | None) -> int:
    import multiprocessing  # imported here: one worker serves in this process, without it

    # fork: workers share the parent's imported code pages (10 instead of 43 MB each)
    # and start in a second; no loop or thread exists yet in the parent.
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_worker, args=(settings, workers_dir, load), name=f"worker-{n}")
        for n in range(settings.server.workers)
    ]
    # Frozen before the fork: the workers' collections then never write to the shared
    # start-up objects, so their pages stay shared instead of being copied.
    gc.freeze()
    for worker in workers:
        worker.start()
    log.info("started %d workers sharing port %d", len(workers), settings.listen.port)

    forward = forward_signals(workers)
    failed = False
    while any(worker.is_alive() for worker in workers):
        for worker in workers:
            worker.join(timeout=0.5)
            if worker.exitcode not in (None, 0) and not failed:
                log.error(
                    "worker %s exited with %s; stopping the others", worker.name, worker.exitcode
                )
                failed = True
                forward(signal.SIGTERM, None)
    return 1 if failed else 0


def _worker(settings: Settings, workers_dir: Path | None, load: Loader | None) -> None:
    log_setup.setup(settings.log.level, settings.log.format)
    _use_uvloop()
    asyncio.run(serve(settings, reuse_port=True, workers_dir=workers_dir, load=load))
    sys.exit(0)

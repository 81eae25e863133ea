"""Revocation without a restart: the client list is replaced when SIGHUP reloads the
configuration, and whenever ``auth.clients_file`` changes (Kubernetes updates a mounted
Secret by swapping its directory's symlink: the file's inode and time change). A file
that does not load keeps the old list, and the log says why (the problems name keys,
never values)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from proxy.auth.clients.gate import ClientGate, known
from proxy.config import Auth, ConfigError, Settings
from proxy.config.clients import all_clients

log = logging.getLogger(__name__)

WATCH_INTERVAL = 2.0  # seconds between looks at clients_file


def from_settings(gate: ClientGate) -> Callable[[Settings], None]:
    """SIGHUP's step: the reloaded configuration's clients (inline and from the file)."""

    def reload(settings: Settings) -> None:
        gate.replace([known(client) for client in settings.clients])
        log.info("clients reloaded: %s", ", ".join(gate.names) or "none")

    return reload


def from_file(auth: Auth, gate: ClientGate) -> Callable[[], None]:
    """The watcher's step: the clients read again (the file's, with the inline ones)."""

    def reload() -> None:
        try:
            clients = all_clients(auth)
        except ConfigError as err:
            problems = "; ".join(str(p) for p in err.problems)
            log.error("clients not reloaded, the old list stays: %s", problems)
            return
        gate.replace([known(client) for client in clients])
        log.info("clients reloaded: %s", ", ".join(gate.names) or "none")

    return reload


def watched(
    path: Path, reload: Callable[[], None], interval: float = WATCH_INTERVAL
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that reloads whenever the file behind ``path`` changes."""

    async def watch(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_watch(path, reload, interval))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return watch


async def _watch(path: Path, reload: Callable[[], None], interval: float) -> None:
    seen = _identity(path)
    while True:
        await asyncio.sleep(interval)
        now = _identity(path)
        if now != seen:
            seen = now
            reload()


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)  # follows the symlink: a swapped directory is a new inode
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size

"""Revocation without a restart: the client list is replaced when SIGHUP reloads the
configuration, and whenever ``auth.clients_file`` changes (Kubernetes updates a mounted
Secret by swapping its directory's symlink: the file's inode and time change). A file
that does not load keeps the old list, and the log says why (the problems name keys,
never values). The file is read once it has stopped changing for one look, so a file
written in place is not read half-written."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from aiohttp import web

from proxy.auth.clients.gate import ClientGate, known
from proxy.config import Auth, Client, ConfigError, Settings
from proxy.config.clients import all_clients

log = logging.getLogger(__name__)

WATCH_INTERVAL = 2.0  # seconds between looks at clients_file


class ClientList:
    """Where the gate's clients come from: the configuration SIGHUP loaded last (so a
    file change never brings back a client SIGHUP removed) and its clients_file."""

    def __init__(self, auth: Auth, gate: ClientGate) -> None:
        self._auth = auth
        self._gate = gate

    def from_settings(self, settings: Settings) -> None:
        """SIGHUP's step: the reloaded configuration's clients (inline and from the file)."""
        self._auth = settings.auth
        self._replace(settings.clients)

    def from_file(self) -> None:
        """The watcher's step: the clients read again (the file's, with the inline ones)."""
        try:
            clients = all_clients(self._auth)
        except ConfigError as err:
            problems = "; ".join(str(p) for p in err.problems)
            log.error("clients not reloaded, the old list stays: %s", problems)
            return
        self._replace(clients)

    def _replace(self, clients: Sequence[Client]) -> None:
        self._gate.replace([known(client) for client in clients])
        log.info("clients reloaded: %s", ", ".join(self._gate.names) or "none")


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
        if now == seen:
            continue
        await asyncio.sleep(interval)  # still changing: look again before reading
        if _identity(path) != now:
            continue
        seen = now
        try:
            reload()
        except Exception as err:  # the watcher must outlive any one bad read
            log.error("clients not reloaded, the old list stays: %s", type(err).__name__)


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)  # follows the symlink: a swapped directory is a new inode
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size

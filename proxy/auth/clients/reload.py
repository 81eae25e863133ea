"""Revocation without a restart: the client list is replaced when SIGHUP reloads the
configuration, and whenever ``auth.clients_file`` changes (Kubernetes updates a mounted
Secret by swapping its directory's symlink: the file's inode and time change). A file
that does not load keeps the old list, and the log says why (the problems name keys,
never values). The file is read once it has stopped changing for one look, so a file
written in place is not read half-written; it is read in a thread, so a large file
never holds up requests or probes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

from aiohttp import web

from proxy.auth.clients.gate import ClientGate, KnownClient, known
from proxy.config import Auth, ConfigError, Settings
from proxy.config.clients import all_clients
from proxy.ops.reload import Live

log = logging.getLogger(__name__)

# Seconds between looks at clients_file: a change applies after one to two looks (the
# second shows it has stopped changing), within 1 s as docs/clients.md says. A look is one stat.
WATCH_INTERVAL = 0.25
LOGGED_NAMES = 20  # a long list is named by its first clients and counted


class ClientList:
    """Where the gate's clients come from: the configuration SIGHUP loaded last (so a
    file change never brings back a client SIGHUP removed) and its clients_file."""

    def __init__(self, auth: Auth, gate: ClientGate) -> None:
        self._auth = auth
        self._gate = gate
        self._sighups = 0  # a file read that a SIGHUP overtook is not applied
        self._reread: asyncio.Task[None] | None = None

    @property
    def path(self) -> Path | None:
        return self._auth.clients_file

    def live(self) -> Live:
        """SIGHUP's step: the reloaded clients (inline and from the file) and anonymous."""
        return Live(frozenset({"auth.clients", "auth.clients_file", "auth.anonymous"}), self._apply)

    def _apply(self, settings: Settings) -> None:
        clients = [known(client) for client in settings.clients]  # all built before any change
        self._auth, self._sighups = settings.auth, self._sighups + 1
        self._gate.anonymous = settings.auth.anonymous == "allow"
        self._replace(clients)
        if settings.auth.clients_file is not None:
            # SIGHUP read the file before this moment, and the watcher may have applied a
            # newer read meanwhile (a Secret updated during the reload): read it once more,
            # so the file as it is now wins, never the older read (a revoked client back).
            self._reread = asyncio.get_running_loop().create_task(self.from_file())

    async def settled(self) -> None:
        """Until the read that the last SIGHUP started has been applied."""
        if self._reread is not None:
            await self._reread

    async def from_file(self) -> None:
        """The watcher's step: the clients read again (the file's, with the inline ones)."""
        auth, sighups = self._auth, self._sighups
        try:
            clients = await asyncio.to_thread(_read, auth)
        except ConfigError as err:
            problems = "; ".join(str(p) for p in err.problems)
            log.error("clients not reloaded, the old list stays: %s", problems)
            return
        if sighups == self._sighups:  # else SIGHUP applied a newer read meanwhile
            self._replace(clients)

    def _replace(self, clients: Sequence[KnownClient]) -> None:
        self._gate.replace(clients)
        names = self._gate.names
        more = f" and {len(names) - LOGGED_NAMES} more" if len(names) > LOGGED_NAMES else ""
        log.info("clients reloaded: %s%s", ", ".join(names[:LOGGED_NAMES]) or "none", more)


def _read(auth: Auth) -> list[KnownClient]:
    return [known(client) for client in all_clients(auth)]


def watched(
    source: ClientList, interval: float = WATCH_INTERVAL
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that reloads whenever the file behind the source's path changes."""

    async def watch(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_watch(lambda: source.path, source.from_file, interval))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return watch


async def _watch(
    path: Callable[[], Path | None], reload: Callable[[], Awaitable[None]], interval: float
) -> None:
    seen = _identity(path())
    while True:
        await asyncio.sleep(interval)
        now = _identity(path())
        if now == seen:
            continue
        await asyncio.sleep(interval)  # still changing: look again before reading
        if _identity(path()) != now:
            continue
        seen = now
        try:
            await reload()
        except Exception as err:  # the watcher must outlive any one bad read
            log.error("clients not reloaded, the old list stays: %s", type(err).__name__)


def _identity(path: Path | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        stat = os.stat(path)  # follows the symlink: a swapped directory is a new inode
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size

"""The process's signals: SIGTERM and SIGINT stop it (a supervisor passes them to its
workers), SIGHUP loads the configuration again and applies what can change without a
restart."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from proxy.config import ConfigError, Settings

log = logging.getLogger(__name__)

Loader = Callable[[], Settings]  # the configuration read again from its source


def reload_on_sighup(reload: tuple[Callable[[Settings], None], ...], load: Loader | None) -> None:
    """SIGHUP loads the configuration again and hands it to what can change without a
    restart (session keys, the client list); requests in flight go on. A configuration
    that does not load changes nothing, and the log says why."""

    def on_sighup() -> None:
        if load is None:
            log.warning("SIGHUP: no configuration source to reload from; nothing changed")
            return
        try:
            settings = load()
        except ConfigError as err:
            problems = "; ".join(str(p) for p in err.problems)
            log.error("SIGHUP: configuration not reloaded, nothing changed: %s", problems)
            return
        for step in reload:
            step(settings)

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_sighup)


async def until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def forward_signals(workers: list[Any]) -> Callable[[int, object], None]:
    """SIGTERM and SIGINT stop the workers (each finishes its requests in flight); SIGHUP
    makes each reload. Returns the stopping handler, for a worker that died."""

    def forward(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                worker.terminate()

    def forward_hangup(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward_hangup)
    return forward

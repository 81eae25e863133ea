"""The process's signals: SIGTERM and SIGINT stop it (a supervisor passes them to its
workers), SIGHUP loads the configuration again and applies what can change without a
restart."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


def reload_on_sighup(reload: Callable[[], Coroutine[Any, Any, None]] | None) -> None:
    """SIGHUP runs ``reload`` (``ops.reload.Reloads``) as a task: requests in flight and
    new ones go on while the configuration is read."""
    tasks: set[asyncio.Task[None]] = set()  # held until done: the loop keeps weak ones

    def on_sighup() -> None:
        if reload is None:
            log.warning("SIGHUP: no configuration source to reload from; nothing changed")
            return
        task = asyncio.create_task(reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

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

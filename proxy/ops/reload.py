"""SIGHUP's work: the configuration loaded again off the event loop (files may be large
or slow: requests and probes go on), applied by each part that can change while the
proxy serves, and one warning naming every other changed setting."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from proxy.config import ConfigError, Settings
from proxy.config.changes import changed_keys

log = logging.getLogger(__name__)

Loader = Callable[[], Settings]  # the configuration read again from its source


@dataclass(frozen=True)
class Live:
    """A part that takes a reloaded configuration while the proxy serves, and the
    settings (dotted keys) it applies."""

    keys: frozenset[str]
    apply: Callable[[Settings], None]


class Reloads:
    def __init__(self, running: Settings, live: tuple[Live, ...], load: Loader) -> None:
        self._started = running  # a setting that needs a restart keeps this value
        self._applied = running
        self._live = live
        self._live_keys = frozenset[str]().union(*(part.keys for part in live))
        self._load = load
        self._one_at_a_time = asyncio.Lock()  # applied in the order the signals came

    async def reload(self) -> None:
        """A configuration that does not load changes nothing, and the log says why."""
        async with self._one_at_a_time:
            try:
                settings = await asyncio.to_thread(self._load)
            except ConfigError as err:
                problems = "; ".join(str(p) for p in err.problems)
                log.error("SIGHUP: configuration not reloaded, nothing changed: %s", problems)
                return
            except Exception as err:  # e.g. MemoryError: the proxy goes on as it was
                log.error("SIGHUP: configuration not reloaded: %s", type(err).__name__)
                return
            self._apply(settings)

    def _apply(self, settings: Settings) -> None:
        for part in self._live:
            part.apply(settings)
        applied = [k for k in changed_keys(self._applied, settings) if k in self._live_keys]
        restart = [k for k in changed_keys(self._started, settings) if k not in self._live_keys]
        self._applied = settings
        if applied:
            log.info("SIGHUP: applied %s", ", ".join(applied))
        if restart:
            log.warning("SIGHUP: needs a restart: %s", ", ".join(restart))

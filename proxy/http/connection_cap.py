"""A cap on the main listener's open connections (``server.max_connections``).

Idle, silent or slow connections each hold a descriptor; once the process has none left,
every listener drops new connections, the management one and its probes too, and a
liveness probe restarts a pod an attacker merely holds. The cap refuses connections
beyond it at once and leaves descriptors for the management listener, the upstream
connections and Redis.
"""

from __future__ import annotations

import asyncio
import resource
from typing import cast

from proxy.ops.metrics import Metrics

# Descriptors kept back from the default cap: the process's own files, the management
# listener's connections, Redis. Each capped connection may hold an upstream one too.
RESERVED_DESCRIPTORS = 64
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: 29\r\n\r\ntoo many connections to proxy"
)


def default_cap() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(1, (soft - RESERVED_DESCRIPTORS) // 2)


class ConnectionCap:
    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self._metrics = metrics
        self._open = 0

    def admit(self) -> bool:
        """Counted from the accept: asyncio accepts a burst before any connection_made."""
        if self._open >= self.limit:
            self._metrics.connections_refused.inc()
            return False
        self._changed(+1)
        return True

    def release(self) -> None:
        self._changed(-1)

    def _changed(self, step: int) -> None:
        self._open += step
        self._metrics.connections_open.set(self._open)


class Refused(asyncio.Protocol):
    """Beyond the cap: a 503 and the descriptor freed at once. The request is not read, so
    a client that sent one before the close may see a reset instead (holding refused
    connections open to drain them would spend the descriptors the cap protects)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writer = cast(asyncio.WriteTransport, transport)  # uvloop's is no asyncio subclass
        writer.write(REFUSAL)
        writer.close()

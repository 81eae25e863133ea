"""The reference relay for the streaming scenario: how fast can bytes cross *any* process?

It speaks no HTTP, checks nothing and injects no header: it accepts a connection, opens
one to the upstream and moves bytes both ways until either side closes (uvloop
protocols, ``data_received`` → ``transport.write`` with flow control). Every byte is
copied into and out of the process, as in any Python (or Apache mod_proxy) relay and as
in the proxy, which copies every body through user space: this is the ceiling its
cleartext 1 GiB transfers are compared against.

Usage: python bench/relays.py PORT UPSTREAM_PORT
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast


class _Half(asyncio.Protocol):
    """One side of a copy relay: what arrives is written to the other side."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Half | None = None
        self.early: list[bytes] = []  # data before the other side is connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.early.append(data)

    # Back-pressure: while the other side cannot take more, stop reading this one.
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


class _ClientHalf(_Half):
    def __init__(self, upstream_port: int) -> None:
        super().__init__()
        self._upstream_port = upstream_port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, upstream = await loop.create_connection(_Half, "127.0.0.1", self._upstream_port)
        upstream.peer, self.peer = self, upstream
        assert upstream.transport is not None
        for data in self.early:
            upstream.transport.write(data)
        self.early.clear()


async def serve_copy(port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _ClientHalf(upstream_port), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    import uvloop

    port, upstream_port = int(sys.argv[1]), int(sys.argv[2])
    uvloop.run(serve_copy(port, upstream_port))


if __name__ == "__main__":
    main()

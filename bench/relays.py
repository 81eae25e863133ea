"""Reference relays for the streaming scenario: how fast can bytes cross *any* process?

Neither speaks HTTP, checks anything or injects a header: each accepts a connection,
opens one to the upstream and moves bytes both ways until either side closes. They
measure the ceiling that the proxy's 1 GiB transfers are compared against.

- ``copy``: uvloop protocols, ``data_received`` → ``transport.write`` with flow control.
  Every byte is copied into and out of the process, as in any Python (or Apache
  mod_proxy) relay: the floor cost of a user-space body path.
- ``splice``: splice(2) from socket to pipe to socket (HAProxy's "option splice-*"):
  the bytes never enter the process. The proxy does the same for large answers of known
  length when both sides are cleartext (proxy/splice.py); a TLS upstream such as
  api.sipgate.com rules it out, and then the copy relay is the ceiling.

Usage: python bench/relays.py copy|splice PORT UPSTREAM_PORT
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import sys
import threading
from typing import cast

PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ on Python >= 3.10, spelled out for mypy


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


def _pump(source: socket.socket, sink: socket.socket) -> None:
    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_SIZE)
        while True:
            moved = os.splice(source.fileno(), write_end, PIPE_SIZE)
            if moved == 0:
                break
            while moved:
                moved -= os.splice(read_end, sink.fileno(), moved)
    except OSError:
        pass  # either side went away: the relay ends, like the copy relay
    finally:
        os.close(read_end)
        os.close(write_end)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _splice_connection(client: socket.socket, upstream_port: int) -> None:
    with client, socket.create_connection(("127.0.0.1", upstream_port)) as upstream:
        upload = threading.Thread(target=_pump, args=(client, upstream), daemon=True)
        upload.start()
        _pump(upstream, client)
        upload.join()


def serve_splice(port: int, upstream_port: int) -> None:
    with socket.create_server(("127.0.0.1", port)) as listener:
        while True:
            client, _ = listener.accept()
            threading.Thread(
                target=_splice_connection, args=(client, upstream_port), daemon=True
            ).start()


def main() -> None:
    mode, port, upstream_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if mode == "copy":
        import uvloop

        uvloop.run(serve_copy(port, upstream_port))
    elif mode == "splice":
        serve_splice(port, upstream_port)
    else:
        raise SystemExit(f"unknown mode {mode!r}: copy or splice")


if __name__ == "__main__":
    main()

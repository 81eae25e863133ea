"""Zero-copy body relay between two cleartext sockets with splice(2) (Linux).

A large body of known length moves socket → pipe → socket inside the kernel instead of
being copied into the process, through aiohttp's parser and StreamReader, and copied
out again. The caller hands over two sockets whose HTTP framing it has settled: nothing
may be buffered for them in user space, and the connection whose parser is bypassed
must be closed afterwards, never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import sys
from typing import Any

from aiohttp import StreamReader
from aiohttp.base_protocol import BaseProtocol

# Below this a body is cheaper to copy than to set up a pipe and watchers for.
MIN_BYTES = 1 << 20
AVAILABLE = sys.platform == "linux" and hasattr(os, "splice")

_PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ, _F_GETPIPE_SZ = 1031, 1032  # fcntl's names exist on Linux only


class SourceFailed(ConnectionError):
    """The source closed or failed before the whole body arrived."""


class SinkFailed(ConnectionError):
    """The sink (the receiving peer) went away."""


def cleartext_socket_fd(transport: Any) -> int | None:
    """The file descriptor behind a plain TCP/Unix stream transport, else None (TLS,
    closing, or not a socket): splice moves raw bytes, so TLS rules it out."""
    if not AVAILABLE or transport is None or transport.is_closing():
        return None
    if transport.get_extra_info("ssl_object") is not None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None or sock.type != socket.SOCK_STREAM:
        return None
    fd: int = sock.fileno()
    return fd if fd >= 0 else None


def take_over(body: StreamReader, protocol: BaseProtocol) -> tuple[bytes, bool]:
    """Stop aiohttp reading the socket behind ``body``; return what it had buffered and
    whether the rest of the body is now ours to move.

    When it is not (the body is already complete, or bytes went where we cannot see
    them), aiohttp reads on as before and the caller copies: it must still pass on the
    returned bytes first.
    """
    head, paused = bytearray(), False
    while not body.is_eof():
        # Taking resumes aiohttp's reading when its flow control had paused it, which
        # may feed more bytes at once: repeat until nothing arrived while paused.
        chunk = body.read_nowait()
        head += chunk
        if body.is_eof():
            break
        protocol.pause_reading()
        paused = True
        if not chunk:
            break
    ours = paused and not body.is_eof() and body.total_bytes == len(head)
    if paused and not ours:
        protocol.resume_reading()
    return bytes(head), ours


async def relay(source_fd: int, sink_fd: int, length: int, source_timeout: float | None) -> None:
    """Move exactly ``length`` bytes from ``source_fd`` to ``sink_fd``.

    Raises SourceFailed (early end or error), SinkFailed, or TimeoutError when the source
    stays silent for ``source_timeout`` seconds. A slow sink is waited for without limit:
    that is back-pressure, as on the copying path.
    """
    # Our own descriptors: if a transport closes its socket meanwhile, the number could
    # be reused by an unrelated connection, but a duplicate keeps pointing at this one.
    source, sink = os.dup(source_fd), os.dup(sink_fd)
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):  # a smaller pipe (the default 64 KiB) works too
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, _PIPE_BYTES)
        capacity = fcntl.fcntl(write_end, _F_GETPIPE_SZ)
        await _pump(source, sink, read_end, write_end, capacity, length, source_timeout)
    finally:
        for fd in (read_end, write_end, source, sink):
            os.close(fd)


async def _pump(
    source: int,
    sink: int,
    read_end: int,
    write_end: int,
    capacity: int,
    length: int,
    source_timeout: float | None,
) -> None:
    loop = asyncio.get_running_loop()
    remaining, in_pipe = length, 0
    while remaining or in_pipe:
        if remaining and in_pipe < capacity:
            moved = _splice(source, write_end, min(remaining, capacity - in_pipe), SourceFailed)
            if moved == 0:
                raise SourceFailed("the source closed early")
            if moved is not None:
                remaining -= moved
                in_pipe += moved
        if in_pipe:
            moved = _splice(read_end, sink, in_pipe, SinkFailed)
            if moved:
                in_pipe -= moved
                continue
            # The pipe holds data the sink cannot take yet: wait for the sink only, so a
            # full pipe never makes us spin on a readable source.
            await _ready(loop, sink, writable=True, patience=None)
        elif remaining:
            await _ready(loop, source, writable=False, patience=source_timeout)


def _splice(src: int, dst: int, count: int, failure: type[Exception]) -> int | None:
    """Bytes moved; None when the call would block."""
    try:
        return os.splice(src, dst, count, flags=_SPLICE_F_MOVE | _SPLICE_F_NONBLOCK)
    except BlockingIOError:
        return None
    except OSError as err:
        raise failure(err.strerror or "splice failed") from None


_SPLICE_F_MOVE, _SPLICE_F_NONBLOCK = 1, 2


async def _ready(
    loop: asyncio.AbstractEventLoop, fd: int, writable: bool, patience: float | None
) -> None:
    waiter: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    if writable:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        async with asyncio.timeout(patience):
            await waiter
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)

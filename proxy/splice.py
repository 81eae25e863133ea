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


class Channel:
    """Everything one relay owns: duplicates of both sockets and a pipe between them.

    Made before anything is taken over, while the transports' descriptors are known to
    be theirs: a duplicate keeps pointing at its connection even if the transport
    closes meanwhile and the number is reused. Failing to make one (EMFILE, EBADF)
    raises OSError with nothing taken, so the caller just copies.
    """

    def __init__(self, source_fd: int, sink_fd: int) -> None:
        self._fds: list[int] = []
        try:
            self.source = self._own(os.dup(source_fd))
            self.sink = self._own(os.dup(sink_fd))
            self.read_end, self.write_end = (
                self._own(fd) for fd in os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            )
            with contextlib.suppress(OSError):  # the default 64 KiB pipe works too
                fcntl.fcntl(self.write_end, _F_SETPIPE_SZ, _PIPE_BYTES)
            self.capacity: int = fcntl.fcntl(self.write_end, _F_GETPIPE_SZ)
        except OSError:
            self.close()
            raise

    def _own(self, fd: int) -> int:
        self._fds.append(fd)
        return fd

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.pop())

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def relay(channel: Channel, length: int, source_timeout: float | None) -> None:
    """Move exactly ``length`` bytes from the channel's source to its sink.

    Raises SourceFailed (early end or error), SinkFailed, or TimeoutError when the source
    stays silent for ``source_timeout`` seconds. A slow sink is waited for without limit:
    that is back-pressure, as on the copying path.
    """
    loop = asyncio.get_running_loop()
    source, sink, capacity = channel.source, channel.sink, channel.capacity
    remaining, in_pipe, since_yield, idle_wakeups = length, 0, 0, 0
    while remaining or in_pipe:
        if remaining and in_pipe < capacity:
            count = min(remaining, capacity - in_pipe)
            moved = _splice(source, channel.write_end, count, SourceFailed)
            if moved == 0:
                raise SourceFailed("the source closed early")
            if moved is not None:
                remaining -= moved
                in_pipe += moved
                since_yield += moved
                idle_wakeups = 0
        if in_pipe:
            moved = _splice(channel.read_end, sink, in_pipe, SinkFailed)
            if moved:
                in_pipe -= moved
                if since_yield >= _YIELD_EVERY:  # both sides keep up: let others run
                    since_yield = 0
                    await asyncio.sleep(0)
                continue
            # The pipe holds data the sink cannot take yet: wait for the sink only, so a
            # full pipe never makes us spin on a readable source.
            await _ready(loop, sink, writable=True, patience=None)
        elif remaining:
            if idle_wakeups >= _MAX_IDLE_WAKEUPS:
                # Readable yet nothing to splice: TCP urgent data stops splice(2) at its
                # mark while epoll keeps reporting the socket readable. Not a body.
                raise SourceFailed("the source is readable but yields nothing")
            await _ready(loop, source, writable=False, patience=source_timeout)
            idle_wakeups += 1


# Each wake-up for a readable source that then moves nothing counts; one or two happen
# (a wake-up racing the data), a hundred in a row do not.
_MAX_IDLE_WAKEUPS = 100
_YIELD_EVERY = 4 << 20


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

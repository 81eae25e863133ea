"""A TCP relay that delivers every answer in two pieces with a pause between them.

On loopback a 4 KB token answer arrives in one read; from login.sipgate.com it comes in
several TCP segments or TLS records. Put this relay in front of the test IdP and the
proxy sees what production sees: a body whose second half arrives later.
"""

from __future__ import annotations

import asyncio
import contextlib


class SplitRelay:
    def __init__(self, target_port: int, pause: float = 0.05) -> None:
        self._target_port = target_port
        self._pause = pause
        self._server: asyncio.Server | None = None
        self.split_writes = 0  # answers (reads from the target) delivered in two pieces

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> SplitRelay:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target_reader, target_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        to_target = asyncio.create_task(self._pipe(reader, target_writer, split=False))
        to_client = asyncio.create_task(self._pipe(target_reader, writer, split=True))
        await asyncio.wait({to_target, to_client}, return_when=asyncio.FIRST_COMPLETED)
        for task in (to_target, to_client):
            task.cancel()
        for stream in (writer, target_writer):
            stream.close()
            with contextlib.suppress(ConnectionError):
                await stream.wait_closed()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, split: bool
    ) -> None:
        while data := await reader.read(65536):
            if split and len(data) > 1:
                half = len(data) // 2
                writer.write(data[:half])
                await writer.drain()
                await asyncio.sleep(self._pause)
                self.split_writes += 1
                data = data[half:]
            writer.write(data)
            await writer.drain()
        writer.write_eof()

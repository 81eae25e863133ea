"""Upload sink for the streaming benchmark: reads a whole request body, then answers.

nginx cannot be the sink: for ``return 200`` it answers *before* it has read the body
and discards the rest in the background, so an upload would look finished while bytes
are still in flight. This sink reads every byte first (Content-Length or chunked), then
answers ``200 {"received": N}``. It parses nothing but the head and chunk sizes and never
copies the payload, so on loopback it is far faster than anything it measures.

Usage: python bench/sink.py PORT
"""

from __future__ import annotations

import asyncio
import sys

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]

MAX_HEAD = 64 * 1024


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.mode = "head"  # head | length | chunk-size | chunk-data | chunk-crlf | trailer
        self.remaining = 0
        self.received = 0
        self.line = b""
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are no asyncio.Transport subclass, but have its methods
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        view = memoryview(data)
        pos, size = 0, len(data)
        while pos < size:
            if self.mode == "head":
                pos = self._head(data, pos)
            elif self.mode in ("length", "chunk-data"):
                take = min(self.remaining, size - pos)
                pos += take
                self.remaining -= take
                self.received += take
                if self.remaining == 0:
                    if self.mode == "length":
                        self._answer()
                    else:
                        self.mode, self.line = "chunk-crlf", b""
            else:  # a line: chunk size, the CRLF after chunk data, or a trailer line
                end = data.find(b"\n", pos)
                if end < 0:
                    self.line += bytes(view[pos:])
                    if len(self.line) > MAX_HEAD:
                        self._fail()
                    return
                line, pos = (self.line + bytes(view[pos:end])).strip(), end + 1
                self.line = b""
                self._line(line)

    def _head(self, data: bytes, pos: int) -> int:
        self.head += data[pos:]
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD:
                self._fail()
            return len(data)
        rest_start = len(data) - (len(self.head) - (end + 4))
        head, self.head = self.head[:end].decode("latin-1"), b""
        fields = {}
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        self.keep_alive = fields.get("connection", "").lower() != "close"
        self.received = 0
        if "chunked" in fields.get("transfer-encoding", "").lower():
            self.mode, self.line = "chunk-size", b""
        else:
            self.remaining = int(fields.get("content-length", "0") or 0)
            self.mode = "length"
            if self.remaining == 0:
                self._answer()
        return rest_start

    def _line(self, line: bytes) -> None:
        if self.mode == "chunk-size":
            self.remaining = int(line.split(b";", 1)[0], 16)
            self.mode = "chunk-data" if self.remaining else "trailer"
        elif self.mode == "chunk-crlf":
            self.mode = "chunk-size"
        elif self.mode == "trailer" and not line:
            self._answer()

    def _answer(self) -> None:
        assert self.transport is not None
        body = b'{"received": %d}' % self.received
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.mode = "head"
        if not self.keep_alive:
            self.transport.close()

    def _fail(self) -> None:
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        self.transport.close()


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Sink, "127.0.0.1", port, backlog=1024)
    print(f"READY {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if uvloop is not None:
        uvloop.install()
    asyncio.run(main(int(sys.argv[1])))

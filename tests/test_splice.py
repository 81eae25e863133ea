"""Large bodies of known length move kernel-side with splice(2) (proxy/splice.py).

The relay itself against real socket pairs, then the proxy end to end against a real
upstream over loopback TCP: bytes arrive exact (SHA-256) both ways, the splice path was
really taken, failures on either side cut or refuse cleanly, and no connection whose
parser was bypassed is ever reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy import splice
from tests.conftest import ProxyFactory

pytestmark = pytest.mark.skipif(not splice.AVAILABLE, reason="splice(2) is Linux-only")

ServerFactory = Callable[..., Any]
SIZE = 3 * splice.MIN_BYTES + 12_345  # odd, so no chunk boundary lines up by luck
BODY = os.urandom(SIZE)
DIGEST = hashlib.sha256(BODY).hexdigest()


# --- the relay on its own ------------------------------------------------------------


@contextlib.contextmanager
def socket_pairs() -> Iterator[tuple[socket.socket, socket.socket, socket.socket, socket.socket]]:
    """(source writer, source reader, sink writer, sink reader), non-blocking ends."""
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    for s in (b, c):
        s.setblocking(False)
    try:
        yield a, b, c, d
    finally:
        for s in (a, b, c, d):
            s.close()


async def read_exactly(sock: socket.socket, count: int) -> bytes:
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    data = bytearray()
    while len(data) < count:
        data += await loop.sock_recv(sock, count - len(data))
    return bytes(data)


async def test_relay_moves_exactly_the_length_and_leaves_the_rest() -> None:
    with socket_pairs() as (source_in, source, sink, sink_out):
        payload, trailer = os.urandom(2 * splice.MIN_BYTES + 7), b"NEXT MESSAGE"
        loop = asyncio.get_running_loop()
        source_in.setblocking(False)
        feeding = loop.create_task(loop.sock_sendall(source_in, payload + trailer))
        received = loop.create_task(read_exactly(sink_out, len(payload)))
        with splice.Channel(source.fileno(), sink.fileno()) as channel:
            await splice.relay(channel, len(payload), 5)
        assert await received == payload
        await feeding
        assert source.recv(100) == trailer  # the next message is not ours to move


async def test_relay_reports_a_source_that_ends_early() -> None:
    with socket_pairs() as (source_in, source, sink, sink_out):
        source_in.sendall(b"x" * 1000)
        source_in.shutdown(socket.SHUT_WR)
        drain = asyncio.get_running_loop().create_task(read_exactly(sink_out, 1000))
        with splice.Channel(source.fileno(), sink.fileno()) as channel:
            with pytest.raises(splice.SourceFailed):
                await splice.relay(channel, 5000, 5)
        assert await drain == b"x" * 1000


async def test_relay_reports_a_sink_that_went_away() -> None:
    with socket_pairs() as (source_in, source, sink, sink_out):
        sink_out.close()
        source_in.sendall(b"y" * 1000)
        with splice.Channel(source.fileno(), sink.fileno()) as channel:
            with pytest.raises(splice.SinkFailed):
                await splice.relay(channel, 5000, 5)


async def test_relay_gives_up_on_a_silent_source() -> None:
    with socket_pairs() as (_source_in, source, sink, _sink_out):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with splice.Channel(source.fileno(), sink.fileno()) as channel:
            with pytest.raises(TimeoutError):
                await splice.relay(channel, 5000, 0.3)
        assert loop.time() - started < 3


async def test_relay_leaves_no_descriptor_behind() -> None:
    before = len(os.listdir("/proc/self/fd"))
    with socket_pairs() as (source_in, source, sink, _sink_out):
        source_in.close()
        with splice.Channel(source.fileno(), sink.fileno()) as channel:
            with pytest.raises(splice.SourceFailed):
                await splice.relay(channel, 10, 5)
        # A channel that cannot be made (here: no such descriptor) leaves nothing open.
        with pytest.raises(OSError, match="Bad file descriptor"):
            splice.Channel(source.fileno(), 1_000_000)
    assert len(os.listdir("/proc/self/fd")) == before


async def test_relay_refuses_a_source_that_is_readable_but_yields_nothing() -> None:
    # TCP urgent data stops splice(2) at its mark while epoll keeps reporting the socket
    # readable: without a bound the relay would spin on it, one CPU at 100 %, forever.
    sink, sink_out = socket.socketpair()
    with (
        sink,
        sink_out,
        socket.create_server(("127.0.0.1", 0)) as listener,
        socket.create_connection(listener.getsockname()) as source_in,
        listener.accept()[0] as source,
    ):
        source.setblocking(False)
        sink.setblocking(False)
        source_in.send(b"!", socket.MSG_OOB)
        source_in.send(b"after the mark")
        await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with splice.Channel(source.fileno(), sink.fileno()) as channel:
            with pytest.raises(splice.SourceFailed):
                await splice.relay(channel, splice.MIN_BYTES, None)
        assert loop.time() - started < 2


def test_tls_and_closing_transports_are_never_spliced() -> None:
    class Transport:
        def __init__(self, extra: dict[str, object], closing: bool = False) -> None:
            self._extra, self._closing = extra, closing

        def is_closing(self) -> bool:
            return self._closing

        def get_extra_info(self, name: str) -> object:
            return self._extra.get(name)

    with socket.socket() as sock:
        assert splice.cleartext_socket_fd(Transport({"socket": sock})) == sock.fileno()
        assert splice.cleartext_socket_fd(Transport({"socket": sock, "ssl_object": 1})) is None
        assert splice.cleartext_socket_fd(Transport({"socket": sock}, closing=True)) is None
    assert splice.cleartext_socket_fd(Transport({})) is None
    assert splice.cleartext_socket_fd(None) is None


# --- through the proxy ---------------------------------------------------------------


class Upstream:
    def __init__(self) -> None:
        self.received: list[tuple[int, str]] = []  # (length, sha256) of each upload
        self.peers: set[tuple[str, int]] = set()  # client ports seen: new connections


def upstream_app(seen: Upstream) -> web.Application:
    async def download(request: web.Request) -> web.StreamResponse:
        seen.peers.add(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        response = web.StreamResponse()
        response.content_length = SIZE
        await response.prepare(request)
        view = memoryview(BODY)
        for start in range(0, SIZE, 300_000):  # several writes: a realistic stream
            await response.write(view[start : start + 300_000])
        await response.write_eof()
        return response

    async def half_sent(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = SIZE
        await response.prepare(request)
        await response.write(BODY[: SIZE // 2])
        return response

    async def cut(request: web.Request) -> web.StreamResponse:
        response = await half_sent(request)
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return response

    async def stall(request: web.Request) -> web.StreamResponse:
        response = await half_sent(request)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)
        return response

    async def upload(request: web.Request) -> web.Response:
        digest, length = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            length += len(chunk)
        seen.received.append((length, digest.hexdigest()))
        return web.json_response({"length": length, "sha256": digest.hexdigest()})

    app = web.Application(client_max_size=SIZE * 2)
    app.router.add_get("/download", download)
    app.router.add_get("/cut", cut)
    app.router.add_get("/stall", stall)
    app.router.add_post("/upload", upload)
    return app


@pytest.fixture
def relays(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the bytes handed to splice.relay: proof that the splice path was taken."""
    lengths: list[int] = []
    real = splice.relay

    async def counting(channel: splice.Channel, length: int, patience: float | None) -> None:
        lengths.append(length)
        await real(channel, length, patience)

    monkeypatch.setattr(splice, "relay", counting)
    return lengths


@pytest.fixture
async def big_upstream(aiohttp_server: ServerFactory) -> tuple[TestServer, Upstream]:
    seen = Upstream()
    return await aiohttp_server(upstream_app(seen)), seen


@pytest.fixture
async def proxy_url(make_proxy: ProxyFactory, big_upstream: tuple[TestServer, Upstream]) -> str:
    server, _ = big_upstream
    proxy = await make_proxy(
        {
            "SIPGATE_PROXY_UPSTREAM__URL": str(server.make_url("")).rstrip("/"),
            "SIPGATE_PROXY_UPSTREAM__READ_TIMEOUT": "0.5",
        }
    )
    return str(proxy.make_url("")).rstrip("/")


async def test_download_arrives_exact_and_the_client_connection_is_reused(
    proxy_url: str, relays: list[int], big_upstream: tuple[TestServer, Upstream]
) -> None:
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as client:
        for _ in range(2):
            async with client.get(f"{proxy_url}/download") as resp:
                assert resp.status == 200
                assert resp.content_length == SIZE
                assert hashlib.sha256(await resp.read()).hexdigest() == DIGEST
                assert resp.headers.get("Connection", "").lower() != "close"
        async with client.get(f"{proxy_url}/small") as resp:  # the same client connection
            assert resp.status == 404
    assert len(relays) == 2
    assert all(0 < length <= SIZE for length in relays)
    # The upstream connection of a spliced answer is closed, never pooled: two downloads
    # came over two upstream connections.
    assert len(big_upstream[1].peers) == 2


async def test_uploads_are_copied_exact_and_keep_the_connection(
    proxy_url: str, relays: list[int], big_upstream: tuple[TestServer, Upstream]
) -> None:
    # Uploads are never spliced: measured no faster (the direct path already keeps both
    # cores busy), and an upload that bypasses the client connection's parser cannot
    # keep that connection in step when the upstream answers early.
    async with aiohttp.ClientSession() as client:
        async with client.post(
            f"{proxy_url}/upload",
            data=io.BytesIO(BODY),
            headers={"Content-Type": "application/octet-stream"},
        ) as resp:
            assert resp.status == 200
            assert await resp.json() == {"length": SIZE, "sha256": DIGEST}
            assert resp.headers.get("Connection", "").lower() != "close"
    assert big_upstream[1].received == [(SIZE, DIGEST)]
    assert relays == []


async def test_upload_below_the_threshold_is_copied_and_keeps_the_connection(
    proxy_url: str, relays: list[int]
) -> None:
    small = BODY[: splice.MIN_BYTES - 1]
    async with aiohttp.ClientSession() as client:
        async with client.post(f"{proxy_url}/upload", data=small) as resp:
            assert await resp.json() == {
                "length": len(small),
                "sha256": hashlib.sha256(small).hexdigest(),
            }
            assert resp.headers.get("Connection", "").lower() != "close"
    assert relays == []


async def test_upstream_cut_mid_spliced_download_never_looks_complete(
    proxy_url: str, relays: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{proxy_url}/cut") as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
    assert len(relays) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_upstream_stalling_mid_spliced_download_is_cut_after_the_read_timeout(
    proxy_url: str, relays: list[int]
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{proxy_url}/stall") as resp:
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
    assert loop.time() - started < 5
    assert len(relays) == 1


async def test_client_leaving_mid_spliced_download_frees_both_connections(
    proxy_url: str, relays: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(*proxy_url.removeprefix("http://").split(":"))
    writer.write(b"GET /download HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readexactly(64 * 1024)
    writer.transport.abort()
    for _ in range(100):
        if relays:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    # The proxy keeps serving: nothing hangs on the abandoned relay.
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{proxy_url}/download") as resp:
            assert hashlib.sha256(await resp.read()).hexdigest() == DIGEST


async def test_without_splice_large_bodies_are_copied_exact(
    proxy_url: str, relays: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a TLS upstream (api.sipgate.com) gets: no raw socket to splice into.
    monkeypatch.setattr(splice, "cleartext_socket_fd", lambda transport: None)
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{proxy_url}/download") as resp:
            assert hashlib.sha256(await resp.read()).hexdigest() == DIGEST
    assert relays == []

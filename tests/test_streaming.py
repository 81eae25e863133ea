"""200 MB through a real proxy process in each direction: memory stays bounded."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import PAT_ENV
from tests.support.processes import free_port, peak_rss_bytes, reset_peak_rss, running

SIZE = 200 * 1024 * 1024
MAX_GROWTH = 30 * 1024 * 1024


@pytest.fixture(scope="module")
def proxy_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    logs = tmp_path_factory.mktemp("streaming")
    upstream_port, proxy_port = free_port(), free_port()
    env = {
        **PAT_ENV,
        "SIPGATE_PROXY_LISTEN__PORT": str(proxy_port),
        "SIPGATE_PROXY_UPSTREAM__URL": f"http://127.0.0.1:{upstream_port}",
        "SIPGATE_PROXY_UPSTREAM__MAX_BODY_SIZE": str(SIZE * 2),
    }
    upstream_args = ["-m", "tests.support.upstream", str(upstream_port)]
    with (
        running(upstream_args, upstream_port, log=logs / "upstream.log"),
        running(["-m", "proxy"], proxy_port, env, log=logs / "proxy.log") as proxy,
    ):
        yield proxy.pid, proxy_port


async def _warm_up(port: int) -> None:
    async with aiohttp.ClientSession() as client:
        for _ in range(20):
            async with client.post(f"http://127.0.0.1:{port}/v2/x", data=b"w" * 300_000) as r:
                await r.read()
            async with client.get(f"http://127.0.0.1:{port}/__test/download?bytes=300000") as r:
                await r.read()


async def test_200_mb_download_keeps_memory_bounded(proxy_process: tuple[int, int]) -> None:
    pid, port = proxy_process
    await _warm_up(port)
    reset_peak_rss(pid)
    before = peak_rss_bytes(pid)
    received = 0
    async with aiohttp.ClientSession() as client:
        url = f"http://127.0.0.1:{port}/__test/download?bytes={SIZE}"
        async with client.get(url) as resp:
            assert resp.status == 200
            async for chunk in resp.content.iter_chunked(256 * 1024):
                received += len(chunk)
    growth = peak_rss_bytes(pid) - before
    _report("download", before, growth)
    assert received == SIZE
    assert growth < MAX_GROWTH


async def test_200_mb_upload_keeps_memory_bounded(proxy_process: tuple[int, int]) -> None:
    pid, port = proxy_process
    await _warm_up(port)
    reset_peak_rss(pid)
    before = peak_rss_bytes(pid)
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        block = bytes(range(256)) * 1024
        for _ in range(SIZE // len(block)):
            digest.update(block)
            yield block

    async with aiohttp.ClientSession() as client:
        async with client.post(f"http://127.0.0.1:{port}/v2/upload", data=body()) as resp:
            echoed = await resp.json()
    growth = peak_rss_bytes(pid) - before
    _report("upload", before, growth)
    assert echoed["body_size"] == SIZE
    assert echoed["body_sha256"] == digest.hexdigest()
    assert growth < MAX_GROWTH


def _report(direction: str, before: int, growth: int) -> None:
    line = {"direction": direction, "rss_before_mb": before / 2**20, "growth_mb": growth / 2**20}
    print(json.dumps(line))  # shown with pytest -s: the figure quoted in docs/forwarding.md


async def access_line_of(log: Path, path: str, seconds: float = 10.0) -> dict[str, object]:
    """The proxy's access line for ``path``, once it is written (the request is over)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for entry in log_entries(log):
            if entry["logger"] == "proxy.access" and entry.get("path") == path:
                return entry
        await asyncio.sleep(0.05)
    raise AssertionError(f"no access line for {path} in {seconds} s")


def log_entries(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.parametrize("leaving", ["close", "reset"])
async def test_a_client_that_stops_reading_and_leaves_is_one_info_line(
    tmp_path: Path, leaving: str
) -> None:
    """The proxy is blocked writing to a client that no longer reads; the client goes.
    Nothing is wrong with the proxy: no ERROR, no traceback, one line saying so."""
    upstream_port, proxy_port = free_port(), free_port()
    env = {
        **PAT_ENV,
        "SIPGATE_PROXY_LISTEN__PORT": str(proxy_port),
        "SIPGATE_PROXY_UPSTREAM__URL": f"http://127.0.0.1:{upstream_port}",
    }
    log = tmp_path / "proxy.log"
    path = "/__test/download"
    with (
        running(["-m", "tests.support.upstream", str(upstream_port)], upstream_port),
        running(["-m", "proxy"], proxy_port, env, log=log),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        sock = writer.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(f"GET {path}?bytes={SIZE} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await reader.readexactly(100_000)  # the download is under way; now stop reading
        await until_blocked(proxy_port)
        if leaving == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        access = await access_line_of(log, path)
    lines = log_entries(log)
    assert [e for e in lines if e["level"] in ("error", "critical") or "error" in e] == []
    went_away = [e for e in lines if "client went away" in str(e["message"])]
    assert [(e["level"], e["logger"]) for e in went_away] == [("info", "proxy.upstream.forwarder")]
    assert access["status"] == 200


async def until_blocked(proxy_port: int, seconds: float = 10.0) -> None:
    """Until the proxy's side of the connection holds a send queue the client does not
    take (/proc/net/tcp): the proxy now waits on the client."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if unsent_bytes(proxy_port) >= 64 * 1024:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the proxy never had to wait for the client")


def unsent_bytes(local_port: int) -> int:
    """The kernel's send queue of the established connections on ``local_port``."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == local_port and fields[3] == "01":
            total += int(fields[4].split(":")[0], 16)
    return total

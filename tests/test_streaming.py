"""200 MB through a real proxy process in each direction: memory stays bounded."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator

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
    print(json.dumps(line))  # shown with pytest -s: the figure quoted in the README

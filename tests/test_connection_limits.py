"""Connection limits (issue 24): the header block bounded in size and in time, idle
keep-alive connections closed, and a cap on the main listener's connections that leaves
descriptors for the management listener, so that the probes answer under attack.

Real proxy processes, raw loopback sockets for the attacks, psutil for the RSS."""

from __future__ import annotations

import asyncio
import re
import resource
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from proxy.http.connection_cap import RESERVED_DESCRIPTORS
from tests.conftest import PAT_ENV
from tests.support.processes import free_port, peak_rss_bytes, reset_peak_rss, running
from tests.test_forward import get_json

MB = 1024 * 1024
PAD = b"a" * 65000  # one 64 KB header line, under server.max_field_size
REQUEST = b"GET /v2/account HTTP/1.1\r\nHost: proxy\r\n"


@dataclass(frozen=True)
class Proxy:
    pid: int
    port: int
    management_port: int


@contextmanager
def proxy(tmp_path: Path, env: dict[str, str] | None = None, nofile: int = 0) -> Iterator[Proxy]:
    upstream_port, proxy_port, management_port = free_port(), free_port(), free_port()
    environ = {
        **PAT_ENV,
        "SIPGATE_PROXY_LISTEN__PORT": str(proxy_port),
        "SIPGATE_PROXY_UPSTREAM__URL": f"http://127.0.0.1:{upstream_port}",
        "SIPGATE_PROXY_MANAGEMENT__LISTEN__PORT": str(management_port),
        **(env or {}),
    }

    def lower_nofile() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with (
        running(["-m", "tests.support.upstream", str(upstream_port)], upstream_port),
        running(
            ["-m", "proxy"],
            proxy_port,
            environ,
            log=tmp_path / "proxy.log",
            preexec=lower_nofile if nofile else None,
        ) as process,
    ):
        yield Proxy(process.pid, proxy_port, management_port)


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(port: int, data: bytes = b"") -> Connection:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def unfinished_block(port: int, lines: int) -> Connection:
    """A request line and ``lines`` header lines of 64 KB, without the closing CRLF."""
    reader, writer = await connect(port, REQUEST)
    with suppress(ConnectionError):  # the proxy stopped reading: what the limit is for
        for n in range(lines):
            writer.write(b"X-Pad-%03d: %s\r\n" % (n, PAD))
            await writer.drain()
    return reader, writer


async def answer(reader: asyncio.StreamReader, wait: float = 5) -> bytes | None:
    """What the proxy sends until it closes; None if it still holds the connection."""
    try:
        async with asyncio.timeout(wait):
            return await reader.read()
    except TimeoutError:
        return None
    except ConnectionError:
        return b""


def status(answer: bytes | None) -> int:
    """The status code of an HTTP answer; 0 for none (closed, or still held)."""
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer or b"")
    return int(match[1]) if match else 0


def close(connections: list[Connection]) -> None:
    for _, writer in connections:
        writer.transport.abort()


async def established(pid: int, port: int, count: int) -> None:
    """Until the proxy holds ``count`` connections on ``port`` (it saw them all close)."""
    process = psutil.Process(pid)
    async with asyncio.timeout(10):
        while True:
            held = [
                c
                for c in process.net_connections("tcp")
                if c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
            ]
            if len(held) == count:
                return
            await asyncio.sleep(0.05)


async def test_a_header_block_above_max_header_bytes_is_answered_431(tmp_path: Path) -> None:
    with proxy(tmp_path) as p:
        cookie = b"Cookie: c=" + b"x" * 16 * 1024 + b"\r\n"  # what the session chunks may take
        passed = await connect(p.port, REQUEST + cookie + b"Connection: close\r\n\r\n")
        lines = b"".join(b"X-Pad-%d: %s\r\n" % (n, PAD[:15000]) for n in range(5))  # 75 KB
        refused = await connect(p.port, REQUEST + lines + b"\r\n")
        assert status(await answer(passed[0])) == 200
        assert status(await answer(refused[0])) == 431
        close([passed, refused])


async def test_unfinished_header_blocks_hold_no_memory(tmp_path: Path) -> None:
    with proxy(tmp_path) as p:
        rss = psutil.Process(p.pid).memory_info
        assert (await get_json(f"http://127.0.0.1:{p.port}/v2/account"))[0] == 200
        before = rss().rss
        reset_peak_rss(p.pid)
        attack = await asyncio.gather(*(unfinished_block(p.port, 126) for _ in range(32)))
        answers = await asyncio.gather(*(answer(reader, wait=2) for reader, _ in attack))
        peak = peak_rss_bytes(p.pid)
        close(attack)
        await established(p.pid, p.port, 0)
        after = rss().rss
        print(f"RSS before {before / MB:.0f} MiB, peak {peak / MB:.0f}, after {after / MB:.0f}")
        print(f"connections held: {answers.count(None)} of {len(answers)}")
        assert answers.count(None) == 0
        assert peak - before <= 30 * MB
        assert after - before <= 30 * MB


async def test_a_header_block_unfinished_within_header_timeout_is_answered_408(
    tmp_path: Path,
) -> None:
    with proxy(tmp_path, {"SIPGATE_PROXY_SERVER__HEADER_TIMEOUT": "1"}) as p:
        slow = await connect(p.port, REQUEST + b"X-Slow: 1\r\n")
        silent = await connect(p.port)
        assert status(await answer(slow[0])) == 408
        assert await answer(silent[0]) == b""  # closed: nothing was asked, nothing to answer
        close([slow, silent])


async def test_an_idle_keep_alive_connection_is_closed_after_keepalive_timeout(
    tmp_path: Path,
) -> None:
    with proxy(tmp_path, {"SIPGATE_PROXY_SERVER__KEEPALIVE_TIMEOUT": "1"}) as p:
        reader, writer = await connect(p.port, REQUEST + b"\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert status(head) == 200
        length = re.search(rb"Content-Length: (\d+)", head, re.IGNORECASE)
        assert length is not None
        await reader.readexactly(int(length[1]))
        assert await answer(reader) == b""
        close([(reader, writer)])


@pytest.mark.parametrize(
    ("max_connections", "cap"), [("100", 100), (None, (256 - RESERVED_DESCRIPTORS) // 2)]
)
async def test_healthz_answers_while_the_main_listener_is_saturated(
    tmp_path: Path, max_connections: str | None, cap: int
) -> None:
    """With 256 descriptors, 300 idle, silent and slowloris connections to the main port:
    the cap (set, or derived from the descriptor limit) refuses what is beyond it, and the
    management listener still answers."""
    env = {"SIPGATE_PROXY_SERVER__MAX_CONNECTIONS": max_connections} if max_connections else {}
    with proxy(tmp_path, env, nofile=256) as p:
        kinds = [b"", REQUEST, REQUEST + b"\r\n"]  # silent, slowloris, idle after a request
        opened = await asyncio.gather(
            *(asyncio.wait_for(connect(p.port, kinds[n % 3]), 2) for n in range(300)),
            return_exceptions=True,
        )
        held = [c for c in opened if not isinstance(c, BaseException)]
        health = await asyncio.wait_for(
            get_json(f"http://127.0.0.1:{p.management_port}/healthz"), 5
        )
        assert health == (200, {"status": "ok"})
        waiting = await connect(p.port)  # refused before it sent anything: it reads a 503
        asking = await connect(p.port, REQUEST + b"\r\n")  # its request unread: maybe a reset
        assert status(await answer(waiting[0])) == 503
        assert await answer(asking[0]) is not None  # closed at once
        metrics = await asyncio.wait_for(metrics_text(p.management_port), 5)
        close([*held, waiting, asking])
    assert _value(metrics, "sipgate_proxy_connections_open") == cap
    assert _value(metrics, "sipgate_proxy_connections_refused_total") >= 300 - cap + 2


async def metrics_text(port: int) -> str:
    reader, writer = await connect(
        port, b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n"
    )
    text = (await reader.read()).decode()
    writer.close()
    return text


def _value(metrics: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", metrics, re.MULTILINE)
    assert match is not None, name
    return float(match[1])

"""Errors an operator can act on: a refused client address is named with the key to
change, and a 502/504 log line names why (the cause class) and which upstream host,
against real failing peers, never with a credential."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.conftest import PAT_ENV, ProxyFactory
from tests.support.processes import free_port
from tests.test_forward import get_json
from tests.test_tls_upstream import _tls_upstream

ServerFactory = Callable[..., Awaitable[TestServer]]
TOKEN = PAT_ENV["SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN"]


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() + json.dumps(r.__dict__, default=str) for r in caplog.records)


async def test_refused_client_address_is_named_with_the_key_to_change(
    make_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await make_proxy({"SIPGATE_PROXY_AUTH__ALLOWED_CLIENT_NETWORKS": "[127.0.0.1/32]"})
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))  # a real other peer
    async with aiohttp.ClientSession(connector=connector) as client:
        async with client.get(proxy.make_url("/v2/account")) as resp:
            status, body = resp.status, await resp.json()
    assert status == 403
    assert body["error"] == "client_not_allowed"
    assert body["client_address"] == "127.0.0.2"
    assert body["setting"] == "auth.allowed_client_networks"
    (line,) = [r for r in caplog.records if "refused" in r.getMessage()]
    assert "127.0.0.2" in line.getMessage()
    assert "auth.allowed_client_networks" in line.getMessage()
    assert TOKEN not in logged(caplog)


@pytest.fixture
async def resetting_port() -> AsyncIterator[int]:
    """A server that reads the request, then resets the connection (RST, no answer)."""

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    server = await asyncio.start_server(reset, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A server that accepts and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def check_failure(
    make_proxy: ProxyFactory,
    caplog: pytest.LogCaptureFixture,
    upstream: str,
    expected: tuple[int, str],
    env: dict[str, str] | None = None,
) -> None:
    proxy = await make_proxy({"SIPGATE_PROXY_UPSTREAM__URL": upstream, **(env or {})})
    status, body = await get_json(str(proxy.make_url("/v2/account?secret=query-value")))
    assert status == expected[0], body
    host = upstream.split("://", 1)[1]
    lines = [r for r in caplog.records if getattr(r, "upstream_host", None) == host]
    assert len(lines) == 1, logged(caplog)
    assert lines[0].__dict__["cause"] == expected[1]
    assert f"upstream {host} failed: {expected[1]}" in lines[0].getMessage()
    everything = logged(caplog)
    assert TOKEN not in everything
    assert "query-value" not in everything


async def test_refused_port_is_logged_as_refused(
    make_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    upstream = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    await check_failure(make_proxy, caplog, upstream, (502, "refused"))


async def test_unresolvable_name_is_logged_as_dns(
    make_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    upstream = "https://nonexistent.invalid:443"
    await check_failure(make_proxy, caplog, upstream, (502, "dns"))


async def test_untrusted_certificate_is_logged_as_tls_verification(
    make_proxy: ProxyFactory,
    aiohttp_server: ServerFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream, _ = await _tls_upstream(aiohttp_server, tmp_path)  # a CA nobody trusts
    await check_failure(make_proxy, caplog, upstream, (502, "tls_verification"))


async def test_reset_connection_is_logged_as_reset(
    make_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture, resetting_port: int
) -> None:
    upstream = f"http://127.0.0.1:{resetting_port}"
    await check_failure(make_proxy, caplog, upstream, (502, "reset"))


async def test_silent_upstream_is_logged_as_timeout(
    make_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture, silent_port: int
) -> None:
    upstream = f"http://127.0.0.1:{silent_port}"
    env = {"SIPGATE_PROXY_UPSTREAM__READ_TIMEOUT": "1"}
    await check_failure(make_proxy, caplog, upstream, (504, "timeout"), env)

"""The streaming forwarder against a real upstream double over loopback sockets."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from tests.conftest import ProxyFactory


async def raw_request(server: TestServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes exactly as written and read the whole answer (Connection: close)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


async def get_json(url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as client, client.get(url, **kwargs) as resp:
        return resp.status, await resp.json()


def header_values(echoed: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in echoed["headers"] if k.lower() == name.lower()]


async def test_path_and_query_reach_upstream_byte_for_byte(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    targets = [
        "/v2/account",
        "/v2/a%2Fb/c;param=1?q=a+b&q=%20&q=%2B&empty=&flag",
        "/v2/%C3%A4%20x?x=%3D%26&x=2",
        "/v2/../../etc/passwd",
        "/v2/./x/%2e%2e/y",
        "//evil.example/x",
    ]
    for target in targets:
        status, _, body = await raw_request(
            proxy, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        assert status == 200, target
        assert f'"raw_path": "{target}"' in body.decode(), target


async def test_absolute_form_target_still_goes_to_configured_upstream(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy()
    status, _, body = await raw_request(
        proxy,
        b"GET http://evil.example:9/v2/x?y=1 HTTP/1.1\r\nHost: evil.example\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert status == 200  # answered by the upstream double: it echoes
    assert b'"raw_path": "/v2/x?y=1"' in body


async def test_forged_host_header_does_not_change_upstream(
    make_proxy: ProxyFactory, upstream: TestServer
) -> None:
    proxy = await make_proxy({"SIPGATE_PROXY_PUBLIC_URL": "https://proxy.example:8443"})
    status, echoed = await get_json(
        str(proxy.make_url("/v2/x")),
        headers={"Host": "evil.example:443", "X-Forwarded-Host": "evil.example"},
    )
    assert status == 200
    assert header_values(echoed, "Host") == [f"{upstream.host}:{upstream.port}"]
    # The proxy's own public origin, never a value the client chose.
    assert header_values(echoed, "X-Forwarded-Host") == ["proxy.example:8443"]
    assert header_values(echoed, "X-Forwarded-Proto") == ["https"]


async def test_headers_are_cleaned_and_forwarded_headers_added(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    status, echoed = await get_json(
        str(proxy.make_url("/v2/x")),
        headers={
            "Authorization": "Bearer stolen",
            "Cookie": "sipgate_proxy_0=abc; other=1",
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "1",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic eA==",
            "TE": "trailers",
            "X-Forwarded-For": "203.0.113.9",
            "X-Custom": "kept",
        },
    )
    assert status == 200
    names = {k.lower() for k, _ in echoed["headers"]}
    assert not names & {"cookie", "x-secret-hop", "keep-alive", "proxy-authorization", "te"}
    assert header_values(echoed, "Authorization")[0].startswith("Basic ")
    assert header_values(echoed, "X-Custom") == ["kept"]
    assert header_values(echoed, "X-Forwarded-For") == ["203.0.113.9, 127.0.0.1"]
    assert header_values(echoed, "X-Forwarded-Proto") == ["http"]


async def test_other_cookies_forwarded_only_when_enabled(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy({"SIPGATE_PROXY_UPSTREAM__FORWARD_COOKIES": "true"})
    _, echoed = await get_json(
        str(proxy.make_url("/v2/x")),
        headers={"Cookie": "sipgate_proxy_0=abc; app=1; sipgate_proxy_flow=z; b=2"},
    )
    assert header_values(echoed, "Cookie") == ["app=1; b=2"]


async def test_response_status_headers_and_set_cookie_pass_back(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    async with aiohttp.ClientSession() as client:
        async with client.get(proxy.make_url("/__test/cookies")) as resp:
            assert resp.status == 200
            assert resp.headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/; HttpOnly"]
            assert resp.headers["X-Upstream"] == "kept"
            assert "X-Hop" not in resp.headers
            assert "Keep-Alive" not in resp.headers
        for code in (201, 204, 401, 402, 403, 404, 500):
            async with client.post(proxy.make_url(f"/__test/status/{code}")) as resp:
                assert resp.status == code


async def test_head_keeps_content_length(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    status, headers, body = await raw_request(
        proxy,
        b"HEAD /__test/download?bytes=1234&length=1 HTTP/1.1\r\nHost: x\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert status == 200
    assert headers.get("Content-Length") == "1234"
    assert body == b""


async def test_request_body_is_streamed_with_its_length(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    payload = b"0123456789" * 100_000
    async with aiohttp.ClientSession() as client:
        async with client.post(proxy.make_url("/v2/sms"), data=payload) as resp:
            echoed = await resp.json()
    assert echoed["body_size"] == len(payload)
    assert echoed["body_sha256"] == hashlib.sha256(payload).hexdigest()
    assert header_values(echoed, "Content-Length") == [str(len(payload))]


async def test_chunked_request_body_is_streamed(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()

    async def chunks() -> Any:
        for _ in range(10):
            yield b"z" * 10_000

    async with aiohttp.ClientSession() as client:
        async with client.put(proxy.make_url("/v2/x"), data=chunks()) as resp:
            echoed = await resp.json()
    assert echoed["body_size"] == 100_000
    assert echoed["chunked"] is True


async def test_body_over_limit_declared_gets_413(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy({"SIPGATE_PROXY_UPSTREAM__MAX_BODY_SIZE": "1000"})
    async with aiohttp.ClientSession() as client:
        async with client.post(proxy.make_url("/v2/x"), data=b"a" * 1001) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"] == "body_too_large"
        async with client.post(proxy.make_url("/v2/x"), data=b"a" * 1000) as resp:
            assert resp.status == 200


async def test_chunked_body_over_limit_gets_413(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy({"SIPGATE_PROXY_UPSTREAM__MAX_BODY_SIZE": "100000"})

    async def chunks() -> Any:
        for _ in range(20):
            yield b"z" * 10_000

    async with aiohttp.ClientSession() as client:
        async with client.post(proxy.make_url("/v2/x"), data=chunks()) as resp:
            assert resp.status == 413


async def test_upstream_read_timeout_gives_504(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy({"SIPGATE_PROXY_UPSTREAM__READ_TIMEOUT": "0.3"})
    status, body = await get_json(str(proxy.make_url("/__test/slow?delay=3")))
    assert status == 504
    assert body["error"] == "gateway_timeout"


async def test_connect_timeout_gives_504(make_proxy: ProxyFactory) -> None:
    # A listening socket whose accept queue is full never completes new handshakes.
    import socket

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(0)
    port = blocker.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        proxy = await make_proxy(
            {
                "SIPGATE_PROXY_UPSTREAM__URL": f"http://127.0.0.1:{port}",
                "SIPGATE_PROXY_UPSTREAM__CONNECT_TIMEOUT": "0.3",
            }
        )
        status, body = await get_json(str(proxy.make_url("/v2/x")))
    finally:
        for s in fillers:
            s.close()
        blocker.close()
    assert status == 504
    assert body["error"] == "gateway_timeout"


async def test_upstream_down_gives_502(make_proxy: ProxyFactory) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        proxy = await make_proxy({"SIPGATE_PROXY_UPSTREAM__URL": f"http://127.0.0.1:{port}"})
        status, body = await get_json(str(proxy.make_url("/v2/x")))
    assert status == 502
    assert body["error"] == "bad_gateway"


async def test_upstream_stall_mid_body_cuts_client_connection(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy({"SIPGATE_PROXY_UPSTREAM__READ_TIMEOUT": "0.3"})
    async with aiohttp.ClientSession() as client:
        async with client.get(proxy.make_url("/__test/stall?delay=3")) as resp:
            assert resp.status == 200
            try:
                await resp.read()
                truncated = False
            except aiohttp.ClientPayloadError:
                truncated = True
    assert truncated, "a cut upstream body must not look complete to the client"


async def test_large_cookie_header_accepted(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    cookie = "; ".join(f"sipgate_proxy_{i}={'v' * 3900}" for i in range(5))  # ~19.6 KB
    status, echoed = await get_json(str(proxy.make_url("/v2/x")), headers={"Cookie": cookie})
    assert status == 200
    assert header_values(echoed, "Cookie") == []


async def test_non_path_target_is_refused(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    status, _, _ = await raw_request(
        proxy, b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 400


async def test_upstream_cors_headers_never_pass(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    async with aiohttp.ClientSession() as client:
        async with client.get(
            proxy.make_url("/__test/cors"), headers={"Origin": "http://localhost:8080"}
        ) as resp:
            assert resp.status == 200
            assert "Access-Control-Allow-Origin" not in resp.headers
            assert "Access-Control-Allow-Credentials" not in resp.headers


async def test_only_idempotent_requests_are_retried_after_upstream_hangup(
    make_proxy: ProxyFactory, upstream: TestServer
) -> None:
    from tests.support.upstream import HANGUPS

    proxy = await make_proxy()
    async with aiohttp.ClientSession() as client:
        async with client.post(proxy.make_url("/__test/hangup")) as resp:
            assert resp.status == 502
        assert upstream.app[HANGUPS] == ["POST"]  # never sent twice
        async with client.get(proxy.make_url("/__test/hangup")) as resp:
            assert resp.status == 502
        assert upstream.app[HANGUPS] == ["POST", "GET", "GET"]  # one retry


async def test_forwarded_header_from_client_is_dropped(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    _, echoed = await get_json(
        str(proxy.make_url("/v2/x")), headers={"Forwarded": "for=1.2.3.4;host=evil"}
    )
    assert header_values(echoed, "Forwarded") == []

"""Operations: probes, metrics, request ids, access log lines, graceful shutdown, workers."""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import signal
import time
from pathlib import Path

import aiohttp
import psutil
import pytest
import yarl

from proxy import __version__
from tests.conftest import PAT_ENV, ProxyFactory, StackFactory
from tests.support.processes import free_port, running
from tests.support.scripted_browser import ScriptedBrowser
from tests.test_forward import get_json, header_values

# 8 s tokens, 4 s skew: a refresh is due 4 s after it was issued, the token still valid
DUE = 4.2


async def test_health_and_readiness(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    assert await get_json(str(proxy.make_url("/healthz"))) == (200, {"status": "ok"})
    assert await get_json(str(proxy.make_url("/readyz"))) == (200, {"status": "ready"})


async def test_metrics_count_requests_by_route_and_status(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    async with aiohttp.ClientSession() as client:
        for path in ("/v2/a", "/v2/b", "/__test/status/404", "/healthz"):
            async with client.get(proxy.make_url(path)) as resp:
                await resp.read()
        async with client.get(proxy.make_url("/metrics")) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = await resp.text()
    assert 'sipgate_proxy_requests_total{route="proxy",status="200"} 2.0' in text
    assert 'sipgate_proxy_requests_total{route="proxy",status="404"} 1.0' in text
    assert 'sipgate_proxy_requests_total{route="health",status="200"} 1.0' in text
    assert 'sipgate_proxy_request_duration_seconds_bucket{le="0.1",route="proxy"}' in text
    assert "sipgate_proxy_upstream_duration_seconds_count 3.0" in text
    assert "/v2/a" not in text  # paths are never labels
    python = platform.python_version()
    assert f'sipgate_proxy_build_info{{python="{python}",version="{__version__}"}} 1.0' in text


async def test_request_id_is_kept_or_made_and_passed_upstream(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy()
    async with aiohttp.ClientSession() as client:
        async with client.get(proxy.make_url("/v2/a"), headers={"X-Request-ID": "abc-123"}) as r:
            echoed = await r.json()
            assert r.headers["X-Request-ID"] == "abc-123"
        assert header_values(echoed, "X-Request-ID") == ["abc-123"]
        async with client.get(
            proxy.make_url("/v2/a"), headers={"X-Request-ID": "bad id <script>"}
        ) as r:
            made = r.headers["X-Request-ID"]
            echoed = await r.json()
        assert len(made) == 32
        assert header_values(echoed, "X-Request-ID") == [made]


async def test_one_access_line_per_request_without_query_values(
    make_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await make_proxy()
    with caplog.at_level(logging.INFO, logger="proxy.access"):
        await get_json(str(proxy.make_url("/v2/history?token=s3cr3t&limit=5")))
    (record,) = [r for r in caplog.records if r.name == "proxy.access"]
    fields = vars(record)
    assert fields["path"] == "/v2/history"
    assert fields["query_keys"] == ["limit", "token"]
    assert fields["status"] == 200
    assert fields["upstream_status"] == 200
    assert fields["method"] == "GET"
    assert fields["duration_ms"] > 0
    assert "s3cr3t" not in record.getMessage()
    assert "s3cr3t" not in json.dumps({k: str(v) for k, v in fields.items()})


async def test_json_log_format_is_one_object_per_line(tmp_path: Path) -> None:
    upstream_port, proxy_port = free_port(), free_port()
    env = {
        **PAT_ENV,
        "SIPGATE_PROXY_LISTEN__PORT": str(proxy_port),
        "SIPGATE_PROXY_UPSTREAM__URL": f"http://127.0.0.1:{upstream_port}",
    }
    log = tmp_path / "proxy.log"
    with (
        running(["-m", "tests.support.upstream", str(upstream_port)], upstream_port),
        running(["-m", "proxy"], proxy_port, env, log=log),
    ):
        await get_json(f"http://127.0.0.1:{proxy_port}/v2/account?x=1")
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    access = [line for line in lines if line["logger"] == "proxy.access"]
    assert len(access) == 1
    assert access[0]["path"] == "/v2/account"
    assert access[0]["status"] == 200
    assert {"time", "level", "request_id", "duration_ms", "upstream_ms"} <= set(access[0])


async def text_log_of_one_request(tmp_path: Path, path_and_query: str) -> str:
    """The text log of a proxy process that served one request for ``path_and_query``."""
    upstream_port, proxy_port = free_port(), free_port()
    env = {
        **PAT_ENV,
        "SIPGATE_PROXY_LISTEN__PORT": str(proxy_port),
        "SIPGATE_PROXY_UPSTREAM__URL": f"http://127.0.0.1:{upstream_port}",
        "SIPGATE_PROXY_LOG__FORMAT": "text",
    }
    log = tmp_path / "proxy.log"
    with (
        running(["-m", "tests.support.upstream", str(upstream_port)], upstream_port),
        running(["-m", "proxy"], proxy_port, env, log=log),
    ):
        async with aiohttp.ClientSession() as client:
            url = yarl.URL(f"http://127.0.0.1:{proxy_port}{path_and_query}", encoded=True)
            async with client.get(url) as resp:
                await resp.read()
    return log.read_text(encoding="utf-8")


async def test_text_log_format_escapes_control_characters_in_every_field(
    tmp_path: Path,
) -> None:
    forged = "%0a2026-01-01%2000:00:00,000%20ERROR%20proxy:%20forged%1b[31m"
    text = await text_log_of_one_request(tmp_path, f"/v2/x{forged}?a{forged}=1")
    lines = text.splitlines()
    access = [line for line in lines if "proxy.access" in line]
    assert len(access) == 1
    assert not [line for line in lines if line.startswith("2026-01-01")]
    assert "\x1b" not in text
    assert "/v2/x\\n2026-01-01 00:00:00,000 ERROR proxy: forged\\x1b[31m" in access[0]


# Line and paragraph separators, NEL, the other vertical breaks Python's splitlines()
# honours, and Cf characters (bidi overrides reorder what a viewer shows, zero-width and
# BOM characters hide text): every one percent-encoded into a path.
UNICODE_BREAKS_AND_FORMATS = {
    r"\u2028": "%e2%80%a8",  # LINE SEPARATOR (Zl)
    r"\u2029": "%e2%80%a9",  # PARAGRAPH SEPARATOR (Zp)
    r"\x85": "%c2%85",  # NEL (Cc)
    r"\x0b": "%0b",
    r"\x1c": "%1c",
    r"\u202e": "%e2%80%ae",  # RIGHT-TO-LEFT OVERRIDE (Cf)
    r"\u2066": "%e2%81%a6",  # LEFT-TO-RIGHT ISOLATE (Cf)
    r"\u200b": "%e2%80%8b",  # ZERO WIDTH SPACE (Cf)
    r"\ufeff": "%ef%bb%bf",  # BYTE ORDER MARK (Cf)
    r"\U000e0041": "%f3%a0%81%81",  # TAG LATIN CAPITAL LETTER A (Cf, outside the BMP)
}


async def test_text_log_format_escapes_unicode_line_breaks_and_format_characters(
    tmp_path: Path,
) -> None:
    """A viewer that splits lines at U+2028 would show ``FORGED…`` as a line of its own."""
    path = "/v2/x" + "".join(f"{encoded}FORGED" for encoded in UNICODE_BREAKS_AND_FORMATS.values())
    text = await text_log_of_one_request(tmp_path, path)
    lines = text.splitlines()  # splits at every Unicode line boundary
    assert not [line for line in lines if line.startswith("FORGED")], lines
    assert not [c for c in text if not c.isprintable() and c != "\n"]
    (access,) = [line for line in lines if "proxy.access" in line]
    escaped = "/v2/x" + "".join(f"{escape}FORGED" for escape in UNICODE_BREAKS_AND_FORMATS)
    assert escaped in access, access


async def test_oauth_metrics_count_logins_refreshes_and_cookie_bytes(
    oauth_stack: StackFactory,
) -> None:
    stack = await oauth_stack({"SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "4"}, access_ttl=8)
    async with ScriptedBrowser() as browser:
        await browser.login(stack.public_url, "otto", "/")
        await asyncio.sleep(DUE)
        await browser.request("GET", f"{stack.public_url}/v2/a", headers={"Accept": "*/*"})
        _, _, text, _ = await browser.request("GET", f"{stack.public_url}/metrics")
    assert 'sipgate_proxy_logins_total{outcome="ok"} 1.0' in text
    assert 'sipgate_proxy_refreshes_total{outcome="ok"} 1.0' in text
    assert "sipgate_proxy_session_cookie_bytes_count 1.0" in text
    assert 'sipgate_proxy_requests_total{route="login",status="302"}' in text


async def test_sigterm_lets_a_slow_streamed_response_finish(tmp_path: Path) -> None:
    upstream_port, proxy_port = free_port(), free_port()
    env = {
        **PAT_ENV,
        "SIPGATE_PROXY_LISTEN__PORT": str(proxy_port),
        "SIPGATE_PROXY_UPSTREAM__URL": f"http://127.0.0.1:{upstream_port}",
    }
    with (
        running(["-m", "tests.support.upstream", str(upstream_port)], upstream_port),
        running(["-m", "proxy"], proxy_port, env, log=tmp_path / "proxy.log") as proxy,
    ):
        async with aiohttp.ClientSession() as client:
            url = f"http://127.0.0.1:{proxy_port}/__test/slow_stream?chunks=10&interval=0.2"
            async with client.get(url) as resp:
                first = await resp.content.read(1000)
                proxy.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.3)
                # new connections are refused while the old response keeps flowing
                with pytest.raises(aiohttp.ClientConnectionError):
                    async with aiohttp.ClientSession() as other:
                        await other.get(f"http://127.0.0.1:{proxy_port}/healthz")
                rest = await resp.read()
        assert len(first) + len(rest) == 10_000
        assert proxy.wait(timeout=10) == 0
    log = (tmp_path / "proxy.log").read_text()
    assert "stopping: finishing requests in flight" in log


async def test_workers_share_the_port_and_stop_on_sigterm(tmp_path: Path) -> None:
    upstream_port, proxy_port = free_port(), free_port()
    env = {
        **PAT_ENV,
        "SIPGATE_PROXY_LISTEN__PORT": str(proxy_port),
        "SIPGATE_PROXY_UPSTREAM__URL": f"http://127.0.0.1:{upstream_port}",
        "SIPGATE_PROXY_SERVER__WORKERS": "2",
    }
    with (
        running(["-m", "tests.support.upstream", str(upstream_port)], upstream_port),
        running(["-m", "proxy"], proxy_port, env, log=tmp_path / "proxy.log") as proxy,
    ):
        listening = _wait_for_listeners(proxy.pid, proxy_port, 2)
        assert len(listening) == 2
        statuses, request_ids = [], set()
        for _ in range(20):
            async with aiohttp.ClientSession() as client:  # new connection each time
                async with client.get(f"http://127.0.0.1:{proxy_port}/v2/x") as resp:
                    statuses.append(resp.status)
                    request_ids.add(resp.headers["X-Request-Id"])
        assert statuses == [200] * 20
        assert len(request_ids) == 20  # each worker names its requests apart
        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait(timeout=20) == 0
        assert not any(psutil.pid_exists(pid) for pid in listening if _alive(pid))


def _wait_for_listeners(pid: int, port: int, count: int) -> set[int]:
    """Pids of the supervisor's children that listen on ``port``."""
    deadline = time.monotonic() + 15
    while True:
        listening = set()
        for child in psutil.Process(pid).children():
            try:
                connections = child.net_connections("tcp")
            except psutil.NoSuchProcess:
                continue
            if any(c.status == "LISTEN" and c.laddr.port == port for c in connections):
                listening.add(child.pid)
        if len(listening) >= count or time.monotonic() > deadline:
            return listening
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_management_listener_serves_probes_and_metrics(tmp_path: Path) -> None:
    upstream_port, proxy_port, management_port = free_port(), free_port(), free_port()
    env = {
        **PAT_ENV,
        "SIPGATE_PROXY_LISTEN__PORT": str(proxy_port),
        "SIPGATE_PROXY_UPSTREAM__URL": f"http://127.0.0.1:{upstream_port}",
        "SIPGATE_PROXY_MANAGEMENT__LISTEN__PORT": str(management_port),
    }
    with (
        running(["-m", "tests.support.upstream", str(upstream_port)], upstream_port),
        running(["-m", "proxy"], proxy_port, env, log=tmp_path / "proxy.log"),
    ):
        base = f"http://127.0.0.1:{management_port}"
        assert (await get_json(f"{base}/readyz"))[0] == 200
        async with aiohttp.ClientSession() as client:
            async with client.get(f"{base}/metrics") as resp:
                assert "sipgate_proxy_requests_total" in await resp.text()
            # on the main port, /metrics is not the proxy's: it goes upstream like any path
            _, echoed = await get_json(f"http://127.0.0.1:{proxy_port}/metrics")
            assert echoed["raw_path"] == "/metrics"

"""Two workers of one proxy, the cookie store, the real IdP with refresh-token rotation on.

Workers share no memory; without coordination each one refreshes a session on its own,
the second grant replays the refresh token and the IdP ends the login.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil
import pytest
from aiohttp.test_utils import TestServer

from proxy.crypto.keys import generate_key
from tests.conftest import CLIENT_ID, CLIENT_SECRET
from tests.support.idp import RunningIdP
from tests.support.processes import ROOT, free_port, running
from tests.support.scripted_browser import ScriptedBrowser
from tests.support.upstream import VERIFIER, create_upstream_app
from tests.test_operations import _wait_for_listeners

JSON = {"Accept": "application/json"}
ACCESS_TTL = 9  # a grace copy must stay valid 5 s (browser_session.GRACE_MIN_VALIDITY)


@dataclass
class Workers:
    idp: RunningIdP
    url: str
    port: int
    pids: set[int]
    log: Path
    supervisor: subprocess.Popen[bytes]
    runtime_dir: Path

    def grants(self, outcome: str | None = "success") -> int:
        return self.idp.token_calls("refresh_token", outcome)


@pytest.fixture
def two_workers(
    tmp_path: Path,
    idp_factory: Callable[..., RunningIdP],
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> Iterator[Callable[[], Awaitable[Workers]]]:
    stack = ExitStack()

    async def start() -> Workers:
        port = free_port()
        url = f"http://localhost:{port}"
        idp = idp_factory(f"{url}/oauth2/callback", access_ttl=ACCESS_TTL)
        upstream = await aiohttp_server(create_upstream_app(jwks_url=idp.jwks_uri))
        await upstream.app[VERIFIER].keys()
        env = {
            "SIPGATE_PROXY_LISTEN__PORT": str(port),
            "SIPGATE_PROXY_PUBLIC_URL": url,
            "SIPGATE_PROXY_UPSTREAM__URL": str(upstream.make_url("")).rstrip("/"),
            "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": idp.issuer,
            "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": CLIENT_ID,
            "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": CLIENT_SECRET,
            "SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": "1",
            "SIPGATE_PROXY_SESSION__STORE": "cookie",
            "SIPGATE_PROXY_SESSION__KEYS": f"[{generate_key()}]",
            "SIPGATE_PROXY_SERVER__WORKERS": "2",
            "SIPGATE_PROXY_SERVER__RUNTIME_DIR": str(tmp_path / "run"),
        }
        log = tmp_path / "proxy.log"
        (tmp_path / "run").mkdir()
        proxy = stack.enter_context(running(["-m", "proxy"], port, env, log=log))
        pids = _wait_for_listeners(proxy.pid, port, 2)
        assert len(pids) == 2
        return Workers(idp, url, port, pids, log, proxy, tmp_path / "run")

    yield start
    stack.close()


def cookie_of(set_cookies: list[str]) -> str:
    pairs = [line.split(";", 1)[0] for line in set_cookies]
    return "; ".join(p for p in pairs if not p.endswith("="))


async def burst(workers: Workers, cookie: str, count: int) -> tuple[list[int], str, list[int]]:
    """``count`` concurrent requests with one cookie, each on its own connection: statuses,
    the cookie the answers set, and how many of the connections each worker accepted."""
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as client:

        async def one(i: int) -> tuple[int, list[str]]:
            url = f"{workers.url}/v2/account?i={i}"
            async with client.get(url, headers={**JSON, "Cookie": cookie}) as resp:
                await resp.read()
                return resp.status, resp.headers.getall("Set-Cookie", [])

        results = await asyncio.gather(*(one(i) for i in range(count)))
        spread = [_established(pid, workers.port) for pid in sorted(workers.pids)]
    new_cookies = {cookie_of(cookies) for status, cookies in results if status == 200 and cookies}
    return [status for status, _ in results], next(iter(new_cookies), ""), spread


def _established(pid: int, port: int) -> int:
    connections = psutil.Process(pid).net_connections("tcp")
    return sum(c.status == "ESTABLISHED" and c.laddr.port == port for c in connections)


async def test_two_workers_refresh_one_expired_session_once_per_expiry(
    two_workers: Callable[[], Awaitable[Workers]],
) -> None:
    workers = await two_workers()
    async with ScriptedBrowser() as browser:
        await browser.login(workers.url, "alice", "/")
        issued = time.monotonic()
        cookie = "; ".join(f"{k}={v}" for k, v in browser.jar(workers.url).items())
    grants_per_round, failures_per_round = [], []
    for _ in range(5):
        # The access token has expired: no request can be served without a refresh.
        await asyncio.sleep(max(0.0, issued + ACCESS_TTL + 1 - time.monotonic()))
        before, started = workers.grants(None), time.monotonic()
        statuses, new_cookie, spread = await burst(workers, cookie, 200)
        grants_per_round.append(workers.grants(None) - before)
        failures_per_round.append(sum(status != 200 for status in statuses))
        assert min(spread) > 0, f"all connections on one worker: {spread}"
        if new_cookie:
            cookie, issued = new_cookie, started
    rejected = workers.grants("invalid_grant")
    figures = f"grants {grants_per_round}, non-200 {failures_per_round}, invalid_grant {rejected}"
    assert (grants_per_round, failures_per_round, rejected) == ([1] * 5, [0] * 5, 0), figures
    (private,) = workers.runtime_dir.iterdir()  # the workers' directory, theirs alone
    assert private.stat().st_mode & 0o777 == 0o700
    assert all(b"eyJ" not in f.read_bytes() for f in private.iterdir())  # no JWT in clear
    workers.supervisor.send_signal(signal.SIGTERM)
    assert workers.supervisor.wait(timeout=20) == 0
    assert list(workers.runtime_dir.iterdir()) == []  # removed with the workers


def test_supervisor_stops_at_start_when_the_runtime_dir_is_unusable(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    env = {
        "SIPGATE_PROXY_LISTEN__PORT": str(free_port()),
        "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": "http://127.0.0.1:9/auth/realms/sipgate-apps",
        "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": CLIENT_ID,
        "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": CLIENT_SECRET,
        "SIPGATE_PROXY_SESSION__KEYS": f"[{generate_key()}]",
        "SIPGATE_PROXY_SERVER__WORKERS": "2",
        "SIPGATE_PROXY_SERVER__RUNTIME_DIR": str(not_a_dir),
    }
    result = subprocess.run(
        [sys.executable, "-m", "proxy"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert b"server.runtime_dir" in result.stderr

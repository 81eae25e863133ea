"""`make demo` from the command line: a browser logs in through the proxy against the
stand-ins, reads the API, reads again past one access-token lifetime (one refresh), signs
out onto the signed-out page, and Ctrl-C leaves no process and no listening port behind.
In PAT mode: no IdP, no login details, curl works at once."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import aiohttp
import psutil

from tests.support.idp import browser_login, idp_available
from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
ACCESS_TTL = 6  # seconds: the proxy refreshes at half of it
PAT_MODE = ["DEMO_MODE=personal_access_token"]


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def start_demo(*variables: str) -> subprocess.Popen[str]:
    """``make demo`` in its own process group, as a terminal's foreground job."""
    return subprocess.Popen(
        ["make", "--no-print-directory", "demo", *variables],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def read_banner(demo: subprocess.Popen[str], output: list[str]) -> None:
    """Its output up to the ``pids:`` line, which it prints once everything listens."""
    assert demo.stdout is not None
    for line in demo.stdout:
        output.append(line)
        if line.startswith("pids:"):
            return


async def test_make_demo_logs_in_refreshes_and_stops_clean(page: object) -> None:
    from playwright.async_api import Page

    from tests.conftest import require

    require(*idp_available())
    assert isinstance(page, Page)
    port = free_port()
    started = time.monotonic()
    # Blocking on purpose: nothing else runs on the loop until the browser starts.
    demo = start_demo(f"DEMO_PORT={port}", f"DEMO_ACCESS_TTL={ACCESS_TTL}")
    output: list[str] = []
    try:
        read_banner(demo, output)
        ready = time.monotonic() - started
        pids = [int(p) for p in re.findall(r"\d+", output[-1])]
        assert len(pids) == 3, output
        children = psutil.Process(demo.pid).children(recursive=True)
        text = "".join(output)
        assert "NOT sipgate" in text
        assert "any password works here" in text
        assert "/v2/account, /v2/balance, /v2/history, /v2/authorization/userinfo" in text

        await page.goto(f"http://localhost:{port}/v2/account")
        await browser_login(page, "demo", "demo")
        first = json.loads(await page.inner_text("body"))
        assert first["sub"] == "demo"
        assert "NOT sipgate" in first["_notice"]
        await asyncio.sleep(ACCESS_TTL + 1)  # past one access-token lifetime
        await page.goto(f"http://localhost:{port}/v2/account")
        again = json.loads(await page.inner_text("body"))
        assert again["sub"] == "demo"
        await page.goto(f"http://localhost:{port}/oauth2/sign_out")  # the new page, no re-login
        await page.wait_for_url(f"http://localhost:{port}/oauth2/signed_out")
        assert await page.title() == "You are signed out"
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C
        rest, _ = demo.communicate(timeout=30)
        output.append(rest)
        stopped = time.monotonic() - started
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    log = "".join(output)
    assert "refresh=ok" in log, log[-2000:]
    assert not any(child.is_running() and child.status() != "zombie" for child in children)
    assert not listening(port)
    print(f"make demo: ready after {ready:.1f} s, whole test run {stopped:.1f} s")


async def test_make_demo_in_pat_mode_starts_no_idp_and_prints_no_login() -> None:
    port = free_port()
    demo = start_demo(f"DEMO_PORT={port}", *PAT_MODE)
    output: list[str] = []
    try:
        read_banner(demo, output)
        text = "".join(output)
        assert output[-1].startswith("pids: api "), output  # no IdP among them
        commands = [" ".join(c.cmdline()) for c in psutil.Process(demo.pid).children(True)]
        assert not [c for c in commands if "server.mjs" in c or "node" in c], commands
        assert "password" not in text
        assert "login" not in text.replace("no login", "")
        assert "refresh" not in text
        assert "/v2/account, /v2/balance, /v2/history, /v2/authorization/userinfo" in text
        async with aiohttp.ClientSession() as client:
            async with client.get(f"http://localhost:{port}/v2/account") as resp:
                assert resp.status == 200
                assert (await resp.json())["sub"] == "demo-pat-account"
        os.killpg(demo.pid, signal.SIGINT)
        demo.communicate(timeout=30)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    assert not listening(port)

"""`make demo` from the command line: a browser logs in through the proxy against the
stand-ins, reads the API, reads again past one access-token lifetime (one refresh), and
Ctrl-C leaves no process and no listening port behind."""

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

import psutil

from tests.support.idp import browser_login, idp_available
from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
ACCESS_TTL = 6  # seconds: the proxy refreshes at half of it


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def test_make_demo_logs_in_refreshes_and_stops_clean(page: object) -> None:
    from playwright.async_api import Page

    from tests.conftest import require

    require(*idp_available())
    assert isinstance(page, Page)
    port = free_port()
    started = time.monotonic()
    # Blocking on purpose: nothing else runs on the loop until the browser starts.
    demo = subprocess.Popen(  # noqa: ASYNC220
        [
            "make",
            "--no-print-directory",
            "demo",
            f"DEMO_PORT={port}",
            f"DEMO_ACCESS_TTL={ACCESS_TTL}",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    output: list[str] = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            output.append(line)
            if line.startswith("pids:"):
                break
        ready = time.monotonic() - started
        pids = [int(p) for p in re.findall(r"\d+", output[-1])]
        assert len(pids) == 3, output
        children = psutil.Process(demo.pid).children(recursive=True)
        text = "".join(output)
        assert "NOT sipgate" in text
        assert "user 'demo', password 'demo'" in text

        await page.goto(f"http://localhost:{port}/v2/account")
        await browser_login(page, "demo", "demo")
        first = json.loads(await page.inner_text("body"))
        assert first["sub"] == "demo"
        assert "NOT sipgate" in first["_notice"]
        await asyncio.sleep(ACCESS_TTL + 1)  # past one access-token lifetime
        await page.goto(f"http://localhost:{port}/v2/account")
        again = json.loads(await page.inner_text("body"))
        assert again["sub"] == "demo"
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

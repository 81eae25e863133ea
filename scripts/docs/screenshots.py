"""`make screenshots`: the demo's flow as the docs show it, remade from the running code.

Starts `make demo`'s machinery (scripts/demo/run.py: the demo IdP, the API stand-in and
the proxy in OAuth2 mode, all on loopback), drives Debian's Chromium through Playwright
(the flags the tests use) and writes into docs/images/:

    login.png        the demo's login stand-in, as the proxy sends a browser there
    api-answer.png   the API stand-in's answer, through the proxy, after the sign-in
    error-page.png   the proxy's own page for a failed sign-in (a stale login attempt)
    signed-out.png   what the browser shows after /oauth2/sign_out

Then stops the demo by its process group. Rerun after a change to any of these pages.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.async_api import Page, async_playwright

from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.support.idp import LOGIN_FORM, PASSWORD_INPUT, USERNAME_INPUT, browser_login
from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "docs" / "images"
VIEWPORT = {"width": 1000, "height": 700}


@contextmanager
def demo(port: int) -> Iterator[str]:
    """The demo in OAuth2 mode on ``port``; its base URL once every part listens."""
    process = subprocess.Popen(  # noqa: S603 (this interpreter, fixed arguments)
        [sys.executable, "-m", "scripts.demo.run", "--mode", "oauth2", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:  # its banner, then the pids line once all listen
            if line.startswith("pids:"):
                break
        else:
            raise RuntimeError("the demo stopped before it was ready")
        yield f"http://localhost:{port}"
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the demo stops what it started
        process.communicate(timeout=30)


async def capture(page: Page, name: str) -> None:
    await page.screenshot(path=str(IMAGES / f"{name}.png"))
    print(f"wrote docs/images/{name}.png")


async def flow(page: Page, base: str) -> None:
    await page.goto(f"{base}/v2/account")
    await page.wait_for_selector(LOGIN_FORM)
    await page.fill(USERNAME_INPUT, "demo")
    await page.fill(PASSWORD_INPUT, "demo")
    await capture(page, "login")
    await browser_login(page, "demo", "demo")
    await page.wait_for_url(f"{base}/v2/account")
    await capture(page, "api-answer")
    # A callback whose login attempt the browser never started: the sign-in error page.
    await page.goto(f"{base}/oauth2/callback?code=stale&state=stale")
    await capture(page, "error-page")
    await page.goto(f"{base}/oauth2/sign_out")
    await page.wait_for_load_state("networkidle")
    await capture(page, "signed-out")


async def main() -> int:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with demo(free_port()) as base:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
                await flow(await context.new_page(), base)
            finally:
                await browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

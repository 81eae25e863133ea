"""Load and soak: many requests with mixed sessions, refreshes, sign-ins and sign-outs
against a proxy process, then: errors, memory and file descriptors. Not part of the tests.

    .venv/bin/python bench/soak.py [--requests 100000] [--max-seconds 900] [--json FILE]

Peers, all on loopback: the test IdP (oidc-provider, ``tests/idp``; short access tokens so
that sessions refresh all the time, refresh-token rotation on), Debian's nginx as a static
upstream (or the aiohttp upstream double when nginx is missing), and the proxy as its own
process (``python -m proxy``, OAuth2 mode, cookie store, JSON log at info level).

Traffic: ``--concurrency`` workers share ``--sessions`` signed-in sessions (several
requests of one session are in flight at once, so refreshes are shared and old cookies
meet the grace cache), 90 % GET and 10 % POST with the proxy's Origin. A client keeps a
Set-Cookie only from a response to its current cookie, as a browser effectively does.
Every ``--churn`` seconds one session is signed out (POST /oauth2/sign_out) once its
requests have finished, and a new one signs in through the IdP's login form.

Figures: errors (anything but 200 to a request with a live session, any exception or
timeout), refresh grants at the IdP and how many failed, RSS after warm-up and after the
run, open file descriptors at rest after warm-up and after the run (the client's
connections closed, idle upstream connections expired), and tracebacks in the log.
Pass: 0 errors, 0 failed grants, RSS within 10 %, descriptors back to baseline, no
traceback. The run is bounded by ``--max-seconds``; exit status 0 on pass, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import psutil  # noqa: E402

from tests.support.idp import RunningIdP, idp_available, start_idp  # noqa: E402
from tests.support.nginx import nginx, nginx_available  # noqa: E402
from tests.support.processes import free_port, running  # noqa: E402
from tests.support.scripted_browser import ScriptedBrowser  # noqa: E402

CLIENT_ID = "2556404-0-soak"
CLIENT_SECRET = "soak-client-secret"  # noqa: S105 (the throw-away test IdP's)
STATIC_SITE = """
    location / {
        default_type application/json;
        return 200 '{"company":"sipgate soak GmbH","balance":{"amount":123450,"currency":"EUR"}}';
    }
"""


@dataclass
class Session:
    """One signed-in browser: its cookie, and which version of it is current."""

    number: int
    browser: ScriptedBrowser
    cookie: str
    generation: int = 0
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # set when in_flight is 0
    retired: bool = False

    def __post_init__(self) -> None:
        self.idle.set()

    def update(self, sent_generation: int, set_cookies: list[str]) -> None:
        if sent_generation != self.generation or not set_cookies:
            return  # an answer to an older cookie: a newer one is already kept
        jar = dict(pair.split("=", 1) for pair in self.cookie.split("; ") if "=" in pair)
        for line in set_cookies:
            name, _, rest = line.partition("=")
            if "Max-Age=0" in line:
                jar.pop(name, None)
            else:
                jar[name] = rest.split(";", 1)[0]
        self.cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
        self.generation += 1


@dataclass
class Figures:
    requests: int = 0
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    sign_ins: int = 0
    sign_outs: int = 0
    sign_in_seconds_mean: float = 0.0
    sign_in_seconds_max: float = 0.0
    refresh_grants_ok: int = 0
    refresh_grants_failed: int = 0
    rss_after_warmup_mb: float = 0.0
    rss_after_run_mb: float = 0.0
    rss_growth_percent: float = 0.0
    fds_after_warmup: int = 0
    fds_after_run: int = 0
    log_tracebacks: int = 0
    log_error_lines: int = 0
    passed: bool = False

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(what)


class Soak:
    def __init__(self, args: argparse.Namespace, public_url: str, idp: RunningIdP) -> None:
        self.args = args
        self.public_url = public_url
        self.idp = idp
        self.sessions: list[Session] = []
        self.figures = Figures()
        self.running = asyncio.Event()  # workers run while set
        self.stop = False
        self.load_seconds = 0.0  # time the workers ran, rests excluded
        self.users = itertools.count(1)
        self.picks = itertools.count()

    async def sign_in(self) -> Session:
        browser = ScriptedBrowser()
        number = next(self.users)
        started = time.monotonic()
        await browser.login(self.public_url, f"soak-user-{number}", "/")
        took = time.monotonic() - started
        jar = browser.jar(self.public_url)
        figures = self.figures
        figures.sign_in_seconds_mean = round(
            (figures.sign_in_seconds_mean * figures.sign_ins + took) / (figures.sign_ins + 1), 3
        )
        figures.sign_in_seconds_max = round(max(figures.sign_in_seconds_max, took), 3)
        figures.sign_ins += 1
        return Session(number, browser, "; ".join(f"{k}={v}" for k, v in jar.items()))

    async def sign_out(self, session: Session) -> None:
        session.retired = True
        await session.idle.wait()  # its requests in flight finish first
        session.browser.jar(self.public_url).clear()
        headers = {"Cookie": session.cookie, "Origin": self.public_url}
        status, _, _, _ = await session.browser.request(
            "POST", f"{self.public_url}/oauth2/sign_out?rd=/", headers=headers
        )
        if status != 302:
            self.figures.error(f"sign-out answered {status}")
        self.figures.sign_outs += 1
        await session.browser.__aexit__()

    def pick(self) -> Session:
        live = [s for s in self.sessions if not s.retired]
        return live[next(self.picks) % len(live)]  # at most one session is ever retiring

    async def worker(self, client: aiohttp.ClientSession, number: int) -> None:
        for count in itertools.count(number):
            await self.running.wait()
            if self.stop or self.figures.requests >= self.args.requests:
                return
            self.figures.requests += 1
            session = self.pick()
            session.in_flight += 1
            session.idle.clear()
            generation = session.generation
            post = count % 10 == 0
            headers = {"Accept": "application/json", "Cookie": session.cookie}
            if post:
                headers["Origin"] = self.public_url
            url = f"{self.public_url}/v2/{'sessions/sms' if post else 'account'}?n={count}"
            try:
                async with client.request(
                    "POST" if post else "GET",
                    url,
                    headers=headers,
                    data=b'{"message": "soak"}' if post else None,
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as resp:
                    await resp.read()
                    self.figures.statuses[str(resp.status)] += 1
                    if resp.status != 200:
                        self.figures.error(f"{resp.status} for session {session.number}")
                    session.update(generation, resp.headers.getall("Set-Cookie", []))
            except (aiohttp.ClientError, TimeoutError) as err:
                self.figures.statuses[type(err).__name__] += 1
                self.figures.error(f"{type(err).__name__} for session {session.number}")
            finally:
                session.in_flight -= 1
                if not session.in_flight:
                    session.idle.set()

    async def churn(self) -> None:
        """Until cancelled: sign one session out and a new one in, while the load runs."""
        while True:
            await asyncio.sleep(self.args.churn)
            if not self.running.is_set() or self.stop:
                continue
            new = await self.sign_in()
            old = self.sessions[next(self.picks) % len(self.sessions)]
            self.sessions.append(new)
            self.sessions.remove(old)
            await self.sign_out(old)

    async def phase(self, until: int, deadline: float) -> None:
        """Run the workers until ``until`` requests in all, then bring them to rest."""
        connector = aiohttp.TCPConnector(limit=self.args.concurrency)
        async with aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar()
        ) as client:
            self.stop = False
            started = time.monotonic()
            self.running.set()
            workers = [
                asyncio.create_task(self.worker(client, n)) for n in range(self.args.concurrency)
            ]
            limit = min(until, self.args.requests)
            while self.figures.requests < limit and time.monotonic() < deadline:
                if all(w.done() for w in workers):
                    break
                await asyncio.sleep(0.05)
            self.stop = True
            await asyncio.gather(*workers)
            self.running.clear()
            self.load_seconds += time.monotonic() - started


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def at_rest(pid: int, seconds: float) -> int:
    """Descriptors once idle pooled connections have expired (``--rest``)."""
    time.sleep(seconds)
    return open_fds(pid)


def count_log_problems(log: Path) -> tuple[int, int]:
    tracebacks = errors = 0
    with log.open("rb") as lines:
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            tracebacks += "Traceback" in line
            errors += '"level": "error"' in line or " ERROR " in line
    return tracebacks, errors


@contextlib.contextmanager
def upstream(work: Path) -> Iterator[str]:
    port = free_port()
    if nginx_available()[0]:
        with nginx(work / "nginx", port, STATIC_SITE):
            yield f"http://127.0.0.1:{port}"
    else:
        with running(["-m", "tests.support.upstream", str(port)], port):
            yield f"http://127.0.0.1:{port}"


async def soak(args: argparse.Namespace, pid: int, public_url: str, idp: RunningIdP) -> Figures:
    run = Soak(args, public_url, idp)
    figures = run.figures
    deadline = time.monotonic() + args.max_seconds
    run.sessions = list(await asyncio.gather(*(run.sign_in() for _ in range(args.sessions))))
    idp.reset_stats()
    churn = asyncio.create_task(run.churn())
    await run.phase(args.warmup, deadline)
    figures.rss_after_warmup_mb = rss_mb(pid)
    figures.fds_after_warmup = await asyncio.to_thread(at_rest, pid, args.rest)
    print(f"warm-up: {figures.requests} requests, RSS {figures.rss_after_warmup_mb:.1f} MB, "
          f"{figures.fds_after_warmup} fds at rest", flush=True)  # fmt: skip
    await run.phase(args.requests, deadline)
    figures.seconds = round(run.load_seconds, 2)
    churn.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await churn
    for session in run.sessions:
        await session.browser.__aexit__()
    figures.rss_after_run_mb = rss_mb(pid)
    figures.fds_after_run = await asyncio.to_thread(at_rest, pid, args.rest)
    grants: dict[str, int] = idp.stats()["token"].get("refresh_token", {})
    figures.refresh_grants_ok = grants.get("success", 0)
    figures.refresh_grants_failed = sum(v for k, v in grants.items() if k != "success")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--churn", type=float, default=1.0, help="seconds between sign-ins")
    parser.add_argument("--access-ttl", type=int, default=20, help="IdP access token lifetime")
    parser.add_argument("--refresh-skew", type=float, default=10)
    # aiohttp closes idle pooled connections 15-30 s after their last use (its cleanup
    # runs every keep-alive period): at rest means after that.
    parser.add_argument("--rest", type=float, default=35.0, help="seconds to idle before fds")
    parser.add_argument("--max-seconds", type=float, default=900)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    available, reason = idp_available()
    if not available:
        print(f"soak needs the test IdP: {reason}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="sipgate-soak-"))
    try:
        return _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path) -> int:
    port = free_port()
    public_url = f"http://localhost:{port}"
    idp = start_idp(
        work / "idp",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[f"{public_url}/oauth2/callback"],
        access_ttl=args.access_ttl,
        log_requests=False,
    )
    log = work / "proxy.log"
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    try:
        with upstream(work) as upstream_url:
            env = {
                "SIPGATE_PROXY_LISTEN__PORT": str(port),
                "SIPGATE_PROXY_PUBLIC_URL": public_url,
                "SIPGATE_PROXY_UPSTREAM__URL": upstream_url,
                "SIPGATE_PROXY_AUTH__MODE": "oauth2",
                "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": idp.issuer,
                "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": CLIENT_ID,
                "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": CLIENT_SECRET,
                "SIPGATE_PROXY_AUTH__OAUTH2__REFRESH_SKEW": str(args.refresh_skew),
                "SIPGATE_PROXY_SESSION__KEYS": f"[{key}]",
                "SIPGATE_PROXY_LOG__FORMAT": "json",
                "SIPGATE_PROXY_LOG__LEVEL": "info",
            }
            with running(["-m", "proxy"], port, env, log=log) as proxy:
                figures = asyncio.run(soak(args, proxy.pid, public_url, idp))
    finally:
        idp.stop()
    figures.log_tracebacks, figures.log_error_lines = count_log_problems(log)
    warm, end = figures.rss_after_warmup_mb, figures.rss_after_run_mb
    figures.rss_growth_percent = round((end - warm) / warm * 100, 2)
    figures.passed = (
        figures.errors == 0
        and figures.refresh_grants_failed == 0
        and figures.rss_after_run_mb <= 1.10 * figures.rss_after_warmup_mb
        and figures.fds_after_run <= figures.fds_after_warmup
        and figures.log_tracebacks == 0
        and figures.requests >= args.requests
    )
    report: dict[str, Any] = {
        **asdict(figures),
        "statuses": dict(figures.statuses),
        "requests_per_second": round(figures.requests / figures.seconds, 1),
        "settings": {k: str(v) for k, v in vars(args).items()},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if figures.passed else 1


if __name__ == "__main__":
    sys.exit(main())

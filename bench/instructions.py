"""Instructions per proxied request, counted by callgrind: this checkout against another
(``--baseline DIR``, e.g. ``git worktree add /tmp/base <rev>``), in OAuth2 mode with a
session cookie, small GETs from nginx on loopback.

Wall-clock CPU on these shared machines wanders by tens of percent between rounds;
callgrind counts instructions, which do not depend on what else the machine does, so a
change's cost per request is a ratio that holds to about a percent. Each proxy runs
under valgrind (about 50 times slower): a warm-up, then ``--requests`` counted requests
with ``--concurrency`` in flight.

    .venv/bin/python bench/instructions.py --baseline DIR [--requests 1000] [--concurrency 50]

``--tracing``: this checkout with tracing on (every span exported, over OTLP/HTTP to the
same nginx, which answers the POST with 200), the baseline with it off: give this
checkout as the baseline too, and the ratio is what tracing costs. ``--tracing 0``: the
same with no trace sampled (spans made but neither recorded nor exported).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import peers
from bench.scenarios import SMALL_PATH
from proxy.crypto.keys import decode_key, generate_key
from proxy.crypto.sealing import KeyRing
from proxy.oauth.tokens import TokenSet
from proxy.session.cookie_backend import cookie_session_store

ROOT = Path(__file__).resolve().parents[1]
WARM_UP = 200
VALGRIND = ("valgrind", "--tool=callgrind", "--instr-atstart=no")
COOKIE = "sipgate_proxy"


def session_cookie(key: str) -> str:
    """A session as a login leaves it: a JWT-shaped access token of sipgate's size."""
    store = cookie_session_store(KeyRing([decode_key(key)]), COOKIE, False, 30 * 86400)
    now = time.time()
    access = "eyJ" + os.urandom(700).hex() + ".eyJzdWIiOiJhbGljZSJ9.c2ln"
    tokens = TokenSet(access, os.urandom(350).hex(), now + 86400, now + 2 * 86400, "all", "alice")
    coroutine = store.save(tokens, now, {})
    try:
        coroutine.send(None)  # the cookie store does no I/O: it finishes at once
    except StopIteration as done:
        lines: list[str] = done.value
    return "; ".join(line.split(";", 1)[0] for line in lines)


def environment(port: int, upstream: str, key: str, tracing: float | None = None) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("SIPGATE_PROXY_", "OTEL_"))}
    traced = {
        "SIPGATE_PROXY_TRACING__OTLP_ENDPOINT": f"{upstream}/v1/traces",
        "SIPGATE_PROXY_TRACING__SAMPLE_RATIO": str(tracing),
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # exported while counted, not after the dump
    }
    return (
        kept
        | (traced if tracing is not None else {})
        | {
            "SIPGATE_PROXY_LISTEN__HOST": "127.0.0.1",
            "SIPGATE_PROXY_LISTEN__PORT": str(port),
            "SIPGATE_PROXY_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "SIPGATE_PROXY_UPSTREAM__URL": upstream,
            "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": "http://127.0.0.1:9/realms/bench",
            "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": "bench",
            "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": "bench-secret",
            "SIPGATE_PROXY_SESSION__KEYS": f"[{key}]",
            "SIPGATE_PROXY_LOG__LEVEL": "warning",
        }
    )


async def load(url: str, cookie: str, count: int, concurrency: int) -> None:
    headers = {"Cookie": cookie, "Accept": "application/json"}
    gate = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as client:

        async def one() -> None:
            async with gate, client.get(url, headers=headers) as answer:
                await answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"{url}: HTTP {answer.status}")

        await asyncio.gather(*(one() for _ in range(count)))


def counted(
    source: Path,
    upstream: str,
    key: str,
    args: argparse.Namespace,
    work: Path,
    tracing: float | None,
) -> int:
    """Instructions the proxy from ``source`` spent on ``args.requests`` requests."""
    port = peers.free_port()
    out = work / f"callgrind.{source.name}{'' if tracing is None else '.traced'}"
    process = subprocess.Popen(  # noqa: S603 (fixed programs, loopback targets)
        [*VALGRIND, f"--callgrind-out-file={out}", peers.PYTHON, "-m", "proxy"],
        cwd=source,
        env=environment(port, upstream, key, tracing),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        if peers.wait_ready(f"{url}/readyz", process, time.monotonic(), timeout=120) is None:
            raise RuntimeError(f"{source}: the proxy did not get ready under valgrind")
        cookie = session_cookie(key)
        asyncio.run(load(url + SMALL_PATH, cookie, WARM_UP, args.concurrency))
        control = ["callgrind_control", "--instr=on", str(process.pid)]
        subprocess.run(control, check=True, capture_output=True)  # noqa: S603
        asyncio.run(load(url + SMALL_PATH, cookie, args.requests, args.concurrency))
        for step in ("--instr=off", "--dump"):
            control[1] = step
            subprocess.run(control, check=True, capture_output=True)  # noqa: S603
    finally:
        process.terminate()
        process.wait(timeout=120)
    return _total(out)


def _total(out: Path) -> int:
    """The dump's count (callgrind writes one file per dump, and one at exit)."""
    totals = [
        int(line.split()[1])
        for dump in out.parent.glob(out.name + "*")
        for line in dump.read_text().splitlines()
        if line.startswith("totals:")
    ]
    if not totals or max(totals) == 0:
        raise RuntimeError(f"{out}: callgrind counted nothing")
    return max(totals)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="another checkout")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--tracing",
        type=float,
        nargs="?",
        const=1.0,
        metavar="SAMPLE_RATIO",
        help="this checkout with tracing on (tracing.sample_ratio, default 1)",
    )
    args = parser.parse_args()
    key = generate_key()
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        nginx = peers.start_nginx(stack, work, big_file=False)
        base, this = (
            counted(source, nginx.url, key, args, work, tracing) / args.requests
            for source, tracing in ((args.baseline.resolve(), None), (ROOT, args.tracing))
        )
    print(f"instructions per request, c{args.concurrency}, {args.requests} requests:")
    print(f"  baseline ({args.baseline}): {base:,.0f}")
    traced = "" if args.tracing is None else f" (tracing on, sample ratio {args.tracing:g})"
    print(f"  this checkout{traced}:  {this:,.0f}")
    print(f"  this / baseline: {this / base:.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

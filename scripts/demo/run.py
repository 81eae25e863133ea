"""`make demo`: the whole flow on this machine, no sipgate account needed.

Starts, on loopback and in the foreground: the test IdP (oidc-provider with Keycloak's
paths and sipgate-sized tokens, short-lived access tokens so that refreshes can be
watched), a stand-in for the API (scripts/demo/api.py) and the proxy in the chosen mode.
Ctrl-C (SIGINT) or SIGTERM stops everything it started, by PID, and removes its files.
Nothing here is sipgate: both stand-ins say so on every page and answer.

    .venv/bin/python -m scripts.demo.run [--mode oauth2|personal_access_token|service]
                                         [--port 8080] [--access-ttl 60]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from proxy.crypto.keys import generate_key
from scripts.demo.api import DEMO_PAT
from tests.support.idp import start_idp
from tests.support.processes import free_port, stop, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID, CLIENT_SECRET = "demo-client", "demo-client-secret-not-for-production"
USER, PASSWORD = "demo", "demo"  # the demo IdP takes any name (it becomes the sub)


def proxy_environment(
    args: argparse.Namespace, issuer: str, api: str, work: Path
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPGATE_PROXY_")}
    env |= {
        "SIPGATE_PROXY_LISTEN__PORT": str(args.port),
        "SIPGATE_PROXY_PUBLIC_URL": f"http://localhost:{args.port}",
        "SIPGATE_PROXY_UPSTREAM__URL": api,
        "SIPGATE_PROXY_AUTH__MODE": args.mode,
        "SIPGATE_PROXY_AUTH__OAUTH2__ISSUER": issuer,
        "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID": CLIENT_ID,
        "SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET": CLIENT_SECRET,
        "SIPGATE_PROXY_SESSION__KEYS": f"[{generate_key()}]",
        "SIPGATE_PROXY_LOG__FORMAT": "text",
    }
    if args.mode == "personal_access_token":
        env["SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN_ID"] = DEMO_PAT[0]
        env["SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN"] = DEMO_PAT[1]
    if args.mode == "service":
        env["SIPGATE_PROXY_AUTH__SERVICE__ALLOWED_SUBJECTS"] = f"[{USER}]"
        env["SIPGATE_PROXY_AUTH__SERVICE__STATE_FILE"] = str(work / "identity")
    return env


def what_to_open(args: argparse.Namespace) -> str:
    base = f"http://localhost:{args.port}"
    steps = {
        "oauth2": f"open {base}/v2/account in a browser: the demo login, then the API's answer",
        "personal_access_token": f"curl {base}/v2/account   (no login: the demo PAT is added)",
        "service": f"open {base}/oauth2/start and sign in once, then: curl {base}/v2/account",
    }
    return (
        f"\nsipgate-auth-proxy demo ({args.mode} mode): NOT sipgate, made-up data\n"
        f"  {steps[args.mode]}\n"
        f"  demo login: user {USER!r}, password {PASSWORD!r} (any name works)\n"
        f"  access tokens live {args.access_ttl} s: watch the proxy refresh them below\n"
        "  Ctrl-C stops everything\n"
    )


@contextlib.contextmanager
def started(args: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[int]:
    """A child in the foreground (its output is ours); stopped by PID on the way out."""
    process = subprocess.Popen(  # noqa: S603 (fixed programs, loopback only)
        [sys.executable, *args], cwd=ROOT, env=env, start_new_session=True
    )
    try:
        wait_for_port(port, process, timeout=30)
        yield process.pid
    finally:
        stop(process, timeout=15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode", default="oauth2", choices=["oauth2", "personal_access_token", "service"]
    )
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--access-ttl", type=int, default=60)
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    work = Path(tempfile.mkdtemp(prefix="sipgate-demo-"))
    try:
        return run(args, work, stop)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path, stop: threading.Event) -> int:
    redirect = f"http://localhost:{args.port}/oauth2/callback"
    idp = start_idp(
        work,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[redirect],
        access_ttl=args.access_ttl,
    )
    try:
        api_port = free_port()
        api = ["-m", "scripts.demo.api", str(api_port), idp.jwks_uri]
        with started(api, api_port) as api_pid:
            env = proxy_environment(args, idp.issuer, f"http://127.0.0.1:{api_port}", work)
            with started(["-m", "proxy"], args.port, env) as proxy_pid:
                print(what_to_open(args), flush=True)
                print(f"pids: idp {idp.pid} api {api_pid} proxy {proxy_pid}", flush=True)
                stop.wait()
                print("\nstopping the demo", flush=True)
    finally:
        idp.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

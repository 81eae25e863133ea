"""`make demo`: the whole flow on this machine, no sipgate account needed.

Starts, on loopback and in the foreground: the test IdP (oidc-provider with Keycloak's
paths and sipgate-sized tokens, short-lived access tokens so that refreshes can be
watched; not in PAT mode, which has no login), a stand-in for the API
(scripts/demo/api.py) and the proxy in the chosen mode.
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
from scripts.demo.api import DEMO_PAT, PATHS
from tests.support.idp import start_idp
from tests.support.processes import free_port, stop, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
CLIENT_ID, CLIENT_SECRET = "demo-client", "demo-client-secret-not-for-production"
USER = "demo"  # the demo IdP takes any name (it becomes the sub) and any non-empty password
PAT = "personal_access_token"


def proxy_environment(
    args: argparse.Namespace, issuer: str | None, api: str, work: Path
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPGATE_PROXY_")}
    env |= {
        "SIPGATE_PROXY_LISTEN__PORT": str(args.port),
        "SIPGATE_PROXY_PUBLIC_URL": f"http://localhost:{args.port}",
        "SIPGATE_PROXY_UPSTREAM__URL": api,
        "SIPGATE_PROXY_AUTH__MODE": args.mode,
        "SIPGATE_PROXY_SESSION__KEYS": f"[{generate_key()}]",
        "SIPGATE_PROXY_LOG__FORMAT": "text",
    }
    if issuer is not None:
        env["SIPGATE_PROXY_AUTH__OAUTH2__ISSUER"] = issuer
        env["SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_ID"] = CLIENT_ID
        env["SIPGATE_PROXY_AUTH__OAUTH2__CLIENT_SECRET"] = CLIENT_SECRET
    if args.mode == PAT:
        env["SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN_ID"] = DEMO_PAT[0]
        env["SIPGATE_PROXY_AUTH__PERSONAL_ACCESS_TOKEN__TOKEN"] = DEMO_PAT[1]
    if args.mode == "service":
        env["SIPGATE_PROXY_AUTH__SERVICE__ALLOWED_SUBJECTS"] = f"[{USER}]"
        env["SIPGATE_PROXY_AUTH__SERVICE__STATE_FILE"] = str(work / "identity")
    return env


def banner(args: argparse.Namespace) -> str:
    """What to do in this mode, and what the stand-ins are; login details only where
    there is a login."""
    base = f"http://localhost:{args.port}"
    lines = {
        "oauth2": [
            f"open {base}/v2/account in a browser: the demo login, then the API's answer",
            "demo login: any user name (it becomes your sub); any password works here "
            "(not an empty one)",
            f"{base}/oauth2/userinfo shows your session, {base}/oauth2/sign_out ends it",
        ],
        PAT: [
            f"curl {base}/v2/account   (no login: the proxy adds the demo's Personal Access Token)",
        ],
        "service": [
            f"open {base}/oauth2/start and sign in as {USER!r} (the one allowed subject; "
            f"any password works here), then: curl {base}/v2/account",
            f"{base}/oauth2/service shows the identity, {base}/oauth2/sign_out removes it",
        ],
    }[args.mode]
    lines.append("the API stand-in answers GET " + ", ".join(PATHS) + " (others: 404)")
    if args.mode != PAT:
        lines.append(f"access tokens live {args.access_ttl} s: watch the proxy refresh them")
    lines.append("Ctrl-C stops everything")
    head = f"\nsipgate-auth-proxy demo ({args.mode} mode): NOT sipgate, made-up data\n"
    return head + "".join(f"  {line}\n" for line in lines)


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
    idp = None
    if args.mode != PAT:  # PAT mode has no login: no IdP
        idp = start_idp(
            work,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            redirect_uris=[f"http://localhost:{args.port}/oauth2/callback"],
            access_ttl=args.access_ttl,
        )
    try:
        api_port = free_port()
        api = ["-m", "scripts.demo.api", str(api_port), *([idp.jwks_uri] if idp else [])]
        with started(api, api_port) as api_pid:
            issuer = idp.issuer if idp else None
            env = proxy_environment(args, issuer, f"http://127.0.0.1:{api_port}", work)
            with started(["-m", "proxy"], args.port, env) as proxy_pid:
                print(banner(args), flush=True)
                idp_pid = f"idp {idp.pid} " if idp else ""
                print(f"pids: {idp_pid}api {api_pid} proxy {proxy_pid}", flush=True)
                stop.wait()
                print("\nstopping the demo", flush=True)
    finally:
        if idp is not None:
            idp.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Instructions the client gate spends per request, counted by callgrind: a client
holding scopes against a client holding one path rule (issue 25: within 5 %).

The gate's ``admit`` runs ``--requests`` times in one process under callgrind, and once
more with no request at all; the difference over ``--requests`` is the cost of one
request through the gate (credential check, canonical path, rule or operation match,
rate limit off), without the start-up both runs share. Instructions, not seconds: they
do not depend on what else the machine does.

    .venv/bin/python bench/gate_scopes.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKEN_ID, TOKEN = "token-Bench1", str(uuid.UUID(int=1, version=4))
# (what the client holds, the request it makes): each pair is granted
VARIANTS = {
    "one path rule": ({"allow": ["GET /v2/history/**"]}, "GET", "/v2/history/h1"),
    "scopes": ({"scopes": ["history:read", "balance:read"]}, "GET", "/v2/history/h1"),
    "one rule, deep path": (
        {"allow": ["GET /v2/*/phonelines/*/voicemails/*/greetings"]},
        "GET",
        "/v2/w0/phonelines/p1/voicemails/v1/greetings",
    ),
    "scopes, deep path": (
        {"scopes": ["phonelines:voicemails:read"]},
        "GET",
        "/v2/w0/phonelines/p1/voicemails/v1/greetings",
    ),
    "scopes: all": ({"scopes": ["all"]}, "GET", "/v2/history/h1"),
}


def run_gate(variant: str, requests: int) -> None:
    """The measured process: one gate, one client, ``requests`` admissions."""
    from aiohttp.test_utils import make_mocked_request

    from proxy.auth.clients.gate import ClientGate, known
    from proxy.config import Client

    holds, method, path = VARIANTS[variant]
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    client = Client(name="bench", token_id=TOKEN_ID, token_sha256=digest, **holds)
    gate = ClientGate([known(client)], anonymous=False)
    basic = base64.b64encode(f"{TOKEN_ID}:{TOKEN}".encode()).decode()
    request = make_mocked_request(method, path, headers={"Authorization": f"Basic {basic}"})
    for _ in range(requests):
        gate.admit(request)


def counted(variant: str, requests: int, work: Path) -> int:
    out = work / f"callgrind.{abs(hash(variant))}.{requests}"
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        __file__,
        "--run",
        variant,
        "--requests",
        str(requests),
    ]
    env = os.environ | {"PYTHONHASHSEED": "0"}  # the same dict layouts in every run
    subprocess.run(command, check=True, capture_output=True, env=env)  # noqa: S603
    for line in out.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"{out}: callgrind counted nothing")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--run", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_gate(args.run, args.requests)
        return 0
    per_request = {}
    with tempfile.TemporaryDirectory() as directory:
        for variant in VARIANTS:
            spent = counted(variant, args.requests, Path(directory))
            spent -= counted(variant, 0, Path(directory))
            per_request[variant] = spent / args.requests
    print(f"instructions per request through the client gate ({args.requests} requests):")
    for variant, cost in per_request.items():
        base = per_request["one rule, deep path" if "deep" in variant else "one path rule"]
        print(f"  {variant:<20} {cost:>9,.0f}  {cost / base:.3f}x the rule's")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

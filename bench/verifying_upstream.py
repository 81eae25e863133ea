"""The test suite's api.sipgate.com double (tests/support/upstream.py) as a process: it
verifies every Bearer JWT on /v2/ against the IdP's JWKS (signature and expiry) and
answers 401 otherwise. The refresh scenario uses it so that an answer of 200 means the
request really carried a valid access token, not merely a JWT-shaped one.

Usage: python bench/verifying_upstream.py PORT JWKS_URL
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from tests.support.upstream import create_upstream_app  # noqa: E402

if __name__ == "__main__":
    port, jwks_url = int(sys.argv[1]), sys.argv[2]
    web.run_app(
        create_upstream_app(jwks_url=jwks_url),
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
    )

"""What the layers of one request tell each other, as typed request keys.

The authenticator and the forwarder fill these in; the observer middleware reads them
for the access log line and the metrics.
"""

from __future__ import annotations

from aiohttp import web

REQUEST_ID = web.RequestKey("request_id", str)
SUBJECT = web.RequestKey("subject", str)  # the session's subject (logged hashed)
REFRESH_OUTCOME = web.RequestKey("refresh_outcome", str)
UPSTREAM_STATUS = web.RequestKey("upstream_status", int)
UPSTREAM_SECONDS = web.RequestKey("upstream_seconds", float)
UPSTREAM_401_RETRIED = web.RequestKey("upstream_401_retried", bool)
UPSTREAM_ERROR = web.RequestKey("upstream_error", str)  # timeout | unreachable
SESSION_COOKIE_BYTES = web.RequestKey("session_cookie_bytes", int)
LOGIN_OUTCOME = web.RequestKey("login_outcome", str)
STORE_ERROR = web.RequestKey("store_error", bool)

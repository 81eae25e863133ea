"""What the layers of one request tell each other, as typed request keys.

The authenticator and the forwarder fill these in; the observer middleware reads them
for the access log line and the metrics.
"""

from __future__ import annotations

from collections.abc import Iterable

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
CLIENT = web.RequestKey("client", str)  # the shared modes' app, by its configured name
POLICY_DENIED = web.RequestKey("policy_denied", str)  # why the app was refused
# A webhook (webhooks/): its event (name and call id, never the numbers) and outcome.
WEBHOOK_EVENT = web.RequestKey("webhook_event", str)
WEBHOOK_CALL_ID = web.RequestKey("webhook_call_id", str)
WEBHOOK_OUTCOME = web.RequestKey("webhook_outcome", str)
# The request's span (tracing on): its trace and span id, as the access log writes them.
TRACE_ID = web.RequestKey("trace_id", str)
SPAN_ID = web.RequestKey("span_id", str)
# The Set-Cookie lines this request's answer carries, by what they hold ("session",
# "login_flow"): whatever the answer turns out to be (proxied, streamed, an error page,
# a redirect), one response hook writes them, once (http/cookies.py).
SET_COOKIES = web.RequestKey("set_cookies", dict[str, tuple[str, ...]])


def set_cookies(request: web.Request, holding: str, lines: Iterable[str]) -> None:
    """The cookies that store ``holding`` for this answer: a later decision about the same
    thing (a refresh after an upstream 401) replaces the earlier one, never adds to it."""
    if SET_COOKIES not in request:
        request[SET_COOKIES] = {}
    request[SET_COOKIES][holding] = tuple(lines)


def cookies_to_set(request: web.Request) -> list[str]:
    return [line for lines in request.get(SET_COOKIES, {}).values() for line in lines]

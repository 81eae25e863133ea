"""One middleware that sees every request whole: request id, access log line, metrics."""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from proxy import request_state as state
from proxy.metrics import Metrics

log = logging.getLogger("proxy.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Unique without a syscall per request: a random per-process prefix and a counter.
_ID_PREFIX = os.urandom(12).hex()
_ID_COUNTER = itertools.count()


def observer(metrics: Metrics) -> Middleware:
    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        request[state.REQUEST_ID] = _request_id(request)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as err:
            status = err.status
            raise
        finally:
            _record(request, metrics, status, time.perf_counter() - started)

    return observe


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer, streamed or not, names its request id."""
    request_id = request.get(state.REQUEST_ID)
    if request_id:
        response.headers["X-Request-ID"] = request_id


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-ID", "")
    return given if VALID_REQUEST_ID.match(given) else f"{_ID_PREFIX}{next(_ID_COUNTER):08x}"


def _record(request: web.Request, metrics: Metrics, status: int, seconds: float) -> None:
    route = route_class(request)
    metrics.count_request(route, status, seconds)
    _count_details(request, metrics)
    if not log.isEnabledFor(logging.INFO):
        return  # build no log fields nobody will read
    fields: dict[str, object] = {
        "request_id": request[state.REQUEST_ID],
        "method": request.method,
        "path": request.path,
        "status": status,
        "duration_ms": round(seconds * 1000, 2),
        "route": route,
    }
    if request.query_string:
        fields["query_keys"] = sorted(set(request.query))  # values may be secret
    for key, name in (
        (state.UPSTREAM_STATUS, "upstream_status"),
        (state.REFRESH_OUTCOME, "refresh"),
        (state.LOGIN_OUTCOME, "login"),
    ):
        if key in request:
            fields[name] = request[key]
    if state.UPSTREAM_SECONDS in request:
        fields["upstream_ms"] = round(request[state.UPSTREAM_SECONDS] * 1000, 2)
    if state.SUBJECT in request:
        fields["subject"] = _hashed(request[state.SUBJECT])
    log.info("%s %s %d", request.method, request.path, status, extra=fields)


def route_class(request: web.Request) -> str:
    """A bounded label: the part before ':' of the matched route's name, else proxy."""
    name = request.match_info.route.name if request.match_info.route else None
    return name.split(":", 1)[0] if name else "proxy"


def _count_details(request: web.Request, metrics: Metrics) -> None:
    if state.UPSTREAM_SECONDS in request:
        metrics.upstream_seconds.observe(request[state.UPSTREAM_SECONDS])
    if state.UPSTREAM_ERROR in request:
        metrics.upstream_errors.labels(request[state.UPSTREAM_ERROR]).inc()
    if state.REFRESH_OUTCOME in request:
        metrics.refreshes.labels(request[state.REFRESH_OUTCOME]).inc()
    if state.LOGIN_OUTCOME in request:
        metrics.logins.labels(request[state.LOGIN_OUTCOME]).inc()
    if request.get(state.STORE_ERROR):
        metrics.store_errors.inc()
    if request.get(state.UPSTREAM_401_RETRIED):
        metrics.upstream_401_retries.inc()
    if state.SESSION_COOKIE_BYTES in request:
        metrics.session_cookie_bytes.observe(request[state.SESSION_COOKIE_BYTES])


def _hashed(subject: str) -> str:
    """Correlates requests of one user without writing who the user is."""
    return hashlib.sha256(b"sipgate-auth-proxy subject\x00" + subject.encode()).hexdigest()[:16]

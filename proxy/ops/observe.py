"""The observer sees every request whole: request id, access log line, metrics.

As a middleware (observer) on both listeners; start() and finish() are its two halves.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import os
import re
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from proxy import request_state as state
from proxy.ops.metrics import Metrics

log = logging.getLogger("proxy.access")


VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_valid_request_id = VALID_REQUEST_ID.match
# Unique without a syscall per request: a random per-process prefix and a counter,
# both made anew in a forked worker (else the workers would hand out the same ids).
_ID_PREFIX = os.urandom(12).hex()
_ID_COUNTER = itertools.count()


def _new_id_source() -> None:
    global _ID_PREFIX, _ID_COUNTER
    _ID_PREFIX, _ID_COUNTER = os.urandom(12).hex(), itertools.count()


os.register_at_fork(after_in_child=_new_id_source)

# The keys the layers of one request noted for the observer (see request_state).
Noted = set[str | web.RequestKey[Any]]
_RARE_DETAILS = frozenset(
    {
        state.UPSTREAM_ERROR,
        state.REFRESH_OUTCOME,
        state.LOGIN_OUTCOME,
        state.STORE_ERROR,
        state.UPSTREAM_401_RETRIED,
        state.SESSION_COOKIE_BYTES,
        state.CLIENT,
        state.POLICY_DENIED,
    }
)
_LOGGED = (
    (state.UPSTREAM_STATUS, "upstream_status"),
    (state.REFRESH_OUTCOME, "refresh"),
    (state.LOGIN_OUTCOME, "login"),
    (state.CLIENT, "client"),
    (state.POLICY_DENIED, "denied"),
    (state.WEBHOOK_EVENT, "event"),  # a webhook's: never its phone numbers
    (state.WEBHOOK_CALL_ID, "call_id"),
    (state.WEBHOOK_OUTCOME, "webhook"),
    (state.TRACE_ID, "trace_id"),  # tracing on: the request's span
    (state.SPAN_ID, "span_id"),
)


def observer(metrics: Metrics) -> Middleware:
    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = start(request)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as err:
            status = err.status
            raise
        finally:
            finish(request, metrics, status, started)

    return observe


def start(request: web.Request) -> float:
    """Names the request; returns when it started. finish() records it."""
    started = time.perf_counter()
    request[state.REQUEST_ID] = _request_id(request)
    return started


def finish(request: web.Request, metrics: Metrics, status: int, started: float) -> None:
    _record(request, metrics, status, time.perf_counter() - started)


async def add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every answer, streamed or not, names its request id."""
    name_response(request, response)


def name_response(request: web.Request, response: web.StreamResponse) -> None:
    """add_request_id's work, for a receiver that does more (one coroutine, not two)."""
    request_id = request.get(state.REQUEST_ID)
    if request_id:
        response.headers["X-Request-ID"] = request_id


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-ID")
    if given and _valid_request_id(given):  # most clients send none: skip the regex
        return given
    return f"{_ID_PREFIX}{next(_ID_COUNTER):08x}"


def _record(request: web.Request, metrics: Metrics, status: int, seconds: float) -> None:
    route = route_class(request)
    metrics.count_request(route, status, seconds)
    # Which keys the layers noted, in one pass: ``key in request`` and ``request.get(key)``
    # are Mapping's generic versions, which raise and catch a KeyError for each absent key.
    noted = set(request)
    _count_details(request, noted, metrics)
    _count_client(request, noted, metrics, status)
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
    for key, name in _LOGGED:
        if key in noted:
            fields[name] = request[key]
    if state.UPSTREAM_SECONDS in noted:
        fields["upstream_ms"] = round(request[state.UPSTREAM_SECONDS] * 1000, 2)
    if state.SUBJECT in noted:
        fields["subject"] = _hashed(request[state.SUBJECT])
    log.info("%s %s %d", request.method, request.path, status, extra=fields)


def route_class(request: web.Request) -> str:
    """A bounded label: the part before ':' of the matched route's name, else proxy."""
    route = request.match_info.route
    return _route_class(route.name if route else None)


@functools.cache  # route names are the app's own: a bounded set
def _route_class(name: str | None) -> str:
    return name.split(":", 1)[0] if name else "proxy"


def _count_client(request: web.Request, noted: Noted, metrics: Metrics, status: int) -> None:
    client = request[state.CLIENT] if state.CLIENT in noted else None
    if client is not None:
        metrics.client_requests.labels(client, str(status)).inc()
    if state.POLICY_DENIED in noted:
        metrics.policy_denied.labels(client or "unknown", request[state.POLICY_DENIED]).inc()


def _count_details(request: web.Request, noted: Noted, metrics: Metrics) -> None:
    if state.UPSTREAM_SECONDS in noted:
        metrics.upstream_seconds.observe(request[state.UPSTREAM_SECONDS])
    if noted.isdisjoint(_RARE_DETAILS):
        return  # most requests: one test instead of six
    if state.UPSTREAM_ERROR in noted:
        metrics.upstream_errors.labels(request[state.UPSTREAM_ERROR]).inc()
    if state.REFRESH_OUTCOME in noted:
        metrics.refreshes.labels(request[state.REFRESH_OUTCOME]).inc()
    if state.LOGIN_OUTCOME in noted:
        metrics.logins.labels(request[state.LOGIN_OUTCOME]).inc()
    if state.STORE_ERROR in noted and request[state.STORE_ERROR]:
        metrics.store_errors.inc()
    if state.UPSTREAM_401_RETRIED in noted and request[state.UPSTREAM_401_RETRIED]:
        metrics.upstream_401_retries.inc()
    if state.SESSION_COOKIE_BYTES in noted:
        metrics.session_cookie_bytes.observe(request[state.SESSION_COOKIE_BYTES])


def _hashed(subject: str) -> str:
    """Correlates requests of one user without writing who the user is."""
    return hashlib.sha256(b"sipgate-auth-proxy subject\x00" + subject.encode()).hexdigest()[:16]

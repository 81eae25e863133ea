"""The request's own span (SERVER): it continues the caller's W3C trace context
(``traceparent``, ``tracestate``) or starts a trace, and names its ids for the access
log. Without ``trust_incoming`` every request starts a trace (the proxy's sample_ratio
decides, never a caller's sampled flag) and the caller's span is only a link.
Attributes follow OpenTelemetry's HTTP conventions; the path is there, the query string
never is (its values may be secret)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import (
    Link,
    Span,
    SpanKind,
    Tracer,
    format_span_id,
    format_trace_id,
    get_current_span,
)
from opentelemetry.util.types import AttributeValue

from proxy import request_state as state
from proxy.tracing.spans import failed

# Any other method is "_OTHER" (a client's token must not become a span name).
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
REQUEST_ID = "sipgate_proxy.request_id"


def server_spans(
    tracer: Tracer, propagator: TextMapPropagator, trust_incoming: bool = True
) -> Middleware:
    @web.middleware
    async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
        method = known_method(request.method)
        route = own_route(request)
        caller = propagator.extract(request.headers)
        with tracer.start_as_current_span(
            f"{method} {route}" if route else method,
            context=caller if trust_incoming else Context(),
            links=() if trust_incoming else _linked(caller),
            kind=SpanKind.SERVER,
            attributes=_attributes(request, method, route),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            ids = span.get_span_context()
            request[state.TRACE_ID] = format_trace_id(ids.trace_id)
            request[state.SPAN_ID] = format_span_id(ids.span_id)
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as err:
                status = err.status
                raise
            finally:
                _answered(span, request, status)

    return traced


def _linked(caller: Context) -> list[Link]:
    """The caller's span as a link, when it sent a valid one."""
    span = get_current_span(caller).get_span_context()
    return [Link(span)] if span.is_valid else []


def known_method(method: str) -> str:
    return method if method in KNOWN_METHODS else "_OTHER"


def own_route(request: web.Request) -> str | None:
    """The template of the proxy's own route that matched; None for a proxied request."""
    route = request.match_info.route
    if route.name is None or route.resource is None:
        return None
    return route.resource.canonical


def _attributes(request: web.Request, method: str, route: str | None) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "http.request.method": method,
        "url.scheme": request.scheme,
        "url.path": request.path,
    }
    if route is not None:
        attributes["http.route"] = route
    return attributes


def _answered(span: Span, request: web.Request, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if state.REQUEST_ID in request:
        span.set_attribute(REQUEST_ID, request[state.REQUEST_ID])
    if status >= 500:  # a 4xx is the client's: not the server span's failure
        failed(span, str(status))

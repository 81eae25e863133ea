"""A span (CLIENT) for every call the proxy makes, to the upstream or the IdP, and the
W3C trace context it carries: the proxy's span is the callee's parent, so the client's
own ``traceparent``/``tracestate`` never pass on while tracing is on. An aiohttp client
middleware; the query string is left out of ``url.full``."""

from __future__ import annotations

from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from aiohttp.client_middlewares import ClientMiddlewareType
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

from proxy.tracing.server import known_method
from proxy.tracing.spans import failed, started

PEER = "sipgate_proxy.peer"
TRACE_CONTEXT_FIELDS = ("traceparent", "tracestate")


def client_spans(tracer: Tracer, propagator: TextMapPropagator, peer: str) -> ClientMiddlewareType:
    """``peer``: which one is called ("upstream", "idp"), as an attribute."""

    async def traced(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        method = known_method(request.method)
        with started(tracer, method, SpanKind.CLIENT, _attributes(request, method, peer)) as span:
            for name in TRACE_CONTEXT_FIELDS:
                request.headers.popall(name, None)
            propagator.inject(request.headers)
            response = await handler(request)
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 400:
                failed(span, str(response.status))
            return response

    return traced


def _attributes(request: ClientRequest, method: str, peer: str) -> dict[str, AttributeValue]:
    url = request.url
    attributes: dict[str, AttributeValue] = {
        "http.request.method": method,
        "server.address": url.host or "",
        "url.full": str(url.with_user(None).with_query(None).with_fragment(None)),
        PEER: peer,
    }
    if url.port is not None:
        attributes["server.port"] = url.port
    return attributes

"""A local OTLP/HTTP collector: accepts POST /v1/traces (protobuf, as the SDK's exporter
sends it), decodes each request with opentelemetry-proto and keeps the spans."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span


@dataclass(frozen=True)
class ReceivedSpan:
    span: Span
    resource: dict[str, object]

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_id(self) -> str:
        return self.span.parent_span_id.hex()

    @property
    def attributes(self) -> dict[str, object]:
        return attributes(self.span.attributes)


WAIT = 15.0  # seconds spans may take to arrive


class Received:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.headers: list[dict[str, str]] = []  # of each export request

    async def wait_for(self, condition: Callable[[list[ReceivedSpan]], bool]) -> list[ReceivedSpan]:
        deadline = time.monotonic() + WAIT
        while not condition(self.spans):
            assert time.monotonic() < deadline, f"spans never arrived: {self.names()}"
            await asyncio.sleep(0.05)
        return self.spans

    def names(self) -> list[str]:
        return [s.name for s in self.spans]

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.trace_id == trace_id]


RECEIVER = web.AppKey("otlp_receiver", Received)


def value(any_value: AnyValue) -> object:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def attributes(pairs: list[KeyValue]) -> dict[str, object]:
    return {pair.key: value(pair.value) for pair in pairs}


async def traces(request: web.Request) -> web.Response:
    assert request.content_type == "application/x-protobuf"
    body = await request.read()
    if request.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    export = ExportTraceServiceRequest.FromString(body)
    received = request.app[RECEIVER]
    received.headers.append(dict(request.headers))
    for resource_spans in export.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            received.spans += [ReceivedSpan(s, resource) for s in scope_spans.spans]
    response = ExportTraceServiceResponse().SerializeToString()
    return web.Response(body=response, content_type="application/x-protobuf")


def create_collector_app() -> web.Application:
    app = web.Application()
    app[RECEIVER] = Received()
    app.router.add_post("/v1/traces", traces)
    return app

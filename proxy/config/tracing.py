"""The ``tracing`` section: OpenTelemetry traces over OTLP/HTTP, off unless an endpoint is
set. The SDK is an optional extra (``pip install 'sipgate-auth-proxy[tracing]'``); this
module checks that it is there without importing it."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from typing import Annotated
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from proxy.config.origins import is_loopback_host, valid_port
from proxy.config.problems import Problem
from proxy.config.secret import Secret
from proxy.config.section import Check, Positive, Section

TRACES_PATH = "/v1/traces"
# What the exporter needs: the SDK and the OTLP/HTTP exporter (which brings the protobufs).
SDK_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http")
_HEADER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _otlp_url(value: str | None) -> str | None:
    """An http(s) URL without credentials, query or fragment; a bare origin gets /v1/traces."""
    if value is None:  # written as null: off
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or not valid_port(value):
        raise ValueError("must be an http(s) URL such as http://collector:4318/v1/traces")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must hold no credentials (see tracing.headers), query or fragment")
    return value.rstrip("/") + TRACES_PATH if parts.path in ("", "/") else value


def _header_names(headers: dict[str, Secret]) -> dict[str, Secret]:
    """Header names of letters, digits, "-" and "_"."""
    for name in headers:
        if _HEADER_NAME.fullmatch(name) is None:
            raise ValueError(f"{name!r} is not a header name (letters, digits, '-' and '_')")
    return headers


class Tracing(Section, frozen=True, kw_only=True):
    """OpenTelemetry traces over OTLP/HTTP; off unless an endpoint is set."""

    otlp_endpoint: Annotated[
        Annotated[str, Check(_otlp_url)] | None,
        Meta(
            description="the collector's OTLP/HTTP traces URL (a bare origin gets "
            "/v1/traces); unset: off, no OpenTelemetry module loaded"
        ),
    ] = None
    service_name: Annotated[
        str, Meta(min_length=1, max_length=128, description="the resource's service.name")
    ] = "sipgate-auth-proxy"
    sample_ratio: Annotated[
        float,
        Meta(
            ge=0,
            le=1,
            description="share of the traces that start here that are recorded; a "
            "caller's sampled flag is followed",
        ),
    ] = 1.0
    trust_incoming: Annotated[
        bool,
        Meta(
            description="continue a caller's traceparent; false: every request starts its "
            "own trace, the caller's span linked"
        ),
    ] = True
    headers: Annotated[
        dict[str, Secret],
        Check(_header_names),
        Meta(description="sent with every export, e.g. the collector's API key (secrets)"),
    ] = msgspec.field(default_factory=dict)
    timeout: Annotated[
        Positive, Meta(description="seconds one export may take (in the background)")
    ] = 10.0

    @property
    def enabled(self) -> bool:
        return self.otlp_endpoint is not None


def tracing_problems(tracing: Tracing) -> Iterator[Problem]:
    if tracing.otlp_endpoint is None:
        return
    missing = [name for name in SDK_MODULES if not _importable(name)]
    if missing:
        yield Problem(
            "tracing.otlp_endpoint",
            "needs the OpenTelemetry SDK, which is not installed: "
            "pip install 'sipgate-auth-proxy[tracing]' (or unset the key to trace nothing)",
        )
    parts = urlsplit(tracing.otlp_endpoint)
    if tracing.headers and parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
        yield Problem(
            "tracing.headers",
            "would travel in clear to a collector that is not on loopback: use an https "
            "tracing.otlp_endpoint",
        )


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package is missing or broken
        return False

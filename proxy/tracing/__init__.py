"""OpenTelemetry traces (``tracing.otlp_endpoint``): a span for the request, the session
load and save, a refresh and each outgoing call, exported over OTLP/HTTP.

Imported only when tracing is on (``app.create_app``), so that without it no
OpenTelemetry module is loaded and the request path has no span code in it at all.
The spans carry no token, cookie, header value or query string: names, methods, paths,
status codes and outcomes only.
"""

from __future__ import annotations

from proxy.tracing.setup import Tracing

__all__ = ["Tracing"]

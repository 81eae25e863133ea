"""The proxy's own errors, each with its HTTP status and a stable machine-readable code.

    ProxyError                  (any error the proxy answers itself, JSON body)
    ├── BadRequestTarget        400  request target the proxy will not forward
    ├── ClientNotAllowed        403  client address outside allowed_client_networks
    ├── BodyTooLarge            413  request body above upstream.max_body_size
    ├── UpstreamUnreachable     502  connection refused, reset or closed early
    └── UpstreamTimeout         504  connect or read timeout

Messages are fixed strings: they never contain request data, tokens or secrets.
"""

from __future__ import annotations

import json

from aiohttp import web


class ProxyError(Exception):
    status = 500
    code = "internal_error"
    message = "internal error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        if message:
            self.message = message

    def to_response(self) -> web.Response:
        return json_error(self.status, self.code, self.message)


class BadRequestTarget(ProxyError):
    status = 400
    code = "bad_request"
    message = "the request target must be a path"


class ClientNotAllowed(ProxyError):
    status = 403
    code = "client_not_allowed"
    message = "this client address may not use the proxy"


class BodyTooLarge(ProxyError):
    status = 413
    code = "body_too_large"
    message = "the request body exceeds upstream.max_body_size"


class UpstreamUnreachable(ProxyError):
    status = 502
    code = "bad_gateway"
    message = "the upstream API could not be reached"


class UpstreamTimeout(ProxyError):
    status = 504
    code = "gateway_timeout"
    message = "the upstream API did not answer in time"


def json_error(status: int, code: str, message: str, **extra: str) -> web.Response:
    body = json.dumps({"error": code, "message": message, **extra})
    return web.Response(status=status, text=body, content_type="application/json")

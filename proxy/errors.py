"""The proxy's own errors: the one tree of everything it answers itself, each class with
its HTTP status and a stable machine-readable code (the JSON body's ``error``).

    ProxyError                      500  internal_error
    ├── BadRequestTarget            400  bad_request: a target the proxy will not forward
    ├── Unauthenticated             401  unauthenticated: no valid session
    │                                    (a browser navigation gets 302 to the login)
    ├── ClientNotAllowed            403  client_not_allowed: outside allowed_client_networks
    ├── CrossSiteRefused            403  cross_site_request: unsafe method, foreign origin
    ├── BodyTooLarge                413  body_too_large: above upstream.max_body_size
    ├── UpstreamUnreachable         502  bad_gateway: refused, reset, TLS or closed early
    ├── ServiceUnavailable          503  (base: every 503 carries Retry-After)
    │   ├── IdPUnavailable               idp_unavailable: the token needs the IdP, it is away
    │   ├── StoreUnavailable             session_store_unavailable: Redis cannot be reached
    │   └── ServiceIdentityMissing       service_identity_missing: an operator must sign in
    └── UpstreamTimeout             504  gateway_timeout: connect or read timeout

OAuth protocol failures are not in this tree: ``proxy.oauth.client`` raises its own, and
the authenticators translate them into these (one boundary, ``auth/``). An error is never
changed after it is raised; cookies that must reach the client whatever the answer live
in the request (``request_state.set_cookies``), not on the error.

Messages are fixed strings: they never contain request data, tokens or secrets.
"""

from __future__ import annotations

import json

from aiohttp import web


class ProxyError(Exception):
    status = 500
    code = "internal_error"
    message = "internal error"

    def __init_subclass__(cls, status: int | None = None, code: str | None = None) -> None:
        # Each error names its status and code where it is declared (the tree above).
        super().__init_subclass__()
        cls.status = status or cls.status
        cls.code = code or cls.code

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        if message:
            self.message = message

    def to_response(self) -> web.Response:
        return json_error(self.status, self.code, self.message)


class BadRequestTarget(ProxyError, status=400, code="bad_request"):
    message = "the request target must be a path"


class Unauthenticated(ProxyError, status=401, code="unauthenticated"):
    message = "no valid session: log in first"

    def __init__(self, login_url: str, navigation: bool) -> None:
        super().__init__()
        self.login_url = login_url
        self.navigation = navigation

    def to_response(self) -> web.Response:
        if not self.navigation:
            return self.api_response()
        response = web.Response(status=302, headers={"Location": self.login_url})
        response.headers["Cache-Control"] = "no-store"
        return response

    def api_response(self) -> web.Response:
        """The 401 whatever asked (forward-auth answers nginx, never a browser)."""
        response = json_error(self.status, self.code, self.message, login_url=self.login_url)
        response.headers["Cache-Control"] = "no-store"
        return response


class CrossSiteRefused(ProxyError, status=403, code="cross_site_request"):
    message = "unsafe request from another origin refused (CSRF protection)"


class ClientNotAllowed(ProxyError, status=403, code="client_not_allowed"):
    message = "this client address may not use the proxy"


class BodyTooLarge(ProxyError, status=413, code="body_too_large"):
    message = "the request body exceeds upstream.max_body_size"


class UpstreamUnreachable(ProxyError, status=502, code="bad_gateway"):
    message = "the upstream API could not be reached"


class ServiceUnavailable(ProxyError, status=503, code="service_unavailable"):
    """A peer the proxy needs is away for now: the client may retry after a while."""

    message = "retry shortly"
    retry_after = 5

    def to_response(self) -> web.Response:
        response = super().to_response()
        response.headers["Retry-After"] = str(self.retry_after)
        return response


class IdPUnavailable(ServiceUnavailable, code="idp_unavailable"):
    message = "the login service cannot renew the session right now; retry shortly"


class StoreUnavailable(ServiceUnavailable, code="session_store_unavailable"):
    message = "sessions cannot be read right now; retry shortly"


class ServiceIdentityMissing(ServiceUnavailable, code="service_identity_missing"):
    message = "no usable service identity: an operator must sign in"


class UpstreamTimeout(ProxyError, status=504, code="gateway_timeout"):
    message = "the upstream API did not answer in time"


def json_error(status: int, code: str, message: str, **extra: str) -> web.Response:
    body = json.dumps({"error": code, "message": message, **extra})
    return web.Response(status=status, text=body, content_type="application/json")

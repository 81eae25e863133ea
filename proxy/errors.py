"""The proxy's own errors: the one tree of everything it answers itself, each class with
its HTTP status and a stable machine-readable code (the JSON body's ``error``).

    ProxyError                      500  internal_error
    ├── BadRequestTarget            400  bad_request: a target the proxy will not forward
    ├── MalformedCredentials        400  malformed_credentials: not one Basic or Bearer
    ├── Unauthenticated             401  unauthenticated: no valid session
    │                                    (a browser navigation gets 302 to the login)
    ├── InvalidClientCredentials    401  invalid_client_credentials: unknown or wrong
    ├── BadWebhookSignature         401  bad_signature: X-Sipgate-Signature missing or wrong
    ├── ClientNotAllowed            403  client_not_allowed: outside allowed_client_networks
    ├── WebhookSourceRefused        403  source_refused: outside webhooks.source_networks
    ├── ClientNetworkRefused        403  client_network_refused: outside the client's networks
    ├── ForbiddenByPolicy           403  forbidden_by_policy: not in the client's allow list
    ├── InsufficientScope           403  insufficient_scope: no scope of the client or the
    │                                    session's token grants this sipgate operation
    ├── CrossSiteRefused            403  cross_site_request: unsafe method, foreign origin
    ├── BodyTooLarge                413  body_too_large: above upstream.max_body_size
    │   └── WebhookBodyTooLarge              webhook_body_too_large: above webhooks.max_body_size
    ├── RateLimited                 429  rate_limited: over the client's rate (Retry-After)
    ├── UpstreamUnreachable         502  bad_gateway: refused, reset, TLS or closed early
    │   └── AppUnreachable                   app_unreachable: webhooks.forward_to
    ├── ServiceUnavailable          503  (base: every 503 carries Retry-After)
    │   ├── IdPUnavailable               idp_unavailable: the token needs the IdP, it is away
    │   ├── StoreUnavailable             session_store_unavailable: Redis cannot be reached
    │   ├── ServiceIdentityMissing       service_identity_missing: an operator must sign in
    │   └── WebhookInFlight              webhook_in_flight: the same event is being delivered
    └── UpstreamTimeout             504  gateway_timeout: connect or read timeout
        └── AppTimeout                       app_timeout: webhooks.forward_to too slow

OAuth protocol failures are not in this tree: ``proxy.oauth.client`` raises its own, and
the authenticators translate them into these (one boundary, ``auth/``). An error is never
changed after it is raised; cookies that must reach the client whatever the answer live
in the request (``request_state.set_cookies``), not on the error.

Messages are fixed strings: they never contain request data, tokens or secrets. Extra
JSON fields name only what the client sent or is (ForbiddenByPolicy's method and path,
ClientNotAllowed's own address).
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
        response = json_error(self.status, self.code, self.message)
        response.headers.update(self.headers())
        return response

    def headers(self) -> dict[str, str]:
        """Header fields the answer carries besides the JSON body."""
        return {}


class BadRequestTarget(ProxyError, status=400, code="bad_request"):
    message = "the request target must be a path"


class MalformedCredentials(ProxyError, status=400, code="malformed_credentials"):
    message = "the Authorization header must be one Basic or Bearer credential"


class InvalidClientCredentials(ProxyError, status=401, code="invalid_client_credentials"):
    message = "unknown or wrong client credential"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Basic realm="sipgate-auth-proxy"'}


class ClientNetworkRefused(ProxyError, status=403, code="client_network_refused"):
    message = "this client credential may not be used from this address"


class ForbiddenByPolicy(ProxyError, status=403, code="forbidden_by_policy"):
    message = "the client may not make this call (auth.clients[].allow)"

    def __init__(self, client: str, method: str, path: str) -> None:
        super().__init__()
        self.client, self.method, self.path = client, method, path[:256]

    def to_response(self) -> web.Response:
        extra = {"client": self.client, "method": self.method[:16], "path": self.path}
        return json_error(self.status, self.code, self.message, **extra)


class InsufficientScope(ProxyError, status=403, code="insufficient_scope"):
    """``client`` None: a session's token (RFC 6750 §3.1's Bearer challenge), else a
    client credential (Basic, as sipgate's PATs)."""

    message = "no granted scope allows this sipgate operation; any one of 'scopes' would"

    def __init__(
        self, client: str | None, operation: str, operation_id: str, scopes: tuple[str, ...]
    ) -> None:
        super().__init__()
        self.client, self.operation, self.operation_id = client, operation, operation_id
        self.scopes = scopes

    def to_response(self) -> web.Response:
        body = {"error": self.code, "message": self.message}
        body |= {"client": self.client} if self.client is not None else {}
        body |= {"operation": self.operation, "operationId": self.operation_id}
        response = web.json_response({**body, "scopes": list(self.scopes)}, status=self.status)
        response.headers.update(self.headers())
        return response

    def headers(self) -> dict[str, str]:
        if self.client is not None:
            return {"WWW-Authenticate": 'Basic realm="sipgate-auth-proxy"'}
        scope = " ".join(self.scopes)  # scope names are plain tokens: no quote, no backslash
        return {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'}


class RateLimited(ProxyError, status=429, code="rate_limited"):
    message = "the client is over its rate limit (auth.clients[].rate_limit); retry later"

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


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
    message = "this client address may not use the proxy (auth.allowed_client_networks)"

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address  # the peer as the proxy saw it: the client's own address

    def to_response(self) -> web.Response:
        extra = {"client_address": self.address, "setting": "auth.allowed_client_networks"}
        return json_error(self.status, self.code, self.message, **extra)


class BodyTooLarge(ProxyError, status=413, code="body_too_large"):
    message = "the request body exceeds upstream.max_body_size"


class UpstreamUnreachable(ProxyError, status=502, code="bad_gateway"):
    message = "the upstream API could not be reached"


class BadWebhookSignature(ProxyError, status=401, code="bad_signature"):
    message = "X-Sipgate-Signature is missing or does not verify"


class WebhookSourceRefused(ProxyError, status=403, code="source_refused"):
    message = "this address may not post webhooks (webhooks.source_networks)"


class WebhookBodyTooLarge(BodyTooLarge, code="webhook_body_too_large"):
    message = "the request body exceeds webhooks.max_body_size"


class AppUnreachable(UpstreamUnreachable, code="app_unreachable"):
    message = "the app (webhooks.forward_to) could not be reached"


class ServiceUnavailable(ProxyError, status=503, code="service_unavailable"):
    """A peer the proxy needs is away for now: the client may retry after a while."""

    message = "retry shortly"
    retry_after = 5

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class IdPUnavailable(ServiceUnavailable, code="idp_unavailable"):
    message = "the login service cannot renew the session right now; retry shortly"


class StoreUnavailable(ServiceUnavailable, code="session_store_unavailable"):
    message = "sessions cannot be read right now; retry shortly"


class ServiceIdentityMissing(ServiceUnavailable, code="service_identity_missing"):
    message = "no usable service identity: an operator must sign in"


class WebhookInFlight(ServiceUnavailable, code="webhook_in_flight"):
    message = "the same event is being delivered right now; retry shortly"
    retry_after = 1


class UpstreamTimeout(ProxyError, status=504, code="gateway_timeout"):
    message = "the upstream API did not answer in time"


class AppTimeout(UpstreamTimeout, code="app_timeout"):
    message = "the app (webhooks.forward_to) did not answer in time"


def json_error(status: int, code: str, message: str, **extra: str) -> web.Response:
    body = json.dumps({"error": code, "message": message, **extra})
    return web.Response(status=status, text=body, content_type="application/json")

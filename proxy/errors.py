"""The proxy's own errors: the one tree of everything it answers itself, each class with
its HTTP status, a stable code (the JSON body's ``error``), a fixed message and what the
reader can do; docs/reference/errors.md draws the tree (``make docs-reference``). 503s
carry Retry-After; an unauthenticated browser navigation gets a 302 to the login instead.
OAuth protocol failures are not here: ``proxy.oauth.client`` raises its own, and the
authenticators translate them (one boundary, ``auth/``). An error never changes after it
is raised; cookies that must reach the client whatever the answer live in the request
(``request_state.set_cookies``). Messages are fixed, never request data or secrets;
extra fields name only what the client sent or is (a policy's method and path, an address).
"""

from __future__ import annotations

import json

from aiohttp import web


class ProxyError(Exception):
    status = 500
    code = "internal_error"
    message = "internal error"
    # For the error reference (docs/reference/errors.md): what the reader of the answer does.
    what_to_do = "a fault of the proxy: report it with the log line of its request_id"

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
    what_to_do = "send an origin-form target (/v2/...), not * or an absolute URL"


class MalformedCredentials(ProxyError, status=400, code="malformed_credentials"):
    message = "the Authorization header must be one Basic or Bearer credential"
    what_to_do = "send one Authorization header: Basic base64(token_id:token) or Bearer token"


class InvalidClientCredentials(ProxyError, status=401, code="invalid_client_credentials"):
    message = "unknown or wrong client credential"
    what_to_do = "check the app's token_id and token against auth.clients (new-client)"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Basic realm="sipgate-auth-proxy"'}


class ClientNetworkRefused(ProxyError, status=403, code="client_network_refused"):
    message = "this client credential may not be used from this address"
    what_to_do = "call from a network in the client's auth.clients[].networks, or widen it"


class ForbiddenByPolicy(ProxyError, status=403, code="forbidden_by_policy"):
    message = "the client may not make this call (auth.clients[].allow)"
    what_to_do = "add a rule to the client's allow list, or a scope that grants the call"

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
    what_to_do = (
        "grant one of the scopes the answer names (auth.clients[].scopes, or log in with it)"
    )

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
    what_to_do = "wait Retry-After seconds, or raise auth.clients[].rate_limit"

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Unauthenticated(ProxyError, status=401, code="unauthenticated"):
    message = "no valid session: log in first"
    what_to_do = "log in at login_url (a browser navigation is sent there by itself)"

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
    what_to_do = (
        "send from public_url's origin, or list the app's origin in session.allowed_origins"
    )


class ClientNotAllowed(ProxyError, status=403, code="client_not_allowed"):
    message = "this client address may not use the proxy (auth.allowed_client_networks)"
    what_to_do = "add the client's network to auth.allowed_client_networks (PAT and service mode)"

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address  # the peer as the proxy saw it: the client's own address

    def to_response(self) -> web.Response:
        extra = {"client_address": self.address, "setting": "auth.allowed_client_networks"}
        return json_error(self.status, self.code, self.message, **extra)


class BodyTooLarge(ProxyError, status=413, code="body_too_large"):
    message = "the request body exceeds upstream.max_body_size"
    what_to_do = "send a smaller body, or raise upstream.max_body_size"


class UpstreamUnreachable(ProxyError, status=502, code="bad_gateway"):
    message = "the upstream API could not be reached"
    what_to_do = "check upstream.url, DNS, the network and TLS (upstream.ca_file); the log says why"


class BadWebhookSignature(ProxyError, status=401, code="bad_signature"):
    message = "X-Sipgate-Signature is missing or does not verify"
    what_to_do = (
        "only sipgate's signed posts pass; a test sender needs a key in webhooks.public_keys_file"
    )


class WebhookSourceRefused(ProxyError, status=403, code="source_refused"):
    message = "this address may not post webhooks (webhooks.source_networks)"
    what_to_do = "add sipgate's push servers (or your ingress: trusted_proxies) to the networks"


class WebhookBodyTimeout(ProxyError, status=408, code="webhook_body_timeout"):
    message = "the webhook's body did not arrive within webhooks.timeout"
    what_to_do = "nothing for sipgate's own posts; a client that trickles its body is cut off"


class WebhookBodyTooLarge(BodyTooLarge, code="webhook_body_too_large"):
    message = "the request body exceeds webhooks.max_body_size"
    what_to_do = "raise webhooks.max_body_size if sipgate's events are larger"


class AppUnreachable(UpstreamUnreachable, code="app_unreachable"):
    message = "the app (webhooks.forward_to) could not be reached"
    what_to_do = "start the app, or correct webhooks.forward_to; sipgate retries"


class ServiceUnavailable(ProxyError, status=503, code="service_unavailable"):
    """A peer the proxy needs is away for now: the client may retry after a while."""

    message = "retry shortly"
    what_to_do = "retry after Retry-After seconds"
    retry_after = 5

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class IdPUnavailable(ServiceUnavailable, code="idp_unavailable"):
    message = "the login service cannot renew the session right now; retry shortly"
    what_to_do = "retry after Retry-After seconds; check that the IdP (issuer) is reachable"


class StoreUnavailable(ServiceUnavailable, code="session_store_unavailable"):
    message = "sessions cannot be read right now; retry shortly"
    what_to_do = "retry shortly; check Redis (session.redis_url) and /readyz"


class ServiceIdentityMissing(ServiceUnavailable, code="service_identity_missing"):
    message = "no usable service identity: an operator must sign in"
    what_to_do = "an operator signs in at /oauth2/start (management listener when set)"


class WebhookInFlight(ServiceUnavailable, code="webhook_in_flight"):
    message = "the same event is being delivered right now; retry shortly"
    what_to_do = "nothing: sipgate retries and gets the first delivery's answer"
    retry_after = 1


class UpstreamTimeout(ProxyError, status=504, code="gateway_timeout"):
    message = "the upstream API did not answer in time"
    what_to_do = "retry; raise upstream.read_timeout for slow calls; check the upstream"


class AppTimeout(UpstreamTimeout, code="app_timeout"):
    message = "the app (webhooks.forward_to) did not answer in time"
    what_to_do = "make the app answer within webhooks.timeout, or raise it"


def json_error(status: int, code: str, message: str, **extra: str) -> web.Response:
    body = json.dumps({"error": code, "message": message, **extra})
    return web.Response(status=status, text=body, content_type="application/json")

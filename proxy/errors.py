"""The proxy's own errors, each with its HTTP status and a stable machine-readable code.

    ProxyError                  (any error the proxy answers itself, JSON body)
    ├── BadRequestTarget        400  request target the proxy will not forward
    ├── Unauthenticated         401  no valid session (a browser navigation gets 302)
    ├── ClientNotAllowed        403  client address outside allowed_client_networks
    ├── CrossSiteRefused        403  unsafe method from a foreign origin (CSRF)
    ├── BodyTooLarge            413  request body above upstream.max_body_size
    ├── UpstreamUnreachable     502  connection refused, reset or closed early
    ├── IdPUnavailable          503  token expired and the IdP cannot refresh it now
    ├── StoreUnavailable        503  the session store (Redis) cannot be reached
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

    def __init__(self, message: str | None = None, set_cookies: tuple[str, ...] = ()) -> None:
        super().__init__(message or self.message)
        if message:
            self.message = message
        self.set_cookies = set_cookies  # e.g. expiring a session that is no longer valid

    def to_response(self) -> web.Response:
        return self._with_cookies(json_error(self.status, self.code, self.message))

    def _with_cookies(self, response: web.Response) -> web.Response:
        for cookie in self.set_cookies:
            response.headers.add("Set-Cookie", cookie)
        return response


class BadRequestTarget(ProxyError):
    status = 400
    code = "bad_request"
    message = "the request target must be a path"


class Unauthenticated(ProxyError):
    status = 401
    code = "unauthenticated"
    message = "no valid session: log in first"

    def __init__(self, login_url: str, navigation: bool, set_cookies: tuple[str, ...]) -> None:
        super().__init__(set_cookies=set_cookies)
        self.login_url = login_url
        self.navigation = navigation

    def to_response(self) -> web.Response:
        if self.navigation:
            response = web.Response(status=302, headers={"Location": self.login_url})
        else:
            response = json_error(self.status, self.code, self.message, login_url=self.login_url)
        response.headers["Cache-Control"] = "no-store"
        return self._with_cookies(response)


class CrossSiteRefused(ProxyError):
    status = 403
    code = "cross_site_request"
    message = "unsafe request from another origin refused (CSRF protection)"


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


class IdPUnavailable(ProxyError):
    status = 503
    code = "idp_unavailable"
    message = "the login service cannot renew the session right now; retry shortly"
    retry_after = 5

    def to_response(self) -> web.Response:
        response = super().to_response()
        response.headers["Retry-After"] = str(self.retry_after)
        return response


class StoreUnavailable(IdPUnavailable):
    code = "session_store_unavailable"
    message = "sessions cannot be read right now; retry shortly"


class UpstreamTimeout(ProxyError):
    status = 504
    code = "gateway_timeout"
    message = "the upstream API did not answer in time"


def json_error(status: int, code: str, message: str, **extra: str) -> web.Response:
    body = json.dumps({"error": code, "message": message, **extra})
    return web.Response(status=status, text=body, content_type="application/json")

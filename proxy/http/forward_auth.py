"""``GET /oauth2/auth``: the proxy as an authentication service for nginx ``auth_request``
and Traefik ``ForwardAuth``. 202 with the ``Authorization`` header to inject (refreshed
when due, new cookies in ``Set-Cookie``), or 401 with the login URL. Never a redirect:
nginx only understands 2xx, 401 and 403 from an auth subrequest.

The answer is a credential, so only the front proxy may ask (``forward_auth.*``):
- off unless ``enabled`` (404 naming the key), on the configured listener only;
- peers outside ``allowed_networks`` are refused (403);
- with ``secret`` set (required in the shared modes: there the answer is the account's
  own PAT or Bearer, and an app holding only a client credential sits on an allowed
  network, the pod's loopback), a request without the front proxy's secret in
  ``X-Sipgate-Forward-Auth-Secret`` is refused (403), compared in constant time;
- on the main listener, which shares its origin with every page served through the proxy,
  a request carrying browser fetch metadata (``Origin``, ``Sec-Fetch-*``) is a page's
  script, not a front proxy, and is refused (403): ``fetch('/oauth2/auth')`` would
  otherwise read the Bearer that HttpOnly hides. The front proxy passes the original
  request's ``Origin`` and ``Sec-Fetch-Site`` renamed (``X-Original-Origin``,
  ``X-Original-Sec-Fetch-Site``) for the CSRF check. The management listener is another
  origin than every page (no page can read its answers), so there the fetch metadata are
  the original request's.
- the original method and URI come from the one configured header each (nginx's
  ``X-Original-*`` by default): nginx passes the client's own ``X-Forwarded-*`` along.

nginx can copy only the first ``Set-Cookie`` of an auth answer, so each cookie is also
sent as ``X-Sipgate-Set-Cookie-<n>`` (n < ``COOKIE_SLOTS``), one header per cookie.
"""

from __future__ import annotations

import hmac
import logging
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from proxy.auth.headless_clients import ClientNetworks
from proxy.auth.protocol import Authenticator
from proxy.config import ForwardAuth
from proxy.errors import ProxyError, Unauthenticated, json_error
from proxy.request_state import SET_COOKIES, cookies_to_set

log = logging.getLogger(__name__)

Listener = Literal["main", "management"]

FETCH_METADATA = ("Origin", "Sec-Fetch-Site", "Sec-Fetch-Mode", "Sec-Fetch-Dest", "Sec-Fetch-User")
# The original request's fetch metadata, renamed by the front proxy, for the CSRF check.
RENAMED = {"Origin": "X-Original-Origin", "Sec-Fetch-Site": "X-Original-Sec-Fetch-Site"}
COOKIE_SLOTS = 3  # X-Sipgate-Set-Cookie-0 … -2: the nginx recipe (docs/deployment) passes these
SLOT_HEADER = "X-Sipgate-Set-Cookie-{}"
SECRET_HEADER = "X-Sipgate-Forward-Auth-Secret"  # noqa: S105 (a header name)


def forward_auth_handler(
    authenticator: Authenticator, settings: ForwardAuth, listener: Listener, shared: bool
) -> Handler:
    """The handler of ``/oauth2/auth`` on ``listener``. ``shared``: a shared mode, where
    the original method picks the client's rule or scope, so it must be sent (OAuth2
    mode reads a missing one as GET)."""
    if not settings.enabled:
        return _answer(404, "forward_auth_disabled", "forward-auth is off (forward_auth.enabled)")
    if settings.listener != listener:
        return _answer(
            404, "not_found", f"forward-auth is served on the {settings.listener} listener"
        )
    networks = ClientNetworks(settings.allowed_networks)
    browser_metadata_refused = listener == "main"
    secret = settings.secret.get_secret_value().encode() if settings.secret else None

    async def forward_auth(request: web.Request) -> web.StreamResponse:
        if not networks.allows(request.remote):
            return _refused("this peer is not in forward_auth.allowed_networks")
        if secret is not None and not _sent(request, secret):
            return _refused(f"the front proxy's {SECRET_HEADER} is missing or wrong")
        if shared and settings.method_header not in request.headers:
            return _refused(
                f"the front proxy must send the original method in {settings.method_header}"
            )
        if browser_metadata_refused:
            carried = [h for h in FETCH_METADATA if h in request.headers]
            if carried:
                return _refused(
                    f"browser fetch metadata ({', '.join(carried)}): only the "
                    "front proxy may ask, without the browser's headers"
                )
        original = _original_request(request, settings, browser_metadata_refused)
        try:
            return await _verdict(authenticator, original)
        finally:  # a clone has its own state: the cookies it decided belong to this answer
            if SET_COOKIES in original:
                request[SET_COOKIES] = original[SET_COOKIES]

    return forward_auth


def _sent(request: web.Request, secret: bytes) -> bool:
    sent = request.headers.get(SECRET_HEADER, "").encode("utf-8", "surrogateescape")
    return hmac.compare_digest(sent, secret)


async def _verdict(authenticator: Authenticator, original: web.Request) -> web.Response:
    try:
        credentials = await authenticator.authenticate(original)
    except Unauthenticated as err:
        return err.api_response()
    except ProxyError as err:
        return err.to_response()
    response = web.Response(status=202, headers={"Authorization": credentials.authorization})
    response.headers["Cache-Control"] = "no-store"
    _cookie_slots(response, cookies_to_set(original))
    return response


def _cookie_slots(response: web.Response, cookies: list[str]) -> None:
    """Set-Cookie itself is written by the response hook; nginx needs one header each."""
    for slot, cookie in enumerate(cookies[:COOKIE_SLOTS]):
        response.headers[SLOT_HEADER.format(slot)] = cookie
    if len(cookies) > COOKIE_SLOTS:
        log.warning(
            "forward-auth: the session needs %d cookies, front proxies pass %d",
            len(cookies),
            COOKIE_SLOTS,
        )


def _answer(status: int, error: str, message: str) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        return json_error(status, error, message)

    return answer


def _refused(reason: str) -> web.Response:
    return json_error(403, "forward_auth_refused", f"forward-auth refused: {reason}")


def _original_request(request: web.Request, settings: ForwardAuth, renamed: bool) -> web.Request:
    """The request as the front proxy received it: its method (CSRF), URI (return path)
    and, renamed on the main listener, its Origin and Sec-Fetch-Site (CSRF)."""
    method = request.headers.get(settings.method_header, "GET").upper()[:16]
    uri = request.headers.get(settings.uri_header, "/")
    headers = CIMultiDict(request.headers)
    if renamed:
        for name, carrier in RENAMED.items():
            headers.popall(name, None)
            if request.headers.get(carrier):
                headers[name] = request.headers[carrier]
    if not uri.startswith("/") or uri.startswith("//"):
        uri = "/"  # a path, never an authority ("//host/…")
    try:
        return request.clone(method=method, rel_url=uri, headers=headers)
    except (ValueError, IndexError):  # yarl raises IndexError on some (//[::1]@)
        return request.clone(method="GET", rel_url="/", headers=headers)

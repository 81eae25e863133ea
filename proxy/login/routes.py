"""The proxy's own login endpoints, ``start`` and ``callback``: the authorization-code
flow with PKCE and nonce. What a completed login becomes is the mode's choice
(``LoginCompletion``): a browser session, or service mode's identity.

Failures a person meets in the browser (IdP error, expired attempt, IdP down) end on a
small HTML page with a retry link, never in a redirect loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from proxy import request_state as rs
from proxy.auth.redirects import safe_return_path
from proxy.clock import Clock
from proxy.login.flow_cookie import LoginFlow, LoginFlows
from proxy.login.pages import retry_page
from proxy.oauth.client import OAuthClient
from proxy.oauth.errors import InvalidIdToken, NoUsableAnswer, TokenError, TokenSetTooLarge
from proxy.oauth.id_token import verify
from proxy.oauth.pkce import pkce_challenge
from proxy.oauth.tokens import TokenSet
from proxy.session.request_cookies import request_cookies

log = logging.getLogger(__name__)

Wrap = Callable[[Handler], Handler]
# A redeemed login's answer: the request, its tokens, where the attempt started.
LoginCompletion = Callable[[web.Request, TokenSet, str], Awaitable[web.Response]]


def as_is(handler: Handler) -> Handler:
    return handler


@dataclass(frozen=True)
class LoginSettings:
    public_url: str
    prefix: str  # auth.oauth2.path_prefix
    pkce: bool
    keep_id_token: bool  # auth.oauth2.idp_logout: the ID token is the logout hint


class LoginRoutes:
    def __init__(
        self,
        oauth: OAuthClient,
        flows: LoginFlows,
        complete: LoginCompletion,
        settings: LoginSettings,
        clock: Clock = time.time,
    ) -> None:
        self._oauth = oauth
        self._flows = flows
        self._complete = complete
        self._settings = settings
        self._wants_nonce = "openid" in oauth.scopes
        self._clock = clock

    def register(
        self, router: web.UrlDispatcher, wrap_start: Wrap = as_is, wrap_callback: Wrap = as_is
    ) -> None:
        """The wraps are the mode's: a guard on start (service mode's operator), the
        aiohttp-session middleware around callback (a browser session begins there)."""
        prefix = self._settings.prefix
        router.add_get(f"{prefix}/start", wrap_start(self.start), name="login:start")
        router.add_get(f"{prefix}/callback", wrap_callback(self.callback), name="login:callback")

    async def start(self, request: web.Request) -> web.Response:
        return_path = safe_return_path(request.query.get("rd"))
        flow, cookies = self._flows.begin(
            return_path, self._settings.pkce, self._wants_nonce, self._cookies(request)
        )
        challenge = pkce_challenge(flow.verifier) if flow.verifier else None
        try:
            target = await self._oauth.authorize_url(flow.state, challenge, flow.nonce)
        except NoUsableAnswer:
            return self._page(503, "The sipgate login is not reachable right now.", return_path)
        rs.set_cookies(request, "login_flow", cookies)
        return web.Response(status=302, headers={"Location": target})

    async def callback(self, request: web.Request) -> web.Response:
        query, cookies = request.query, self._cookies(request)
        state = query.get("state", "")
        refused = "error" in query
        flow, expire = self._flows.finish(state, cookies)  # an attempt is used up either way
        rs.set_cookies(request, "login_flow", expire)
        if refused or flow is None or not query.get("code"):
            # The retry link starts where this attempt did, if its cookie still says.
            retry = flow.return_path if flow else self._flows.peek_return_path(state, cookies)
            return self._unfinished(request, refused, retry)
        try:
            tokens = await self._redeem(query["code"], flow)
        except _EXCHANGE_FAILURES as err:
            return self._failed_exchange(request, err, flow.return_path)
        request[rs.SUBJECT] = tokens.subject
        return await self._complete(request, tokens, flow.return_path)

    def _unfinished(self, request: web.Request, refused: bool, retry: str) -> web.Response:
        if refused:
            request[rs.LOGIN_OUTCOME] = "idp_error"
            error = _short(request.query["error"])
            log.info("login refused by the IdP: %s", error)
            return self._page(403, f"The sipgate login was not completed ({error}).", retry)
        request[rs.LOGIN_OUTCOME] = "invalid_state"
        log.info("login callback with an unknown, used or expired state")
        message = "This sign-in attempt has expired or was already used."
        return self._page(400, message, retry)

    def _failed_exchange(
        self, request: web.Request, err: Exception, return_path: str
    ) -> web.Response:
        if isinstance(err, TokenSetTooLarge):
            request[rs.LOGIN_OUTCOME] = "rejected"
            log.warning("login failed: %s", err)  # sizes only, never the tokens
            message = "The sipgate login returned more than a session can hold."
            return self._page(502, message, return_path)
        if isinstance(err, NoUsableAnswer):
            request[rs.LOGIN_OUTCOME] = "idp_unavailable"
            log.warning("login failed: the IdP did not answer the code exchange")
            return self._page(502, "The sipgate login did not answer.", return_path)
        request[rs.LOGIN_OUTCOME] = "rejected"
        log.warning("login failed: %s", err)
        return self._page(403, "The login could not be completed.", return_path)

    async def _redeem(self, code: str, flow: LoginFlow) -> TokenSet:
        body = await self._oauth.exchange_code(code, flow.verifier)
        keep = self._settings.keep_id_token
        tokens = TokenSet.from_response(body, self._clock(), keep_id_token=keep)
        if flow.nonce is None:
            return tokens
        id_token = body.get("id_token")
        if not isinstance(id_token, str):
            raise InvalidIdToken("no id_token although openid was requested")
        oauth = self._oauth
        claims = verify(id_token, await oauth.jwks(), oauth.issuer, oauth.client_id, flow.nonce)
        return tokens.with_subject(str(claims["sub"]))

    def _cookies(self, request: web.Request) -> dict[str, str]:
        """The session's and the login attempts' cookies (all named ``<cookie_name>_…``)."""
        return request_cookies(request, self._flows.cookie_name)

    def _page(self, status: int, message: str, return_path: str) -> web.Response:
        return retry_page(status, message, self._settings.prefix, return_path)


# The code exchange's failures, each ending on a page (_failed_exchange).
_EXCHANGE_FAILURES = (TokenSetTooLarge, NoUsableAnswer, TokenError, InvalidIdToken)


def _short(text: str) -> str:
    """IdP error codes are short tokens; anything else is cut and stripped."""
    return "".join(c for c in text[:64] if c.isalnum() or c in "_-.") or "error"

"""The proxy's own OAuth2 endpoints: start, callback, sign_out, userinfo.

Failures a person meets in the browser (IdP error, expired attempt, IdP down) end on a
small HTML page with a retry link, never in a redirect loop.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import aiohttp_session
from aiohttp import web

from proxy import request_state as rs
from proxy.auth.origin import OriginPolicy
from proxy.auth.redirects import login_url, safe_return_path
from proxy.clock import Clock
from proxy.errors import CrossSiteRefused, json_error
from proxy.login.flow_cookie import LoginFlow, LoginFlows
from proxy.oauth.client import OAuthClient
from proxy.oauth.errors import InvalidIdToken, NoUsableAnswer, TokenError, TokenSetTooLarge
from proxy.oauth.id_token import verify
from proxy.oauth.pkce import pkce_challenge
from proxy.oauth.tokens import TokenSet
from proxy.session.aiohttp_adapter import CREATED_KEY, TOKENS_KEY, SessionStore
from proxy.session.cookie_chunks import own_cookies

log = logging.getLogger(__name__)


class LoginRoutes:
    def __init__(
        self,
        oauth: OAuthClient,
        flows: LoginFlows,
        storage: SessionStore | None,
        origins: OriginPolicy,
        public_url: str,
        prefix: str,
        pkce: bool,
        idp_logout: bool,
        clock: Clock = time.time,
    ) -> None:
        self._oauth = oauth
        self._flows = flows
        self._storage = storage
        self._origins = origins
        self._public_url = public_url
        self._prefix = prefix
        self._pkce = pkce
        self._wants_nonce = "openid" in oauth.scopes
        self._idp_logout = idp_logout
        self._clock = clock
        # What a completed login leads to instead of a browser session (service mode).
        self.complete: Callable[[web.Request, TokenSet], Awaitable[web.Response]] | None = None

    def register(self, router: web.UrlDispatcher, browser_sessions: bool = True) -> None:
        router.add_get(f"{self._prefix}/start", self.start, name="login:start")
        router.add_get(f"{self._prefix}/callback", self.callback, name="login:callback")
        if not browser_sessions:
            return
        router.add_route("GET", f"{self._prefix}/sign_out", self.sign_out, name="login:sign_out")
        router.add_route("POST", f"{self._prefix}/sign_out", self.sign_out)
        router.add_get(f"{self._prefix}/userinfo", self.userinfo, name="login:userinfo")

    async def start(self, request: web.Request) -> web.Response:
        return_path = safe_return_path(request.query.get("rd"))
        flow, cookies = self._flows.begin(
            return_path, self._pkce, self._wants_nonce, self._cookies(request)
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
        retry = self._flows.peek_return_path(state, cookies) if refused else "/"
        flow, expire = self._flows.finish(state, cookies)  # an attempt is used up either way
        rs.set_cookies(request, "login_flow", expire)
        if refused:
            request[rs.LOGIN_OUTCOME] = "idp_error"
            log.info("login refused by the IdP: %s", _short(query["error"]))
            return self._page(
                403, f"The login was not completed ({_short(query['error'])}).", retry
            )
        if flow is None or not query.get("code"):
            request[rs.LOGIN_OUTCOME] = "invalid_state"
            log.info("login callback with an unknown, used or expired state")
            return self._page(400, "This login attempt has expired or was already used.", "/")
        try:
            tokens = await self._redeem(query["code"], flow)
        except _EXCHANGE_FAILURES as err:
            return self._failed_exchange(request, err, flow.return_path)
        request[rs.SUBJECT] = tokens.subject
        if self.complete is not None:  # service mode: the login becomes the proxy's identity
            return await self.complete(request, tokens)
        return await self._new_session(request, tokens, flow.return_path)

    async def _new_session(
        self, request: web.Request, tokens: TokenSet, return_path: str
    ) -> web.Response:
        session = await aiohttp_session.new_session(request)
        session[TOKENS_KEY] = tokens
        session[CREATED_KEY] = self._clock()
        request[rs.LOGIN_OUTCOME] = "ok"
        log.info("login ok")
        return web.Response(status=302, headers={"Location": return_path})

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

    async def sign_out(self, request: web.Request) -> web.Response:
        origin, site = request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site")
        return_path = safe_return_path(request.query.get("rd"))
        if request.method == "GET" and site in ("cross-site", "same-site"):
            # Another site linked here: ask, instead of logging the user out for it.
            return self._sign_out_page(return_path)
        if not self._origins.allows_unsafe_request(request.method, origin, site):
            return CrossSiteRefused().to_response()
        session = await aiohttp_session.get_session(request)
        tokens = session.get(TOKENS_KEY)
        target: str | None = return_path
        if isinstance(tokens, TokenSet):
            target = await self._end_at_idp(tokens, return_path)
        session.invalidate()
        return web.Response(status=302, headers={"Location": target or return_path})

    async def userinfo(self, request: web.Request) -> web.Response:
        assert self._storage is not None, "userinfo needs browser sessions"
        stored = await self._storage.load(self._cookies(request))
        if stored is None:
            return json_error(
                401,
                "unauthenticated",
                "no valid session",
                login_url=login_url(self._public_url, self._prefix, "/"),
            )
        tokens, now = stored.tokens, self._clock()
        return web.json_response(
            {
                "sub": tokens.subject,
                "scopes": tokens.scope.split(),
                "expires_at": int(tokens.expires_at),
                "expires_in": max(0, int(tokens.expires_at - now)),
                "refresh_expires_at": int(tokens.refresh_expires_at),
                "session_created_at": int(stored.created),
            },
            headers={"Cache-Control": "no-store"},
        )

    async def _redeem(self, code: str, flow: LoginFlow) -> TokenSet:
        body = await self._oauth.exchange_code(code, flow.verifier)
        tokens = TokenSet.from_response(body, self._clock(), keep_id_token=self._idp_logout)
        if flow.nonce is not None:
            id_token = body.get("id_token")
            if not isinstance(id_token, str):
                raise InvalidIdToken("no id_token although openid was requested")
            claims = verify(
                id_token,
                await self._oauth.jwks(),
                self._oauth.issuer,
                self._oauth.client_id,
                flow.nonce,
            )
            tokens = tokens.with_subject(str(claims["sub"]))
        return tokens

    async def _end_at_idp(self, tokens: TokenSet, return_path: str) -> str | None:
        try:
            if tokens.refresh_token and not await self._oauth.revoke(tokens.refresh_token):
                log.warning("sign-out: the IdP did not confirm the revocation")
            if self._idp_logout:
                return await self._oauth.end_session_url(
                    self._public_url + return_path, tokens.id_token
                )
        except NoUsableAnswer:
            log.warning("sign-out: the IdP is unreachable; cookies cleared anyway")
        return None

    def _cookies(self, request: web.Request) -> dict[str, str]:
        """The session's and the login attempts' cookies (all named ``<cookie_name>_…``)."""
        return own_cookies(request.headers.getall("Cookie", ()), self._flows.cookie_name)

    def _page(self, status: int, message: str, return_path: str) -> web.Response:
        retry = html.escape(login_url("", self._prefix, return_path), quote=True)
        body = f'<p>{html.escape(message)}</p><p><a href="{retry}">Try again</a></p>'
        return html_page(status, "Sign-in", body)

    def _sign_out_page(self, return_path: str) -> web.Response:
        target = f"{self._prefix}/sign_out?rd={quote(return_path, safe='/')}"
        body = (
            f'<form method="post" action="{html.escape(target, quote=True)}">'
            '<p><button type="submit">Sign out of the sipgate API proxy</button></p></form>'
        )
        return html_page(200, "Sign out", body)


def html_page(status: int, title: str, body: str) -> web.Response:
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h1>{title}</h1>{body}</body></html>"
    )
    return web.Response(
        status=status,
        text=page,
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            # No scripts, no subresources; forms may only post back here.
            "Content-Security-Policy": "default-src 'none'; form-action 'self'",
            "X-Frame-Options": "DENY",
        },
    )


# The code exchange's failures, each ending on a page (_failed_exchange).
_EXCHANGE_FAILURES = (
    TokenSetTooLarge,
    NoUsableAnswer,  # MalformedTokenResponse too
    TokenError,
    InvalidIdToken,
)


def _short(text: str) -> str:
    """IdP error codes are short tokens; anything else is cut and stripped."""
    return "".join(c for c in text[:64] if c.isalnum() or c in "_-.") or "error"

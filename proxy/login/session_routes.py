"""What a browser session adds to the login endpoints (OAuth2 mode): a completed login
becomes a session (through aiohttp-session), ``sign_out`` ends it (at the IdP too) and
``userinfo`` describes it."""

from __future__ import annotations

import logging
import time

import aiohttp_session
from aiohttp import web

from proxy import request_state as rs
from proxy.auth.origin import OriginPolicy
from proxy.auth.redirects import login_url, safe_return_path
from proxy.clock import Clock, iso_utc
from proxy.errors import CrossSiteRefused, json_error
from proxy.login.pages import sign_out_page, signed_out_page
from proxy.login.routes import LoginCompletion, LoginSettings, Wrap
from proxy.oauth.client import OAuthClient
from proxy.oauth.errors import NoUsableAnswer
from proxy.oauth.tokens import TokenSet
from proxy.session.aiohttp_adapter import CREATED_KEY, TOKENS_KEY
from proxy.session.request_cookies import request_cookies
from proxy.session.store import SessionStore

log = logging.getLogger(__name__)


def start_browser_session(clock: Clock = time.time) -> LoginCompletion:
    async def start_session(request: web.Request, tokens: TokenSet, return_to: str) -> web.Response:
        session = await aiohttp_session.new_session(request)
        session[TOKENS_KEY] = tokens
        session[CREATED_KEY] = clock()
        request[rs.LOGIN_OUTCOME] = "ok"
        log.info("login ok")
        return web.Response(status=302, headers={"Location": return_to})

    return start_session


class SessionRoutes:
    def __init__(
        self,
        oauth: OAuthClient,
        storage: SessionStore,
        origins: OriginPolicy,
        settings: LoginSettings,
        clock: Clock = time.time,
    ) -> None:
        self._oauth = oauth
        self._storage = storage
        self._origins = origins
        self._settings = settings
        self._clock = clock

    def register(self, router: web.UrlDispatcher, with_session: Wrap) -> None:
        """``with_session``: the aiohttp-session middleware, around sign_out."""
        prefix, sign_out = self._settings.prefix, with_session(self.sign_out)
        router.add_route("GET", f"{prefix}/sign_out", sign_out, name="login:sign_out")
        router.add_route("POST", f"{prefix}/sign_out", sign_out)
        router.add_get(f"{prefix}/signed_out", self.signed_out, name="login:signed_out")
        router.add_get(f"{prefix}/userinfo", self.userinfo, name="login:userinfo")

    async def sign_out(self, request: web.Request) -> web.Response:
        origin, site = request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site")
        return_path = self._return_path(request.query.get("rd"))
        if request.method == "GET" and site in ("cross-site", "same-site"):
            # Another site linked here: ask, instead of logging the user out for it.
            rd = return_path if "rd" in request.query else None
            return sign_out_page(self._settings.prefix, rd)
        if not self._origins.allows_unsafe_request(request.method, origin, site):
            return CrossSiteRefused().to_response()
        session = await aiohttp_session.get_session(request)
        tokens = session.get(TOKENS_KEY)
        target: str | None = return_path
        if isinstance(tokens, TokenSet):
            target = await self._end_at_idp(tokens, return_path)
        session.invalidate()
        return web.Response(status=302, headers={"Location": target or return_path})

    async def signed_out(self, request: web.Request) -> web.Response:
        return signed_out_page(self._settings.prefix, self._settings.keep_id_token)

    def _return_path(self, rd: str | None) -> str:
        """``rd`` when it is a safe path; else (none, or refused) the signed-out page:
        landing on "/" would sign the user in again at once while the IdP's session
        lives."""
        safe = safe_return_path(rd)
        if rd is None or (safe == "/" and rd != "/"):
            return f"{self._settings.prefix}/signed_out"
        return safe

    async def userinfo(self, request: web.Request) -> web.Response:
        cookies = request_cookies(request, self._storage.cookie_name)
        stored = await self._storage.load(cookies)
        if stored is None:
            return self._no_session()
        tokens, now = stored.tokens, self._clock()
        return web.json_response(
            {
                "sub": tokens.subject,
                "scopes": tokens.scope.split(),
                "expires_at": int(tokens.expires_at),
                "expires_at_iso": iso_utc(tokens.expires_at),
                "expires_in": max(0, int(tokens.expires_at - now)),
                "refresh_expires_at": int(tokens.refresh_expires_at),
                "refresh_expires_at_iso": iso_utc(tokens.refresh_expires_at),
                "session_created_at": int(stored.created),
                "session_created_at_iso": iso_utc(stored.created),
            },
            headers={"Cache-Control": "no-store"},
        )

    def _no_session(self) -> web.Response:
        settings = self._settings
        login = login_url(settings.public_url, settings.prefix, "/")
        return json_error(401, "unauthenticated", "no valid session", login_url=login)

    async def _end_at_idp(self, tokens: TokenSet, return_path: str) -> str | None:
        try:
            if tokens.refresh_token and not await self._oauth.revoke(tokens.refresh_token):
                log.warning("sign-out: the IdP did not confirm the revocation")
            if self._settings.keep_id_token:  # idp_logout
                return await self._oauth.end_session_url(
                    self._settings.public_url + return_path, tokens.id_token
                )
        except NoUsableAnswer:
            log.warning("sign-out: the IdP is unreachable; cookies cleared anyway")
        return None

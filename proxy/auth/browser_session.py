"""OAuth2 mode's authenticator: a session cookie in, a Bearer credential out.

no session          → Unauthenticated (302 to login for a navigation, else 401)
unsafe cross-site   → CrossSiteRefused (403)
no scope for it     → InsufficientScope (403), with auth.oauth2.enforce_scopes
access token fresh  → Bearer
near expiry         → single-flight refresh; the answer carries the new cookies
  grant gone        → session cleared, Unauthenticated
  IdP unavailable   → the current token while it is valid, else IdPUnavailable (503)
upstream 401        → one forced refresh and one retry (bodiless requests)
  401 again         → noted in the session: that token's 401s are passed on, no grant
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from aiohttp import web

from proxy import request_state as state
from proxy.auth.navigation import is_browser_navigation
from proxy.auth.origin import OriginPolicy
from proxy.auth.redirects import login_url
from proxy.auth.session_scopes import ScopeCheck
from proxy.clock import Clock
from proxy.errors import CrossSiteRefused, IdPUnavailable, StoreUnavailable, Unauthenticated
from proxy.oauth.tokens import TokenSet
from proxy.refresh.single_flight import Outcome, Refreshes, RefreshFailed
from proxy.session.aiohttp_adapter import session_cookie_bytes
from proxy.session.codec import StoredSession
from proxy.session.request_cookies import request_cookies
from proxy.session.store import Sessions
from proxy.upstream.credentials import Credentials

log = logging.getLogger(__name__)

GRACE_MIN_VALIDITY = 5.0  # seconds a token from the grace cache must still be valid


@dataclass(frozen=True)
class SessionPolicy:
    public_url: str  # where the login URL points
    login_prefix: str  # auth.oauth2.path_prefix
    refresh_skew: float  # seconds before expiry a refresh is due
    scopes: ScopeCheck | None = None  # auth.oauth2.enforce_scopes


class BrowserSessionAuth:
    def __init__(
        self,
        storage: Sessions,
        refresher: Refreshes,
        origins: OriginPolicy,
        policy: SessionPolicy,
        clock: Clock = time.time,
    ) -> None:
        self._storage = storage
        self._refresher = refresher
        self._origins = origins
        self._policy = policy
        self._clock = clock

    async def authenticate(self, request: web.Request) -> Credentials:
        stored = await self._storage.load(self._cookies(request))
        if stored is None:
            if self._storage.present(self._cookies(request)):
                log.warning("session cookie present but not valid; treated as no session")
            raise await self._unauthenticated(request)
        if not self._origins.allows_unsafe_request(
            request.method, request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site")
        ):
            raise CrossSiteRefused()
        request[state.SUBJECT] = stored.tokens.subject
        tokens = await self._fresh(request, stored, force=False)
        if self._policy.scopes is not None:
            self._policy.scopes.check(request, tokens)
        return self._credentials(request, stored, tokens)

    def _credentials(
        self, request: web.Request, stored: StoredSession, tokens: TokenSet
    ) -> Credentials:
        bearer = f"Bearer {tokens.access_token}"
        if tokens.rejected_after_refresh:
            return Credentials(bearer)  # its 401s are the upstream's word: passed on

        async def after_upstream_401() -> Credentials | None:
            # The upstream says the token is bad although it looked valid: one forced
            # refresh through the same single-flight path, then one retry.
            try:
                fresh = await self._fresh(
                    request, StoredSession(tokens, stored.created, stored.sealed_at), force=True
                )
            except (Unauthenticated, IdPUnavailable):
                return None
            return self._retry_credentials(request, stored, fresh)

        return Credentials(bearer, reauthorize=after_upstream_401)

    def _retry_credentials(
        self, request: web.Request, stored: StoredSession, fresh: TokenSet
    ) -> Credentials:
        async def after_retry_401() -> None:
            # Refused right after the refresh: the token is not what the upstream minds.
            # Noted in the session, so that no process forces a refresh for it again.
            marked = replace(fresh, rejected_after_refresh=True)
            try:
                await self._store(request, marked, stored.created)
            except StoreUnavailable:
                log.warning("session store unavailable; the refused token is not noted")

        return Credentials(f"Bearer {fresh.access_token}", rejected=after_retry_401)

    async def _fresh(self, request: web.Request, stored: StoredSession, force: bool) -> TokenSet:
        """The token set to use; whenever it is not the one in the request's cookie, the
        answer (whatever it turns out to be) carries the cookies that store it."""
        fresh = await self._usable_tokens(request, stored.tokens, force)
        if fresh is not stored.tokens:
            await self._store(request, fresh, stored.created)
        return fresh

    async def _store(self, request: web.Request, tokens: TokenSet, created: float) -> None:
        cookies = await self._storage.save(tokens, created, self._cookies(request))
        request[state.SESSION_COOKIE_BYTES] = session_cookie_bytes(cookies)
        state.set_cookies(request, "session", cookies)

    async def _usable_tokens(
        self, request: web.Request, tokens: TokenSet, force: bool, again: bool = True
    ) -> TokenSet:
        now = self._clock()
        if not force and not tokens.refresh_due(self._policy.refresh_skew, now):
            return tokens
        try:
            fresh, outcome = await self._refresher.refresh(tokens)
        except RefreshFailed as failed:
            request[state.REFRESH_OUTCOME] = failed.outcome.value
            if failed.fatal:
                log.info("session ended by the IdP (%s); login required", failed)
                raise await self._unauthenticated(request) from None
            if not force and tokens.expires_at > now:
                return tokens  # IdP down: the current token still works for a while
            raise IdPUnavailable() from None
        request[state.REFRESH_OUTCOME] = outcome.value
        if (
            again
            and outcome is Outcome.GRACE
            and fresh.access_expires_within(GRACE_MIN_VALIDITY, now)
        ):
            # The grace copy has itself run out by now: refresh it in turn. (One that is
            # merely near expiry is used as is: its own cookie refreshes it next time.)
            # Once only: an IdP that keeps the refresh token hands back the same grace copy.
            return await self._usable_tokens(request, fresh, force, again=False)
        return fresh

    def _cookies(self, request: web.Request) -> dict[str, str]:
        return request_cookies(request, self._storage.cookie_name)

    async def _unauthenticated(self, request: web.Request) -> Unauthenticated:
        navigation = is_browser_navigation(
            request.method, request.headers.get("Accept"), request.headers.get("Sec-Fetch-Mode")
        )
        state.set_cookies(request, "session", await self._storage.clear(self._cookies(request)))
        policy = self._policy
        return Unauthenticated(
            login_url(policy.public_url, policy.login_prefix, request.raw_path), navigation
        )

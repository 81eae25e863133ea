"""Service mode: one stored login that every allowed headless client uses.

An operator signs in once through the normal browser flow; if the subject is listed in
``service.allowed_subjects`` the token set becomes the proxy's identity, sealed with the
session keys in a file (one replica or a shared volume) or in Redis (replicas share it).
A background task refreshes it before the access token expires, so the refresh token
never idles out, single-flight across replicas through the same Redis coordination as
browser sessions. When the IdP ends the grant, requests get 503 saying an operator must
sign in again; readiness stays up (the proxy itself is fine).

A login that does not become the identity (subject not allowed) and an identity that a
new login replaces have their grants revoked at the IdP, unless the new login shares
the old one's grant (same IdP session): revoking that would end the new one too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

from proxy.auth.identity_state import IdentityState
from proxy.clock import Clock, iso_utc
from proxy.errors import IdPUnavailable, ProxyError, ServiceIdentityMissing
from proxy.oauth.errors import OAuthError
from proxy.oauth.tokens import TokenSet, unverified_claim
from proxy.refresh.single_flight import Refreshes, RefreshFailed
from proxy.session.codec import StoredSession
from proxy.upstream.credentials import Credentials

log = logging.getLogger(__name__)

IDLE_RETRY = 5.0  # seconds between looks for an identity while there is none


class Revoker(Protocol):
    async def revoke(self, refresh_token: str) -> bool: ...


@dataclass(frozen=True)
class IdentityPolicy:
    allowed_subjects: frozenset[str]  # the subjects whose login may become the identity
    refresh_skew: float  # seconds before expiry at which the access token is refreshed
    login_url: str  # where an operator signs in, named in the 503 and the status


class ServiceIdentity:
    def __init__(
        self,
        state: IdentityState,
        refresher: Refreshes,
        revoker: Revoker,
        policy: IdentityPolicy,
        clock: Clock = time.time,
    ) -> None:
        self._state = state
        self._refresher = refresher
        self._revoker = revoker
        self.allowed_subjects = policy.allowed_subjects
        self._skew = policy.refresh_skew
        self._login_url = policy.login_url
        self._clock = clock
        self.current: StoredSession | None = None
        self.last_refresh: float | None = None
        self.sign_in_required = False  # the IdP ended the grant
        self.last_error: str | None = None
        self._signed_in = asyncio.Event()  # wakes the background task at once
        self._refreshing = asyncio.Lock()

    @property
    def usable(self) -> bool:
        """Whether the identity can serve requests now (a metric shows it)."""
        return self.current is not None and not self.sign_in_required

    async def credentials(self) -> Credentials:
        if self.current is None or self.sign_in_required:
            await self._adopt_stored()  # an operator may have signed in at another replica
        if self.current is None or self.sign_in_required:
            raise ServiceIdentityMissing(self._missing_message())
        if self.current.tokens.refresh_due(self._skew, self._clock()):
            await self.refresh()
        return Credentials(f"Bearer {self.current.tokens.access_token}")

    async def sign_in(self, tokens: TokenSet) -> bool:
        """Adopt a fresh login as the identity, if its subject is allowed."""
        if tokens.subject not in self.allowed_subjects:
            log.warning("service sign-in refused: subject not in service.allowed_subjects")
            await self._revoke(tokens, "refused sign-in")
            return False
        await self._adopt_stored()  # the identity being replaced, wherever it was set
        previous = self.current
        stored = StoredSession(tokens, self._clock(), self._clock())
        await self._state.save(stored)
        self.current, self.sign_in_required, self.last_error = stored, False, None
        self._signed_in.set()
        log.info("service identity signed in")
        if previous is not None and not same_grant(previous.tokens, tokens):
            await self._revoke(previous.tokens, "replaced identity")
        return True

    async def sign_out(self) -> bool:
        """The operator's reset: the stored identity is removed and its grant revoked;
        clients get 503 until an operator signs in again. False: there was none."""
        await self._adopt_stored()
        previous = self.current
        await self._state.clear()
        self.current, self.sign_in_required, self.last_error = None, False, None
        if previous is None:
            return False
        log.info("service identity signed out by an operator")
        await self._revoke(previous.tokens, "signed-out identity")
        return True

    async def _revoke(self, tokens: TokenSet, what: str) -> None:
        try:
            if tokens.refresh_token and await self._revoker.revoke(tokens.refresh_token):
                return
            log.warning("%s: the IdP did not confirm the revocation", what)
        except OAuthError:
            log.warning("%s: the IdP is unreachable; its grant was not revoked", what)

    async def _adopt_stored(self) -> None:
        newest = await self._state.load()
        if newest is None:
            return
        current = self.current
        if current is None or newest.created > current.created:
            self.current, self.sign_in_required = newest, False  # a new sign-in
        elif newest.tokens.expires_at > current.tokens.expires_at:
            self.current = newest  # another replica refreshed it

    async def refresh(self) -> None:
        # One at a time: requests that find the token due together wait for the first,
        # then see its result (one refresh, one write of the state) instead of each
        # storing the shared answer again.
        async with self._refreshing:
            await self._refresh()

    async def _refresh(self) -> None:
        await self._adopt_stored()
        if self.current is None or self.sign_in_required:
            return
        if not self.current.tokens.refresh_due(self._skew, self._clock()):
            return
        started = self.current
        try:
            fresh, _ = await self._refresher.refresh(started.tokens)
        except RefreshFailed as failed:
            self._refresh_failed(started, failed)
            return
        if self.current is not started:
            return  # a sign-in replaced it meanwhile: never put the old one back
        if fresh == self.current.tokens:
            return  # another replica's result, already in the shared state
        stored = StoredSession(fresh, self.current.created, self._clock())
        await self._state.save(stored)
        self.current, self.last_refresh, self.last_error = stored, self._clock(), None

    def _refresh_failed(self, started: StoredSession, failed: RefreshFailed) -> None:
        """Raises what the request that found the token due gets, if anything."""
        if self.current is not started:
            return  # a sign-in replaced it meanwhile (and may have revoked it)
        self.last_error = str(failed)
        if failed.fatal:
            self.sign_in_required = True
            log.error("service identity lost (%s): an operator must sign in again", failed)
            raise ServiceIdentityMissing(self._missing_message()) from None
        if started.tokens.expires_at > self._clock():
            return  # the IdP is away; the current token still works for a while
        raise IdPUnavailable() from None

    async def keep_fresh(self) -> None:
        """Background task: refresh ahead of expiry, whether or not clients are calling."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._signed_in.wait(), self._next_look())
            self._signed_in.clear()
            await self._look()

    def _next_look(self) -> float:
        if self.current is None or self.sign_in_required:
            return IDLE_RETRY
        tokens = self.current.tokens
        return max(0.5, tokens.expires_at - tokens.refresh_margin(self._skew) - self._clock())

    async def _look(self) -> None:
        try:
            if self.current is None or self.sign_in_required:
                await self._adopt_stored()
            else:
                await self.refresh()
        except ProxyError as err:
            self.last_error = err.code
        except Exception as err:  # keep the loop alive whatever happens
            self.last_error = type(err).__name__
            log.warning("service identity refresh failed: %s", type(err).__name__)

    def status(self) -> dict[str, Any]:
        tokens = self.current.tokens if self.current else None
        times = {
            "access_expires_at": tokens.expires_at if tokens else None,
            "refresh_expires_at": tokens.refresh_expires_at if tokens else None,
            "signed_in_at": self.current.created if self.current else None,
            "last_refresh": self.last_refresh,
        }
        return {
            "state": (
                "sign_in_required" if self.sign_in_required else "ok" if tokens else "no_identity"
            ),
            "subject": tokens.subject if tokens else None,
            **{key: int(value) if value else None for key, value in times.items()},
            # the same times in ISO 8601 UTC, for people
            **{f"{key}_iso": iso_utc(value) if value else None for key, value in times.items()},
            "last_error": self.last_error,
            "login_url": self._login_url,
        }

    def _missing_message(self) -> str:
        verb = "sign in again" if self.sign_in_required else "sign in"
        return f"no usable service identity: an operator must {verb} at {self._login_url}"


def same_grant(old: TokenSet, new: TokenSet) -> bool:
    """Whether two logins share one grant at the IdP, so that revoking one ends both.

    Keycloak keeps one session per user and browser, and a new login there continues it:
    its tokens name it (``sid``, older ``session_state``). Without that claim, only a
    login of another subject is surely another grant.
    """
    old_session, new_session = _idp_session(old), _idp_session(new)
    if old_session and new_session:
        return old_session == new_session
    return old.subject == new.subject


def _idp_session(tokens: TokenSet) -> str:
    # Only picks whether to revoke the replaced grant; never an access decision.
    access = tokens.access_token
    return unverified_claim(access, "sid") or unverified_claim(access, "session_state")

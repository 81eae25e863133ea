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
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as redis

from proxy.clock import Clock
from proxy.crypto.sealing import KeyRing, context
from proxy.errors import IdPUnavailable, ProxyError
from proxy.oauth.errors import OAuthError
from proxy.oauth.tokens import TokenSet, unverified_claim
from proxy.refresh.single_flight import Refresher, RefreshFailed
from proxy.session import codec as session_codec
from proxy.session.codec import StoredSession
from proxy.session.redis_backend import call
from proxy.upstream.credentials import Credentials

log = logging.getLogger(__name__)

CONTEXT = context("service", "identity")
IDLE_RETRY = 5.0  # seconds between looks for an identity while there is none


class ServiceIdentityMissing(ProxyError):
    status = 503
    code = "service_identity_missing"
    message = "no usable service identity: an operator must sign in"


class Revoker(Protocol):
    async def revoke(self, refresh_token: str) -> bool: ...


class IdentityState(Protocol):
    async def load(self) -> StoredSession | None: ...

    async def save(self, stored: StoredSession) -> None: ...


class FileState:
    """A sealed file, replaced atomically, readable by the proxy's user only."""

    def __init__(self, path: Path, keys: KeyRing) -> None:
        self._path = path
        self._keys = keys

    async def load(self) -> StoredSession | None:
        try:
            sealed = self._path.read_bytes()
        except FileNotFoundError:
            return None
        return _open(self._keys, sealed)

    async def save(self, stored: StoredSession) -> None:
        sealed = session_codec.seal(self._keys, stored, CONTEXT)
        # write + fsync take milliseconds on a slow volume: not in the event loop
        await asyncio.to_thread(self._write, sealed)

    def _write(self, sealed: bytes) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=self._path.parent, prefix=".identity-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(sealed)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, self._path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise


class RedisState:
    def __init__(self, client: redis.Redis, keys: KeyRing, namespace: str) -> None:
        self._redis = client
        self._keys = keys
        self._key = f"{namespace}:service:identity"

    async def load(self) -> StoredSession | None:
        sealed = await call(self._redis.get(self._key))
        return _open(self._keys, sealed) if isinstance(sealed, bytes) else None

    async def save(self, stored: StoredSession) -> None:
        sealed = session_codec.seal(self._keys, stored, CONTEXT)
        await call(self._redis.set(self._key, sealed))


def _open(keys: KeyRing, sealed: bytes) -> StoredSession | None:
    stored = session_codec.open_sealed(keys, sealed, CONTEXT)
    if stored is None:
        log.warning("stored service identity cannot be opened (other keys?); sign in again")
    return stored


class ServiceIdentity:
    def __init__(
        self,
        state: IdentityState,
        refresher: Refresher,
        allowed_subjects: frozenset[str],
        refresh_skew: float,
        login_url: str,
        revoker: Revoker,
        report: Callable[[bool], None] = lambda usable: None,
        clock: Clock = time.time,
    ) -> None:
        self._report = report  # e.g. a metric: is the identity usable right now?
        self._revoker = revoker
        self._state = state
        self._refresher = refresher
        self.allowed_subjects = allowed_subjects
        self._skew = refresh_skew
        self._login_url = login_url
        self._clock = clock
        self.current: StoredSession | None = None
        self.last_refresh: float | None = None
        self.sign_in_required = False  # the IdP ended the grant
        self.last_error: str | None = None
        self._signed_in = asyncio.Event()  # wakes the background task at once
        self._refreshing = asyncio.Lock()

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
        self._report(True)
        self._signed_in.set()
        log.info("service identity signed in")
        if previous is not None and not same_grant(previous.tokens, tokens):
            await self._revoke(previous.tokens, "replaced identity")
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
            self._report(True)
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
            if self.current is not started:
                return  # a sign-in replaced it meanwhile (and may have revoked it)
            self.last_error = str(failed)
            if failed.fatal:
                self.sign_in_required = True
                self._report(False)
                log.error("service identity lost (%s): an operator must sign in again", failed)
                raise ServiceIdentityMissing(self._missing_message()) from None
            if self.current.tokens.expires_at > self._clock():
                return  # the IdP is away; the current token still works for a while
            raise IdPUnavailable() from None
        if self.current is not started:
            return  # a sign-in replaced it meanwhile: never put the old one back
        if fresh == self.current.tokens:
            return  # another replica's result, already in the shared state
        stored = StoredSession(fresh, self.current.created, self._clock())
        await self._state.save(stored)
        self.current, self.last_refresh, self.last_error = stored, self._clock(), None
        self._report(True)

    async def keep_fresh(self) -> None:
        """Background task: refresh ahead of expiry, whether or not clients are calling."""
        while True:
            delay = IDLE_RETRY
            if self.current is not None and not self.sign_in_required:
                tokens = self.current.tokens
                due = tokens.expires_at - tokens.refresh_margin(self._skew) - self._clock()
                delay = max(0.5, due)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._signed_in.wait(), delay)
            self._signed_in.clear()
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
        return {
            "state": (
                "sign_in_required" if self.sign_in_required else "ok" if tokens else "no_identity"
            ),
            "subject": tokens.subject if tokens else None,
            "access_expires_at": int(tokens.expires_at) if tokens else None,
            "refresh_expires_at": int(tokens.refresh_expires_at) if tokens else None,
            "signed_in_at": int(self.current.created) if self.current else None,
            "last_refresh": int(self.last_refresh) if self.last_refresh else None,
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

"""Single-flight token refresh that never sends a refresh token twice.

IdPs that rotate refresh tokens (sipgate's Keycloak) revoke the whole grant when a
superseded refresh token is replayed, so:
- concurrent requests of one session share one refresh call (keyed by a digest of the
  refresh token);
- the result is remembered for ``grace`` seconds, so a request still carrying the old
  cookie gets the new token set instead of a second refresh;
- a refresh token the IdP called dead is remembered as dead for the same time;
- after a timeout (the IdP may have rotated the token without us hearing the answer)
  the token is not sent again for ``backoff`` seconds: requests meanwhile use the
  current access token while it is valid instead of each waiting for the IdP.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from proxy.clock import Clock
from proxy.oauth.errors import IdPTimeout, MalformedTokenResponse, NoUsableAnswer, TokenError
from proxy.oauth.tokens import TokenSet

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    OK = "ok"  # this request refreshed
    SHARED = "shared"  # joined a refresh already in flight
    GRACE = "grace"  # an earlier refresh of the same token had the answer
    FATAL = "fatal"  # the grant is gone: log in again
    TRANSIENT = "transient"  # the IdP could not answer now: try later


class RefreshFailed(Exception):
    def __init__(self, outcome: Outcome, reason: str, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.outcome = outcome
        # the IdP may have acted on it (no answer in time, or one we cannot use): do not
        # resend for a while
        self.timed_out = timed_out

    @property
    def fatal(self) -> bool:
        return self.outcome is Outcome.FATAL


Exchange = Callable[[TokenSet], Awaitable[TokenSet]]


class Refreshes(Protocol):
    """What a user of the refresher calls: the ``Refresher``, or a traced one around it."""

    async def refresh(self, tokens: TokenSet) -> tuple[TokenSet, Outcome]: ...


class Coordination(Protocol):
    """Single flight across processes (Redis): run ``exchange`` in one place only."""

    async def coordinate(
        self, key: bytes, exchange: Exchange, tokens: TokenSet
    ) -> tuple[TokenSet, Outcome]: ...


@dataclass(frozen=True)
class RefreshPolicy:
    timeout: float = 10.0  # seconds one refresh call at the IdP may take
    grace: float = 60.0  # seconds a result, or a refresh token the IdP refused, is kept
    backoff: float = 10.0  # seconds a token is not sent again after a timeout
    max_remembered: int = 10_000  # results and refusals kept at most
    keep_id_token: bool = False  # for the ID token hint of an IdP logout


class TokenEndpoint(Protocol):
    async def refresh(self, refresh_token: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class _Remembered:
    until: float
    tokens: TokenSet | None  # None: do not send this refresh token (see outcome)
    reason: str = ""
    outcome: Outcome = Outcome.FATAL

    def recalled(self) -> tuple[TokenSet, Outcome]:
        if self.tokens is None:
            raise RefreshFailed(self.outcome, self.reason)
        return self.tokens, Outcome.GRACE


class Refresher:
    def __init__(
        self,
        oauth: TokenEndpoint,
        policy: RefreshPolicy = RefreshPolicy(),
        coordination: Coordination | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._oauth = oauth
        self._policy = policy
        self._coordination = coordination
        self._clock = clock
        self._in_flight: dict[bytes, asyncio.Future[tuple[TokenSet, Outcome]]] = {}
        self._remembered: OrderedDict[bytes, _Remembered] = OrderedDict()

    async def refresh(self, tokens: TokenSet) -> tuple[TokenSet, Outcome]:
        if tokens.refresh_token is None or tokens.refresh_expired(self._clock()):
            raise RefreshFailed(Outcome.FATAL, "no usable refresh token")
        key = hashlib.sha256(tokens.refresh_token.encode()).digest()
        remembered = self._recall(key)
        if remembered is not None:
            return remembered.recalled()
        shared = self._in_flight.get(key)
        if shared is not None:
            fresh, _ = await asyncio.shield(shared)
            return fresh, Outcome.SHARED
        return await asyncio.shield(self._start(key, tokens))

    def _start(self, key: bytes, tokens: TokenSet) -> asyncio.Future[tuple[TokenSet, Outcome]]:
        future: asyncio.Future[tuple[TokenSet, Outcome]] = (
            asyncio.get_running_loop().create_future()
        )
        self._in_flight[key] = future
        # The call runs in its own task: a client that disconnects cancels its request
        # handler, and that must not cancel a refresh other requests are waiting for.
        task = asyncio.create_task(self._call(key, tokens, future))
        task.add_done_callback(lambda _: self._in_flight.pop(key, None))
        return future

    async def _call(
        self, key: bytes, tokens: TokenSet, future: asyncio.Future[tuple[TokenSet, Outcome]]
    ) -> None:
        started = time.monotonic()
        try:
            fresh, outcome = await self._single_flight(key, tokens)
        except RefreshFailed as failed:
            self._remember_failure(key, failed)
            self._fail(future, failed.outcome, str(failed), started)
        except asyncio.CancelledError:  # shutting down: release the waiters, then stop
            self._fail(future, Outcome.TRANSIENT, "cancelled", started)
            raise
        except Exception as err:  # never leave waiters hanging on a surprise
            self._fail(future, Outcome.TRANSIENT, type(err).__name__, started)
        else:
            self._remember(key, _Remembered(self._clock() + self._policy.grace, fresh))
            future.set_result((fresh, outcome))
            log.info(
                "token refresh %s in %.0f ms", outcome.value, (time.monotonic() - started) * 1000
            )

    async def _single_flight(self, key: bytes, tokens: TokenSet) -> tuple[TokenSet, Outcome]:
        if self._coordination is None:
            return await self.exchange(tokens), Outcome.OK
        return await self._coordination.coordinate(key, self.exchange, tokens)

    def _remember_failure(self, key: bytes, failed: RefreshFailed) -> None:
        now = self._clock()
        if failed.fatal:
            self._remember(key, _Remembered(now + self._policy.grace, None, str(failed)))
        elif failed.timed_out:
            until = now + self._policy.backoff
            self._remember(key, _Remembered(until, None, "backing off", Outcome.TRANSIENT))

    async def exchange(self, tokens: TokenSet) -> TokenSet:
        """One refresh-token grant at the IdP, its failure classified by OAuth error code."""
        refresh_token = tokens.refresh_token
        assert refresh_token is not None
        try:
            async with asyncio.timeout(self._policy.timeout):
                body = await self._oauth.refresh(refresh_token)
            return TokenSet.from_response(
                body, self._clock(), previous=tokens, keep_id_token=self._policy.keep_id_token
            )
        except TokenError as err:
            raise RefreshFailed(
                Outcome.FATAL if err.fatal else Outcome.TRANSIENT, err.code
            ) from None
        except (TimeoutError, IdPTimeout):
            raise RefreshFailed(Outcome.TRANSIENT, "timeout", timed_out=True) from None
        except MalformedTokenResponse as err:
            # The IdP answered 200 and has rotated the refresh token: not sent again soon.
            raise RefreshFailed(Outcome.TRANSIENT, type(err).__name__, timed_out=True) from None
        except NoUsableAnswer as err:
            raise RefreshFailed(Outcome.TRANSIENT, type(err).__name__) from None

    def _fail(
        self,
        future: asyncio.Future[tuple[TokenSet, Outcome]],
        outcome: Outcome,
        reason: str,
        started: float,
    ) -> None:
        log.warning(
            "token refresh %s (%s) after %.0f ms",
            outcome.value,
            reason,
            (time.monotonic() - started) * 1000,
        )
        future.set_exception(RefreshFailed(outcome, reason))
        future.exception()  # retrieved: a refresh nobody waits for any more is no error

    def _recall(self, key: bytes) -> _Remembered | None:
        now = self._clock()
        while self._remembered and next(iter(self._remembered.values())).until < now:
            self._remembered.popitem(last=False)
        return self._remembered.get(key)

    def _remember(self, key: bytes, entry: _Remembered) -> None:
        self._remembered[key] = entry
        self._remembered.move_to_end(key)
        while len(self._remembered) > self._policy.max_remembered:
            self._remembered.popitem(last=False)

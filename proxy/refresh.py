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
from dataclasses import dataclass

from proxy.oauth import IdPTimeout, IdPUnavailable, OAuthClient, TokenError
from proxy.tokens import Clock, MalformedTokenResponse, TokenSet

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    OK = "ok"  # this request refreshed
    SHARED = "shared"  # joined a refresh already in flight
    GRACE = "grace"  # an earlier refresh of the same token had the answer
    FATAL = "fatal"  # the grant is gone: log in again
    TRANSIENT = "transient"  # the IdP could not answer now: try later


class RefreshFailed(Exception):
    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome

    @property
    def fatal(self) -> bool:
        return self.outcome is Outcome.FATAL


@dataclass(frozen=True)
class _Remembered:
    until: float
    tokens: TokenSet | None  # None: do not send this refresh token (see outcome)
    reason: str = ""
    outcome: Outcome = Outcome.FATAL


class Refresher:
    def __init__(
        self,
        oauth: OAuthClient,
        timeout: float = 10.0,
        grace: float = 60.0,
        backoff: float = 10.0,
        max_remembered: int = 10_000,
        keep_id_token: bool = False,
        clock: Clock = time.time,
    ) -> None:
        self._oauth = oauth
        self._timeout = timeout
        self._grace = grace
        self._backoff = backoff
        self._max_remembered = max_remembered
        self._keep_id_token = keep_id_token
        self._clock = clock
        self._in_flight: dict[bytes, asyncio.Future[TokenSet]] = {}
        self._remembered: OrderedDict[bytes, _Remembered] = OrderedDict()

    async def refresh(self, tokens: TokenSet) -> tuple[TokenSet, Outcome]:
        if tokens.refresh_token is None or tokens.refresh_expired(self._clock()):
            raise RefreshFailed(Outcome.FATAL, "no usable refresh token")
        key = hashlib.sha256(tokens.refresh_token.encode()).digest()
        remembered = self._recall(key)
        if remembered is not None:
            if remembered.tokens is None:
                raise RefreshFailed(remembered.outcome, remembered.reason)
            return remembered.tokens, Outcome.GRACE
        shared = self._in_flight.get(key)
        if shared is not None:
            return await self._wait(shared), Outcome.SHARED
        future: asyncio.Future[TokenSet] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        # The call runs in its own task: a client that disconnects cancels its request
        # handler, and that must not cancel a refresh other requests are waiting for.
        task = asyncio.create_task(self._call(key, tokens, future))
        task.add_done_callback(lambda _: self._in_flight.pop(key, None))
        return await self._wait(future), Outcome.OK

    async def _wait(self, future: asyncio.Future[TokenSet]) -> TokenSet:
        return await asyncio.shield(future)

    async def _call(self, key: bytes, tokens: TokenSet, future: asyncio.Future[TokenSet]) -> None:
        refresh_token = tokens.refresh_token
        assert refresh_token is not None
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                body = await self._oauth.refresh(refresh_token)
            fresh = TokenSet.from_response(
                body, self._clock(), previous=tokens, keep_id_token=self._keep_id_token
            )
        except TokenError as err:
            outcome = Outcome.FATAL if err.fatal else Outcome.TRANSIENT
            if err.fatal:
                self._remember(key, _Remembered(self._clock() + self._grace, None, err.code))
            self._fail(future, outcome, err.code, started)
        except (TimeoutError, IdPTimeout):
            until = self._clock() + self._backoff
            self._remember(key, _Remembered(until, None, "backing off", Outcome.TRANSIENT))
            self._fail(future, Outcome.TRANSIENT, "timeout", started)
        except (IdPUnavailable, MalformedTokenResponse) as err:
            self._fail(future, Outcome.TRANSIENT, type(err).__name__, started)
        except asyncio.CancelledError:  # shutting down: release the waiters, then stop
            self._fail(future, Outcome.TRANSIENT, "cancelled", started)
            raise
        except Exception as err:  # never leave waiters hanging on a surprise
            self._fail(future, Outcome.TRANSIENT, type(err).__name__, started)
        else:
            self._remember(key, _Remembered(self._clock() + self._grace, fresh))
            future.set_result(fresh)
            log.info("token refresh ok in %.0f ms", (time.monotonic() - started) * 1000)

    def _fail(
        self, future: asyncio.Future[TokenSet], outcome: Outcome, reason: str, started: float
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
        while len(self._remembered) > self._max_remembered:
            self._remembered.popitem(last=False)

"""The session store and the refresher with a span around what they do: composed in
place of the plain ones when tracing is on, so that without it nothing changes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from opentelemetry.util.types import Attributes

from proxy.oauth.tokens import TokenSet
from proxy.refresh.single_flight import Outcome, Refreshes, RefreshFailed
from proxy.session.codec import StoredSession
from proxy.session.store import Sessions

REFRESH_OUTCOME = "sipgate_proxy.refresh.outcome"
SESSION_FOUND = "sipgate_proxy.session.found"
ERROR_TYPE = "error.type"


@contextlib.contextmanager
def started(
    tracer: Tracer,
    name: str,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes = None,
    parent: Context | None = None,
) -> Iterator[Span]:
    """A span, current while the block runs. An exception marks it failed by its type
    only: messages may quote data (the SDK's own handling would record them)."""
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as err:  # a cancelled request (client gone) ends its spans too
            failed(span, type(err).__qualname__)
            raise


def failed(span: Span, error_type: str) -> None:
    span.set_attribute(ERROR_TYPE, error_type)
    span.set_status(StatusCode.ERROR)


class TracedRefresher:
    def __init__(self, refresher: Refreshes, tracer: Tracer) -> None:
        self._refresher = refresher
        self._tracer = tracer

    async def refresh(self, tokens: TokenSet) -> tuple[TokenSet, Outcome]:
        # Current while it runs: the refresh's own task (and its IdP call) is its child.
        with started(self._tracer, "refresh") as span:
            try:
                fresh, outcome = await self._refresher.refresh(tokens)
            except RefreshFailed as refused:
                span.set_attribute(REFRESH_OUTCOME, refused.outcome.value)
                raise
            span.set_attribute(REFRESH_OUTCOME, outcome.value)
            return fresh, outcome


class TracedSessions:
    """The store's load and save, each in a span; the rest as it is."""

    def __init__(self, sessions: Sessions, tracer: Tracer) -> None:
        self._sessions = sessions
        self._tracer = tracer
        self.cookie_name = sessions.cookie_name

    def present(self, cookies: Mapping[str, str]) -> bool:
        return self._sessions.present(cookies)

    async def load(self, cookies: Mapping[str, str]) -> StoredSession | None:
        with started(self._tracer, "session load") as span:
            stored = await self._sessions.load(cookies)
            span.set_attribute(SESSION_FOUND, stored is not None)
            return stored

    async def save(
        self,
        tokens: TokenSet,
        created: float,
        cookies: Mapping[str, str],
        new_session: bool = False,
    ) -> list[str]:
        with started(self._tracer, "session save"):
            return await self._sessions.save(tokens, created, cookies, new_session)

    async def clear(self, cookies: Mapping[str, str]) -> list[str]:
        return await self._sessions.clear(cookies)

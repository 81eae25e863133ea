"""The refresher's own guarantees, with the IdP replaced at its method boundary."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxy.oauth.tokens import TokenSet
from proxy.refresh.single_flight import Outcome, Refresher, RefreshFailed, RefreshPolicy


class SurprisingIdP:
    """Raises something no handler expects, after a moment."""

    def __init__(self) -> None:
        self.calls = 0

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        self.calls += 1
        await asyncio.sleep(0.05)
        raise RecursionError("deeply nested JSON")


async def test_waiters_are_released_when_refresh_raises_the_unexpected() -> None:
    idp = SurprisingIdP()
    refresher = Refresher(idp, RefreshPolicy(timeout=5))
    tokens = TokenSet("a", "r", expires_at=0, refresh_expires_at=1e12)
    results = await asyncio.wait_for(
        asyncio.gather(*(refresher.refresh(tokens) for _ in range(5)), return_exceptions=True),
        timeout=5,
    )
    assert all(isinstance(r, RefreshFailed) for r in results)
    assert {r.outcome for r in results if isinstance(r, RefreshFailed)} == {Outcome.TRANSIENT}
    assert idp.calls == 1


async def test_missing_refresh_token_is_fatal_without_a_call() -> None:
    idp = SurprisingIdP()
    refresher = Refresher(idp)
    with pytest.raises(RefreshFailed) as failed:
        await refresher.refresh(TokenSet("a", None, expires_at=0, refresh_expires_at=1e12))
    assert failed.value.fatal
    assert idp.calls == 0

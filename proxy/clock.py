"""Time as the code sees it: a callable returning unix seconds, injectable for tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]


def iso_utc(seconds: float) -> str:
    """Unix seconds as ISO 8601 in UTC, to the second: ``2025-01-31T12:00:00Z``."""
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

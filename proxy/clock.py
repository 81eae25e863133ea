"""Time as the code sees it: a callable returning unix seconds, injectable for tests."""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], float]

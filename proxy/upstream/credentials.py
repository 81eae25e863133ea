"""What the forwarder injects into one upstream request: the mode's answer to "as whom"."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Credentials:
    authorization: str
    # Called once when the upstream answers 401 to a bodiless request: fresh credentials
    # for one retry, or None to pass the 401 on.
    reauthorize: Callable[[], Awaitable[Credentials | None]] | None = None
    # Called when the upstream answers 401 to the retry with these fresh credentials too.
    rejected: Callable[[], Awaitable[None]] | None = None

    def __repr__(self) -> str:
        return "Credentials(authorization=<redacted>)"

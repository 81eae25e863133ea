"""A token bucket per client: ``requests`` per ``per`` seconds, refilled continuously, so a
burst of ``requests`` passes and then one request every ``per / requests`` seconds."""

from __future__ import annotations

import math
import time

from proxy.clock import Clock


class TokenBucket:
    def __init__(self, requests: int, per: float, clock: Clock = time.monotonic) -> None:
        self._capacity = float(requests)
        self._rate = requests / per  # tokens per second
        self._tokens = float(requests)
        self._clock = clock
        self._last = clock()

    def take(self) -> int | None:
        """None when the request may pass; else the whole seconds until one may."""
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - self._tokens) / self._rate))

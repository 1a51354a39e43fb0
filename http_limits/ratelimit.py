"""Token buckets, alone or one per key (client address, peer id): shared by the mirror's policy
gate and the tracker, which must not import each other."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

Clock = Callable[[], float]


class TokenBucket:
    """`rate` tokens per second up to `burst`. `take` may run into debt, so one chunk larger than
    the burst still passes, and the debt makes the next caller wait longer."""

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def try_take(self, amount: float = 1.0) -> float:
        """0.0 when taken, else the seconds until `amount` tokens are available (nothing taken)."""
        self._refill()
        if self._tokens >= amount:
            self._tokens -= amount
            return 0.0
        return (amount - self._tokens) / self.rate

    def take_with_debt(self, amount: float) -> float:
        """Take `amount` now; the seconds the caller must wait to stay within the rate."""
        self._refill()
        self._tokens -= amount
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class KeyedRateLimiter:
    """One bucket per key; the least recently seen keys are forgotten first, so memory is bounded."""

    def __init__(self, rate: float, burst: float, max_keys: int = 65536, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, key: str) -> int:
        """0 when the request may proceed, else the Retry-After seconds (at least 1)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self._clock)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        wait = bucket.try_take()
        return 0 if wait == 0.0 else max(1, math.ceil(wait))

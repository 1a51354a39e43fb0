"""Rate limits: a token bucket per client (429 with Retry-After), and per-upstream caps on
concurrent origin fetches and on origin bandwidth (fills wait; nothing is refused)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from registry_mirror.policy import metrics

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


class ClientRateLimiter:
    """One bucket per client address; the least recently seen clients are forgotten first."""

    def __init__(self, rate: float, burst: float, max_clients: int = 65536, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, client: str) -> int:
        """0 when the request may proceed, else the Retry-After seconds (at least 1)."""
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket(self.rate, self.burst, self._clock)
            while len(self._buckets) > self._max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        wait = bucket.try_take()
        if wait == 0.0:
            return 0
        metrics.rate_limited_requests.add(1, {"limit": "client"})
        return max(1, math.ceil(wait))


@dataclass
class _UpstreamCap:
    slots: asyncio.Semaphore | None
    bandwidth: TokenBucket | None


class UpstreamLimits:
    """Per-upstream caps: at most `concurrency` origin blob fetches at once and `bandwidth` bytes
    per second, each upstream on its own. None disables a cap."""

    def __init__(self, concurrency: int | None = None, bandwidth: int | None = None, chunk_size: int = 1 << 20) -> None:
        self.concurrency = concurrency or None
        self.bandwidth = bandwidth or None
        self._chunk_size = chunk_size
        self._caps: dict[str, _UpstreamCap] = {}
        self.peak_in_flight: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}
        self._thread_lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.concurrency is not None or self.bandwidth is not None

    def _cap(self, upstream: str) -> _UpstreamCap:
        cap = self._caps.get(upstream)
        if cap is None:
            slots = asyncio.Semaphore(self.concurrency) if self.concurrency else None
            # A burst of one chunk or 1/4 s of rate: big enough for 1 MiB sends, small enough to bind.
            bucket = TokenBucket(self.bandwidth, max(self._chunk_size, self.bandwidth / 4)) if self.bandwidth else None
            cap = self._caps[upstream] = _UpstreamCap(slots, bucket)
        return cap

    @contextlib.asynccontextmanager
    async def slot(self, upstream: str) -> AsyncIterator[None]:
        """Hold one of the upstream's fetch slots for the duration of a fetch."""
        slots = self._cap(upstream).slots
        if slots is None:
            yield
            return
        waited = time.monotonic()
        async with slots:
            if (seconds := time.monotonic() - waited) > 0.001:
                metrics.upstream_throttle_seconds.add(seconds, {"upstream": upstream, "cap": "concurrency"})
            self._in_flight[upstream] = self._in_flight.get(upstream, 0) + 1
            self.peak_in_flight[upstream] = max(self.peak_in_flight.get(upstream, 0), self._in_flight[upstream])
            metrics.upstream_fetches_in_flight.add(1, {"upstream": upstream})
            try:
                yield
            finally:
                self._in_flight[upstream] -= 1
                metrics.upstream_fetches_in_flight.add(-1, {"upstream": upstream})

    def blocking_throttle(self, upstream: str) -> Callable[[int], None] | None:
        """For bodies received on worker threads: sleeps the calling thread to keep the
        upstream's bandwidth cap, the same bucket the async fetches share."""
        bucket = self._cap(upstream).bandwidth
        if bucket is None:
            return None
        lock = self._thread_lock

        def take(count: int) -> None:
            with lock:
                wait = bucket.take_with_debt(count)
            if wait > 0:
                metrics.upstream_throttle_seconds.add(wait, {"upstream": upstream, "cap": "bandwidth"})
                time.sleep(wait)

        return take

    async def throttle(self, upstream: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Pass `chunks` on no faster than the upstream's bandwidth cap (shared by its fetches)."""
        bucket = self._cap(upstream).bandwidth
        async for chunk in chunks:
            if bucket is not None:
                with self._thread_lock:
                    wait = bucket.take_with_debt(len(chunk))
                if wait > 0:
                    metrics.upstream_throttle_seconds.add(wait, {"upstream": upstream, "cap": "bandwidth"})
                    await asyncio.sleep(wait)
            yield chunk

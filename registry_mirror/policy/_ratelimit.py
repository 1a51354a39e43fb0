"""Rate limits: a token bucket per client (429 with Retry-After), and per-upstream caps on
concurrent origin fetches and on origin bandwidth (fills wait; nothing is refused)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from http_limits.ratelimit import Clock, KeyedRateLimiter, TokenBucket
from registry_mirror.policy import _metrics as metrics

__all__ = ["ClientRateLimiter", "TokenBucket", "UpstreamLimits"]


class ClientRateLimiter(KeyedRateLimiter):
    """One bucket per client address, counted when it refuses."""

    def __init__(self, rate: float, burst: float, max_clients: int = 65536, clock: Clock = time.monotonic) -> None:
        super().__init__(rate, burst, max_clients, clock)

    def check(self, client: str) -> int:
        wait = super().check(client)
        if wait:
            metrics.rate_limited_requests.add(1, {"limit": "client"})
        return wait


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

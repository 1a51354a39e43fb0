"""The scrubber: re-verifies every cached blob in the background, oldest access first, at a
bounded rate, so bytes that rot on disk (which changes nothing a stat can see) are found and
quarantined before a client trips over them.

The rate is paced on the hashing thread (a token bucket in bytes per second): the default, 16 MiB/s,
is about 2% of this class of NVMe's read bandwidth. A blob that is being filled or was removed is
skipped; a corrupt one is quarantined by the store (counted as stage "scrub").

A blob hashed less than `min_age` ago (committed, which verifies it, or scrubbed) waits for a
later pass: rot takes months, and re-reading a model right after it was pulled competes with the
node loading it (it was 18% of a seed's CPU while it served the blob to a peer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Observation

from nvme_cache import metrics
from nvme_cache.store import BlobStore
from oci.digest import Digest

log = logging.getLogger("nvme_cache.scrub")

DEFAULT_RATE = 16 * 1024 * 1024
DEFAULT_MIN_AGE = 24 * 3600.0
_IDLE_SECONDS = 60.0  # an empty cache is looked at again after this, or at the first commit


class Scrubber:
    def __init__(
        self,
        store: BlobStore,
        rate: int = DEFAULT_RATE,
        *,
        min_age: float = DEFAULT_MIN_AGE,
        idle: float = _IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = store
        self._rate = rate
        self._min_age = min_age
        self._hashed_at: dict[str, float] = {}  # digest -> when it was last hashed whole (clock)
        self._idle = idle
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._allowance = 0.0
        self._last = clock()
        self.pass_bytes = 0  # bytes of the current pass
        self.pass_done = 0  # of which hashed so far
        self.passes = 0
        self.hashed_bytes = 0  # over all passes
        self.corrupt_found = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._rate > 0:
            _scrubbers.append(self)
            self._added = asyncio.Event()
            self._store.on_commit.append(self._on_commit)
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _on_commit(self, digest: str, size: int) -> None:
        self._hashed_at[digest] = self._clock()  # a commit follows a full hash
        self._added.set()

    async def stop(self) -> None:
        if self in _scrubbers:
            _scrubbers.remove(self)
        if self._on_commit in self._store.on_commit:
            self._store.on_commit.remove(self._on_commit)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def run_pass(self) -> None:
        """One pass over everything cached now that was not hashed within `min_age`."""
        store = self._store
        cached = [(digest, entry.size) for digest, entry in store.index.lru()]
        self._hashed_at = {d: at for d, at in self._hashed_at.items() if store.index.get(d) is not None}
        entries = [(digest, size) for digest, size in cached if not self._fresh(digest)]
        if len(entries) < len(cached):
            metrics.scrub_skipped.add(len(cached) - len(entries), {"reason": "recently_hashed"})
        self.pass_bytes, self.pass_done = sum(size for _, size in entries), 0
        for digest, size in entries:
            if store.index.get(digest) is not None and store.inflight(Digest.parse(digest)) is None:
                if await store.check_file(Digest.parse(digest), stage="scrub", pace=self._pace):
                    self._hashed_at[digest] = self._clock()
                else:
                    self.corrupt_found += 1
            self.pass_done += size
        self.passes += 1
        metrics.scrub_passes.add(1)

    def _fresh(self, digest: str) -> bool:
        hashed = self._hashed_at.get(digest)
        return hashed is not None and self._clock() - hashed < self._min_age

    def _next_due(self) -> float:
        """Seconds until the first recently hashed blob is due again (at most `idle`)."""
        now = self._clock()
        waits = [at + self._min_age - now for at in self._hashed_at.values()]
        return max(0.0, min([self._idle, *waits]))

    async def _run(self) -> None:
        while True:
            try:
                await self.run_pass()
            except asyncio.CancelledError:
                raise
            except Exception:  # a scrubber must never take the mirror down; try again later
                log.exception("scrub pass failed")
            if self.pass_bytes == 0:  # nothing due: wait for a commit, or until a blob is due again
                self._added.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._added.wait(), max(self._next_due(), 1.0))

    def _pace(self, count: int) -> None:
        """On the hashing thread: wait until `count` bytes fit the rate."""
        metrics.scrub_bytes.add(count)
        with self._lock:
            self.hashed_bytes += count
            now = self._clock()
            self._allowance = min(self._allowance + (now - self._last) * self._rate, float(self._rate))
            self._last = now
            self._allowance -= count
            wait = -self._allowance / self._rate if self._allowance < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


_scrubbers: list[Scrubber] = []


def _observe_progress(_: CallbackOptions) -> Iterable[Observation]:
    return [Observation(s.pass_done / s.pass_bytes if s.pass_bytes else 1.0) for s in _scrubbers]


metrics.meter.create_observable_gauge(
    "registry_mirror_cache_scrub_progress",
    callbacks=[_observe_progress],
    description="Fraction of the current scrub pass done (0 to 1)",
)

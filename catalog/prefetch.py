"""Prefetch every blob a catalog lists into nvme_cache, with bounded concurrency.

Each blob goes through `store.get(digest, source)`: a cached blob is skipped, a fill already running
(a client asked first) is joined, otherwise a new fill starts from the source the wiring layer gives
(peers, delta, origin). The store verifies every digest; this module only schedules and counts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from catalog.metrics import prefetch_blobs, prefetch_bytes
from catalog.models import Blob
from nvme_cache import BlobStore, CachedBlob, Digest, FillSource

log = logging.getLogger("catalog.prefetch")

# (blob, registry host the catalog names for it) -> where its bytes come from
SourceFor = Callable[[Blob, str], FillSource]


@dataclass
class PrefetchProgress:
    catalog: str
    serial: int
    total_blobs: int = 0
    total_bytes: int = 0
    done_blobs: int = 0  # present in the cache: fetched now or already there
    done_bytes: int = 0
    fetched_bytes: int = 0  # filled by this prefetch (any source)
    failed: dict[str, str] = field(default_factory=dict)  # digest -> reason
    started: float = field(default_factory=time.time)
    finished: float | None = None

    @property
    def complete(self) -> bool:
        return self.finished is not None and not self.failed

    def as_dict(self) -> dict[str, object]:
        return {
            "total_blobs": self.total_blobs,
            "total_bytes": self.total_bytes,
            "done_blobs": self.done_blobs,
            "done_bytes": self.done_bytes,
            "fetched_bytes": self.fetched_bytes,
            "failed": dict(self.failed),
            "started": self.started,
            "finished": self.finished,
            "complete": self.complete,
        }


async def prefetch(
    store: BlobStore,
    blobs: Iterable[tuple[Blob, str]],
    source_for: SourceFor,
    progress: PrefetchProgress,
    concurrency: int = 4,
) -> PrefetchProgress:
    """Fill every (blob, registry) into `store`; failures are recorded in `progress`, not raised."""
    queue: asyncio.Queue[tuple[Blob, str]] = asyncio.Queue()
    for item in blobs:
        queue.put_nowait(item)
        progress.total_blobs += 1
        progress.total_bytes += item[0].size
    log.info(
        "catalog %s serial %d: prefetching %d blobs, %d bytes",
        progress.catalog,
        progress.serial,
        progress.total_blobs,
        progress.total_bytes,
    )
    workers = [asyncio.create_task(_worker(store, queue, source_for, progress)) for _ in range(max(1, concurrency))]
    try:
        await asyncio.gather(*workers)
    finally:
        for worker in workers:
            worker.cancel()
    progress.finished = time.time()
    log.info(
        "catalog %s serial %d: prefetch done, %d/%d blobs present, %d bytes fetched, %d failed",
        progress.catalog,
        progress.serial,
        progress.done_blobs,
        progress.total_blobs,
        progress.fetched_bytes,
        len(progress.failed),
    )
    return progress


async def _worker(
    store: BlobStore, queue: asyncio.Queue[tuple[Blob, str]], source_for: SourceFor, progress: PrefetchProgress
) -> None:
    while not queue.empty():
        blob, registry = queue.get_nowait()
        result = await _one(store, blob, registry, source_for)
        prefetch_blobs.add(
            1, {"catalog": progress.catalog, "result": result if result in ("cached", "fetched") else "failed"}
        )
        if result in ("cached", "fetched"):
            progress.done_blobs += 1
            progress.done_bytes += blob.size
            if result == "fetched":
                progress.fetched_bytes += blob.size
                prefetch_bytes.add(blob.size, {"catalog": progress.catalog})
        else:
            progress.failed[blob.digest] = result
            log.warning(
                "catalog %s serial %d: prefetch of %s (%s) failed: %s",
                progress.catalog,
                progress.serial,
                blob.digest,
                blob.repository,
                result,
            )
        _log_progress(progress)


async def _one(store: BlobStore, blob: Blob, registry: str, source_for: SourceFor) -> str:
    """'cached', 'fetched', or the reason it failed."""
    digest = Digest.parse(blob.digest)
    if store.stat(digest) is not None:
        return "cached"
    try:
        handle = store.get(digest, source_for(blob, registry), expected_size=blob.size, media_type=blob.media_type)
        if isinstance(handle, CachedBlob):
            return "cached"
        await handle.wait()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # one blob failing must not stop the others
        return f"{type(exc).__name__}: {exc}"
    if store.stat(digest) is None:
        return "not stored (the cache had no room; served pass-through)"
    return "fetched"


def _log_progress(progress: PrefetchProgress) -> None:
    # About ten lines per prefetch, whatever its size.
    step = max(1, progress.total_blobs // 10)
    handled = progress.done_blobs + len(progress.failed)
    if handled % step == 0 and handled < progress.total_blobs:
        log.info(
            "catalog %s serial %d: prefetch %d/%d blobs, %d/%d bytes",
            progress.catalog,
            progress.serial,
            handled,
            progress.total_blobs,
            progress.done_bytes,
            progress.total_bytes,
        )

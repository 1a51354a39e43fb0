"""A Range read of a cached blob not yet verified in this process hashes the whole file first;
meanwhile it counts as a reader, so eviction leaves the blob alone (the 206's headers are out)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import nvme_cache.store as store_module
from nvme_cache import CachedBlob, FileSegment
from tests.nvme_cache.sources import digest_of
from tests.nvme_cache.test_store import MiB, blob, fill_from, make_store


async def test_blob_being_verified_for_a_range_is_not_evicted(tmp_path: Path, monkeypatch) -> None:
    a, b = blob(8 * MiB, 1), blob(12 * MiB, 2)
    store = make_store(tmp_path, max_size=20 * MiB)
    await fill_from(store, a)
    store.close()
    store = make_store(tmp_path, max_size=20 * MiB)  # a restart: `a` is cached but unverified

    hashing, go_on = threading.Event(), threading.Event()
    real = store_module.file_matches

    def slow_file_matches(*args, **kwargs):  # a big blob takes a while to hash (its file open)
        result = real(*args, **kwargs)
        hashing.set()
        assert go_on.wait(10)
        return result

    monkeypatch.setattr(store_module, "file_matches", slow_file_matches)
    handle = store.get(digest_of(a))
    assert isinstance(handle, CachedBlob) and not handle.verified
    body = handle.segments(0, 100)  # bytes=0-99
    first = asyncio.ensure_future(anext(body))
    assert await asyncio.to_thread(hashing.wait, 10)
    monkeypatch.setattr(store_module, "file_matches", real)
    await fill_from(store, b)  # another blob commits meanwhile: the cache goes over its high watermark
    go_on.set()
    segment = await first  # BlobVanished on the current code: `a` was evicted while it was hashed
    assert isinstance(segment, FileSegment)
    import os

    assert os.pread(segment.fd, segment.count, segment.offset) == a[:100]
    await body.aclose()
    store.close()

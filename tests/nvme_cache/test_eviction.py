from __future__ import annotations

import asyncio
from pathlib import Path

from nvme_cache import BlobStore, Fill
from nvme_cache.evict import plan_eviction
from nvme_cache.index import Entry
from tests.nvme_cache.sources import BytesSource, digest_of
from tests.nvme_cache.test_store import blob, collect, fill_from, make_store

KiB = 1024


def test_plan_skips_protected_and_stops_at_target() -> None:
    lru = [(f"d{i}", Entry(10, None, float(i))) for i in range(6)]
    victims = plan_eviction(lru, used=60, target_used=30, protected={"d1"})
    assert victims == ["d0", "d2", "d3"]


def test_plan_honours_free_disk_floor() -> None:
    lru = [(f"d{i}", Entry(10, None, float(i))) for i in range(6)]
    victims = plan_eviction(lru, used=60, target_used=100, protected=set(), free_bytes=5, min_free_bytes=25)
    assert victims == ["d0", "d1"]


async def test_lru_order_with_touches(tmp_path: Path) -> None:
    # cap 100 KiB: high 90 KiB, low 80 KiB; each blob 20 KiB.
    store = make_store(tmp_path, max_size=100 * KiB)
    blobs = [blob(20 * KiB, seed=i) for i in range(4)]
    for data in blobs:
        await fill_from(store, data)
    # Touch the oldest so the second-oldest becomes the LRU victim.
    await collect(store.get(digest_of(blobs[0])))
    await fill_from(store, blob(20 * KiB, seed=99))  # 100 KiB > high: evict down to <= 80 KiB
    present = [store.stat(digest_of(d)) is not None for d in blobs]
    assert present == [True, False, True, True]
    assert store.bytes_used <= 80 * KiB
    store.close()


async def test_pinned_and_busy_blobs_are_never_evicted(tmp_path: Path) -> None:
    store = make_store(tmp_path, max_size=100 * KiB)
    blobs = [blob(20 * KiB, seed=i) for i in range(4)]
    for data in blobs:
        await fill_from(store, data)
    store.pin("catalog:prod", [digest_of(blobs[0])])
    reader = store.get(digest_of(blobs[1])).read()
    await reader.__anext__()  # blob 1 is being read
    await fill_from(store, blob(20 * KiB, seed=50))
    await reader.aclose()
    assert store.stat(digest_of(blobs[0])) is not None
    assert store.stat(digest_of(blobs[1])) is not None
    assert store.stat(digest_of(blobs[2])) is None
    store.close()

    reopened = make_store(tmp_path, max_size=100 * KiB)
    assert reopened.pins() == {"catalog:prod": {str(digest_of(blobs[0]))}}
    reopened.unpin("catalog:prod")
    assert reopened.pins() == {}
    reopened.close()


async def test_blob_larger_than_cap_streams_uncached(tmp_path: Path) -> None:
    store = make_store(tmp_path, max_size=100 * KiB)
    data = blob(300 * KiB)
    handle = store.get(digest_of(data), BytesSource(data, chunk=16 * KiB))
    readers = await asyncio.gather(collect(handle), collect(handle))
    assert readers == [data, data]
    assert isinstance(handle, Fill)
    await handle.wait()
    assert store.stat(digest_of(data)) is None
    assert store.bytes_used == 0
    store.close()


async def test_admin_evict_refuses_pinned(tmp_path: Path) -> None:
    store: BlobStore = make_store(tmp_path)
    a, b = blob(1000, 1), blob(1000, 2)
    await fill_from(store, a)
    await fill_from(store, b)
    store.pin("keep", [digest_of(a)])
    assert store.evict(digest_of(a)) is False
    assert store.evict(digest_of(b)) is True
    assert store.stat(digest_of(b)) is None
    store.close()

"""ENOSPC on a real, size-limited tmpfs (needs root to mount)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nvme_cache import Fill
from tests.nvme_cache.sources import BytesRanges, BytesSource, digest_of
from tests.nvme_cache.test_store import blob, collect, fill_from, make_store

MiB = 1024 * 1024


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("the disk-full tests mount a tmpfs and need root")
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


async def test_disk_full_degrades_to_passthrough(small_tmpfs: Path) -> None:
    # The cap says it fits, the disk says no: every reader still gets every byte, nothing is cached.
    store = make_store(small_tmpfs, max_size=1 << 30, min_free_bytes=0)
    data = blob(9 * MiB)
    handle = store.get(digest_of(data), BytesSource(data, chunk=256 * 1024))
    assert isinstance(handle, Fill)
    bodies = await asyncio.gather(collect(handle), collect(handle), collect(handle, 100, 5 * MiB))
    assert bodies == [data, data, data[100 : 5 * MiB]]
    await handle.wait()
    assert handle.passthrough_from is not None
    assert store.stat(digest_of(data)) is None
    assert os.listdir(store.layout.tmp) == []
    store.close()


async def test_disk_full_evicts_and_retries(small_tmpfs: Path) -> None:
    store = make_store(small_tmpfs, max_size=1 << 30, min_free_bytes=0)
    old = blob(3 * MiB, seed=3)
    await fill_from(store, old)
    data = blob(4 * MiB, seed=4)
    handle = store.get(digest_of(data), BytesSource(data, chunk=256 * 1024))
    assert await collect(handle) == data
    assert isinstance(handle, Fill)
    await handle.wait()
    assert handle.passthrough_from is None
    assert store.stat(digest_of(data)) is not None
    assert store.stat(digest_of(old)) is None  # evicted to make room
    store.close()


async def test_a_blob_that_can_never_fit_evicts_nothing(small_tmpfs: Path) -> None:
    # 9 MiB on a 6 MiB disk: even an empty cache would not hold it, so the cached 2 MiB blob stays.
    store = make_store(small_tmpfs, max_size=1 << 30, min_free_bytes=0)
    old = blob(2 * MiB, seed=5)
    await fill_from(store, old)
    data = blob(9 * MiB, seed=6)
    handle = store.get(digest_of(data), BytesSource(data, chunk=256 * 1024))
    assert await collect(handle) == data
    assert isinstance(handle, Fill)
    await handle.wait()
    assert handle.passthrough_from is not None
    assert store.stat(digest_of(data)) is None
    assert store.stat(digest_of(old)) is not None  # not evicted for nothing
    store.close()


async def test_disk_full_after_the_first_range_streams_uncached_from_byte_0(small_tmpfs: Path) -> None:
    # The blob fits when its fill starts; while its first range (2 MiB) arrives and is hashed from
    # the receive buffers, another writer takes the disk, so the whole blob can no longer be
    # allocated. The fill starts over uncached from byte 0 on a hash state of its own and gives the
    # first range's room back.
    store = make_store(small_tmpfs, max_size=1 << 30, min_free_bytes=0, piece_size=MiB)
    data = blob(4 * MiB, seed=7)
    source = BytesRanges(data, max_parallel=1, parallel_min_size=2 * MiB, hold_at=3 * MiB // 2)
    handle = store.get(digest_of(data), source.opener())  # type: ignore[arg-type]
    assert isinstance(handle, Fill)
    readers = asyncio.gather(collect(handle), collect(handle, 100, 3 * MiB))
    assert await asyncio.to_thread(source.holding.wait, 10)
    (small_tmpfs / "another-writer").write_bytes(bytes(7 * MiB // 2))  # 0.5 MiB left: the rest of the blob won't fit
    source.release.set()
    assert await readers == [data, data[100 : 3 * MiB]]
    await handle.wait()
    assert handle.hashed_in_memory > 0  # the case this covers: the ranged attempt had hashed bytes
    assert handle.passthrough_from == 0
    assert store.stat(digest_of(data)) is None
    assert os.listdir(store.layout.tmp) == []
    store.close()

"""Pass-through fills (a blob the cache cannot hold) with several readers (issue 11, item 10): a
reader that joins late gets every byte, a slow reader holds nobody back, and no reader is left
parked on its queue. In-process range and stream sources on the fill's real threads."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nvme_cache import Fill, FillFailed
from tests.nvme_cache.sources import BytesRanges, BytesSource, digest_of
from tests.nvme_cache.test_store import blob, collect, make_store

KiB = 1024
MiB = 1024 * KiB


def uncached_store(tmp_path: Path):  # type: ignore[no-untyped-def]
    return make_store(tmp_path, max_size=64 * KiB, chunk_size=16 * KiB)  # every blob here is bigger


async def _first_bytes(handle: Fill, count: int) -> tuple[AsyncIterator[bytes], bytes]:
    reader = handle.read()
    got = b""
    async for chunk in reader:
        got += chunk
        if len(got) >= count:
            break
    return reader, got


@pytest.mark.parametrize("kind", ["ranges", "stream"])
async def test_a_reader_joining_late_gets_the_whole_blob(tmp_path: Path, kind: str) -> None:
    store = uncached_store(tmp_path)
    data = blob(2 * MiB, seed=11)
    source = (
        BytesRanges(data, read_size=16 * KiB, delay=0.001).opener()
        if kind == "ranges"
        else BytesSource(data, chunk=16 * KiB, delay=0.001)
    )
    handle = store.get(digest_of(data), source)
    assert isinstance(handle, Fill)
    first, head = await _first_bytes(handle, 256 * KiB)  # the stream is well past byte 0 now
    late = store.get(digest_of(data), source)
    assert late is handle
    rest = b"".join([c async for c in first])
    assert await collect(late) == data  # before: an empty body, aborted ("bytes from 0 are gone")
    assert head + rest == data
    await handle.wait()
    assert handle.passthrough_from == 0 and store.stat(digest_of(data)) is None
    store.close()


async def test_a_stalled_reader_does_not_hold_the_others_back(tmp_path: Path) -> None:
    store = uncached_store(tmp_path)
    data = blob(4 * MiB, seed=12)
    handle = store.get(digest_of(data), BytesRanges(data, read_size=64 * KiB).opener())
    assert isinstance(handle, Fill)
    started = time.monotonic()
    reader = asyncio.create_task(collect(handle))
    await asyncio.sleep(0)  # both attach before the first byte: they share the one stream
    stalled = handle.read()
    assert await stalled.__anext__()  # and then it stops reading, like a client that stalled
    assert await reader == data
    assert time.monotonic() - started < 5  # before: 30 s per stalled reader (_SLOW_READER_TIMEOUT)
    await handle.wait()
    # The stalled reader, once it reads again, still gets its whole, verified blob (its own stream).
    rest = b"".join([c async for c in stalled])
    assert len(rest) + 16 * KiB >= len(data) and data.endswith(rest)
    store.close()


async def test_a_reader_that_fell_behind_still_never_completes_wrong_bytes(tmp_path: Path) -> None:
    store = uncached_store(tmp_path)
    data = blob(1 * MiB, seed=13)
    source = BytesRanges(data, read_size=64 * KiB)
    handle = store.get(digest_of(data), source.opener())
    assert isinstance(handle, Fill)
    reader = asyncio.create_task(collect(handle))
    await asyncio.sleep(0)
    stalled = handle.read()
    await stalled.__anext__()
    assert await reader == data
    await handle.wait()
    source.data[len(data) - 10] ^= 0xFF  # the origin turns bad before the stalled reader goes on alone
    with pytest.raises(FillFailed):
        async for _ in stalled:
            pass
    store.close()


async def test_no_reader_task_is_left_parked_on_its_queue(tmp_path: Path) -> None:
    store = uncached_store(tmp_path)
    data = blob(1 * MiB, seed=14)
    handle = store.get(digest_of(data), BytesRanges(data, read_size=64 * KiB).opener())
    assert isinstance(handle, Fill)
    tasks = [asyncio.create_task(collect(handle)) for _ in range(3)]
    await asyncio.sleep(0)
    stalled = handle.read()
    await stalled.__anext__()
    assert await asyncio.gather(*tasks) == [data] * 3
    await handle.wait()
    # The stalled reader resumes after the fill ended: it must finish, not wait for ever.
    rest = await asyncio.wait_for(asyncio.ensure_future(_drain(stalled)), 10)
    assert data.endswith(rest)
    gc.collect()
    parked = [t for t in asyncio.all_tasks() if "Queue.get" in repr(t.get_stack())]
    assert parked == []
    store.close()


async def _drain(reader: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in reader])

"""Chunks a stream writes into the fill's temp file itself (`Landed`: a peer download): they count
as present only once yielded, and the whole-blob hash is taken over the file's bytes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nvme_cache import Fill, FillFailed, VerificationFailed
from tests.nvme_cache.sources import LandingSource, digest_of
from tests.nvme_cache.test_store import blob, collect, make_store, temp_files

CHUNK = 64 * 1024


async def test_landed_chunks_are_cached_and_served(tmp_path: Path) -> None:
    data = blob(20 * CHUNK + 123)
    store = make_store(tmp_path)
    source = LandingSource(data, chunk=CHUNK)
    handle = store.get(digest_of(data), source)
    assert await collect(handle) == data
    assert isinstance(handle, Fill)
    await handle.wait()
    assert source.landed == 21  # every chunk went through the file, none through the loop
    assert handle.committed
    assert await collect(store.get(digest_of(data), source)) == data  # a cache hit now


async def test_wrong_bytes_in_the_file_fail_the_blob_and_nothing_is_cached(tmp_path: Path) -> None:
    """The stream yields the right lengths but wrote one wrong byte: the hash reads the file, so
    the fill fails, the client's response is aborted and the cache stays empty."""
    data = blob(20 * CHUNK)
    store = make_store(tmp_path)
    handle = store.get(digest_of(data), LandingSource(data, chunk=CHUNK, corrupt_chunk=7))
    with pytest.raises(FillFailed):
        await collect(handle)
    assert isinstance(handle, Fill)
    with pytest.raises(VerificationFailed):
        await handle.wait()
    assert not handle.committed
    assert store.lookup(digest_of(data)) is None
    assert temp_files(store) == []


async def test_landed_bytes_are_not_present_until_the_chunk_is_yielded(tmp_path: Path) -> None:
    data = blob(8 * CHUNK)
    store = make_store(tmp_path)
    source = LandingSource(data, chunk=CHUNK)
    source.hold_chunk = 3
    handle = store.get(digest_of(data), source)
    assert isinstance(handle, Fill)
    reader = asyncio.ensure_future(collect(handle))
    await source.written.wait()  # chunk 3 is in the file, not yet handed to the fill
    assert handle.has(0, 2 * CHUNK)  # those before are present (the fill finishes a chunk when the next one comes)
    assert not handle.has(3 * CHUNK, 4 * CHUNK)
    assert store.written_segments(digest_of(data), 3 * CHUNK, 4 * CHUNK) is None  # no peer gets it
    source.released.set()
    assert await reader == data

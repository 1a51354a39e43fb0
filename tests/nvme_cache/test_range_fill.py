"""Range fills: pieces from several ranges in any order, readers of any range at once, the whole
digest still the only way into the cache."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nvme_cache import BlobStore, Fill, FillFailed
from tests.nvme_cache.sources import BytesRanges, digest_of
from tests.nvme_cache.test_store import blob, collect, make_store

PIECE = 4096


def range_store(root: Path, **kwargs: object) -> BlobStore:
    store = BlobStore(root, max_size=1 << 30, chunk_size=1024, piece_size=PIECE, **kwargs)  # type: ignore[arg-type]
    store.open()
    return store


wanted_ranges = st.tuples(st.integers(0, 60000), st.one_of(st.none(), st.integers(1, 60000)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.integers(1, 60000),
    max_parallel=st.integers(1, 5),
    slow=st.booleans(),
    first=st.integers(0, 60000),
    wanted=st.lists(wanted_ranges, min_size=1, max_size=6),
    corrupt=st.one_of(st.none(), st.integers(0, 59999)),
)
def test_range_readers_see_exact_bytes_or_an_error(
    size: int, max_parallel: int, slow: bool, first: int, wanted: list[tuple[int, int | None]], corrupt: int | None
) -> None:
    asyncio.run(_scenario(size, max_parallel, slow, first, wanted, corrupt))


async def _scenario(
    size: int, max_parallel: int, slow: bool, first: int, wanted: list[tuple[int, int | None]], corrupt: int | None
) -> None:
    data = blob(size, seed=size)
    corrupt = None if corrupt is None or corrupt >= size else corrupt
    with tempfile.TemporaryDirectory() as root:
        store = range_store(Path(root))
        source = BytesRanges(
            data,
            max_parallel=max_parallel,
            parallel_min_size=2 * PIECE,
            read_size=1024,
            delay=0.002 if slow else 0.0,
            corrupt_at=corrupt,
        )
        digest = digest_of(data)
        handle = store.get(digest, source.opener(), first_offset=first % size)  # type: ignore[arg-type]
        assert isinstance(handle, Fill)
        spans = [(s % size, None if e is None else max(s % size + 1, min(e, size))) for s, e in wanted]

        async def read(start: int, end: int | None) -> bytes | Exception:
            try:
                return await collect(handle, start, end)
            except FillFailed as exc:
                return exc

        results = await asyncio.gather(read(0, None), *(read(s, e) for s, e in spans))
        with_error = corrupt is not None
        if with_error:
            # A full read never completes on wrong bytes; nothing enters the cache.
            assert isinstance(results[0], FillFailed)
            assert store.stat(digest) is None
        else:
            assert results[0] == data
            for (start, end), got in zip(spans, results[1:], strict=True):
                assert got == data[start:end]
            await handle.wait()
            assert store.stat(digest) is not None
        for (start, end), got in zip(spans, results[1:], strict=True):
            # A Range read gets the source's bytes for its range, or an error: never other bytes.
            if not isinstance(got, Exception):
                expected = bytearray(data)
                if corrupt is not None:
                    expected[corrupt] ^= 0xFF
                assert got == bytes(expected[start:end])
        covered = sorted((s, size if e is None else min(e, size)) for s, e in source.requests)
        if not with_error:
            assert sum(e - s for s, e in covered) == size  # every byte asked for once
        assert list((Path(root) / "tmp").iterdir()) == []
        store.close()


async def test_cold_range_is_fetched_first(tmp_path: Path) -> None:
    data = blob(64 * PIECE)
    store = range_store(tmp_path)
    source = BytesRanges(data, parallel_min_size=8 * PIECE, delay=0.001)
    last = len(data) - PIECE // 2
    handle = store.get(digest_of(data), source.opener(), first_offset=last)  # type: ignore[arg-type]
    assert await collect(handle, last, None) == data[last:]
    assert source.requests[0][0] == len(data) - PIECE  # the reader's piece came first
    await handle.wait()
    assert store.stat(digest_of(data)) is not None
    store.close()


async def test_a_reader_far_ahead_gets_a_helper_connection(tmp_path: Path) -> None:
    data = blob(64 * PIECE)
    store = range_store(tmp_path)
    source = BytesRanges(data, max_parallel=3, parallel_min_size=16 * PIECE, read_size=1024, delay=0.002)
    handle = store.get(digest_of(data), source.opener())  # type: ignore[arg-type]
    assert isinstance(handle, Fill)
    middle = 40 * PIECE
    got = b"".join([chunk async for chunk in handle.read(middle, middle + PIECE, hold_back=False)])
    assert got == data[middle : middle + PIECE]
    assert not handle.verified  # answered before the main stream got anywhere near it
    assert any(start <= middle < (end or len(data)) for start, end in source.requests[1:])
    await handle.wait()
    assert store.stat(digest_of(data)) is not None
    store.close()


async def test_origin_without_range_support_streams_once(tmp_path: Path) -> None:
    data = blob(20 * PIECE)
    store = range_store(tmp_path)
    source = BytesRanges(data, ranged=False, parallel_min_size=2 * PIECE)
    handle = store.get(digest_of(data), source.opener(), first_offset=10 * PIECE)  # type: ignore[arg-type]
    assert await collect(handle, 10 * PIECE, None) == data[10 * PIECE :]
    assert await collect(handle) == data
    assert len(source.requests) == 1
    store.close()


async def test_no_room_streams_uncached(tmp_path: Path) -> None:
    data = blob(20 * PIECE)
    store = make_store(tmp_path, max_size=10 * PIECE)
    source = BytesRanges(data)
    handle = store.get(digest_of(data), source.opener())  # type: ignore[arg-type]
    assert isinstance(handle, Fill)
    assert await collect(handle) == data
    await handle.wait()
    assert handle.passthrough_from == 0
    assert store.stat(digest_of(data)) is None
    store.close()


async def test_a_short_answer_to_a_late_pass_through_reader_is_an_error(tmp_path: Path) -> None:
    """No room: the blob streams uncached. A Range reader that joins after the stream passed its
    offset gets a stream of its own from the origin; when that answer ends short, the reader must
    fail, not end as if its range were complete."""
    data = blob(40 * PIECE)
    store = make_store(tmp_path, max_size=10 * PIECE)
    held = 30 * PIECE
    source = BytesRanges(data, hold_at=held, short_by=100)
    handle = store.get(digest_of(data), source.opener())  # type: ignore[arg-type]
    assert isinstance(handle, Fill)
    whole = asyncio.ensure_future(collect(handle))
    try:
        assert await asyncio.to_thread(source.holding.wait, 10)  # the shared stream is at `held`
        with pytest.raises(FillFailed):  # a Range read (no hold-back), before `held`: it reads alone
            _ = [chunk async for chunk in handle.read(2 * PIECE, 6 * PIECE, hold_back=False)]
        source.release.set()
        assert await whole == data  # the shared stream is unharmed
    finally:
        source.release.set()
        store.close()


async def test_a_thread_still_receiving_when_its_fill_ends_writes_only_into_that_fills_file(tmp_path: Path) -> None:
    """A fill that ends (here: cancelled, its only reader left) closes its descriptor while a
    receiving thread may still be inside a read. The thread writes through a descriptor of its
    own: its last bytes go into the fill's own (removed) temp file, never through a closed number
    that another file may have by then (the old code wrote through the fill's: EBADF at best)."""
    data = blob(64 * PIECE)
    threads = ThreadPoolExecutor(max_workers=8)
    store = range_store(tmp_path / "cache", complete_abandoned_fills=False, executor=threads)
    held = 8 * PIECE
    source = BytesRanges(data, max_parallel=1, parallel_min_size=1 << 30, read_size=PIECE, hold_at=held)
    handle = store.get(digest_of(data), source.opener())  # type: ignore[arg-type]
    assert isinstance(handle, Fill)
    try:
        assert await asyncio.to_thread(source.holding.wait, 10)  # the receiving thread sits in a read
        observer = os.open(handle.temp_path, os.O_RDONLY)  # the temp file, even once it is removed
        try:
            # The only reader takes its bytes (a Range read: no hold-back) and leaves.
            assert b"".join([chunk async for chunk in handle.read(0, PIECE, hold_back=False)]) == data[:PIECE]
            with contextlib.suppress(FillFailed):
                await handle.wait()
            assert handle._fd is None and not handle.temp_path.exists()  # closed and removed
            source.release.set()
            await asyncio.to_thread(threads.shutdown, True)  # the receiving thread has finished
            last_read = 1024  # range_store's chunk_size: what the thread had in hand when it stopped
            assert os.pread(observer, last_read, held) == data[held : held + last_read]
        finally:
            os.close(observer)
    finally:
        source.release.set()
        store.close()


async def test_a_failed_hasher_fails_the_fill_instead_of_hanging_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receivers hand their buffers to the hasher thread; when it fails (here it cannot open
    the temp file: EMFILE; an EIO on a read-back alike) it must stop them, or they wait for their
    buffers for ever and so does every reader."""
    data = blob(64 * PIECE)
    opens_for_reading = Fill._open_temp_for_reading

    def out_of_descriptors_on_the_hasher(self: Fill) -> int:
        if threading.current_thread().name.startswith("hash"):
            raise OSError(errno.EMFILE, "Too many open files")
        return opens_for_reading(self)

    monkeypatch.setattr(Fill, "_open_temp_for_reading", out_of_descriptors_on_the_hasher)
    store = range_store(tmp_path)
    source = BytesRanges(data, max_parallel=1, parallel_min_size=1 << 30, read_size=1024)
    handle = store.get(digest_of(data), source.opener())  # type: ignore[arg-type]
    assert isinstance(handle, Fill)
    try:
        with pytest.raises(FillFailed):
            await asyncio.wait_for(collect(handle), 10)  # a TimeoutError here is the hang
        with pytest.raises(FillFailed):
            await asyncio.wait_for(handle.wait(), 10)
        assert store.stat(digest_of(data)) is None
    finally:
        handle._stop()  # lets a stuck receiving thread go if the fill did hang
        store.close()

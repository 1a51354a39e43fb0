"""First-read verification, quarantine, the scrubber, the directory lock and durable refs, on a
real store in tmp_path (the e2e tests in tests/registry_mirror/test_e2e_integrity.py drive the
same through a mirror process)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from nvme_cache import BlobCorrupt, BlobStore, CachedBlob, CacheInUse, FileSegment
from nvme_cache.scrub import Scrubber
from tests.nvme_cache.sources import BytesSource, digest_of
from tests.nvme_cache.test_store import MiB, blob, fill_from, make_store


def _flip(store: BlobStore, data: bytes, at: int = 1000) -> None:
    with open(store.layout.blob_path(digest_of(data)), "r+b") as handle:
        handle.seek(at)
        handle.write(b"\xff\xfe")


async def _body(handle: CachedBlob, start: int = 0, end: int | None = None) -> tuple[bytes, bool]:
    """(bytes, whether any came as a zero-copy segment)."""
    parts: list[bytes] = []
    zero_copy = False
    async for item in handle.segments(start, end):
        if isinstance(item, FileSegment):
            zero_copy = True
            parts.append(os.pread(item.fd, item.count, item.offset))
        else:
            parts.append(item)
    return b"".join(parts), zero_copy


async def test_committed_blob_is_sent_zero_copy_and_a_restart_verifies_first(tmp_path: Path) -> None:
    data = blob(5 * MiB + 3)
    store = make_store(tmp_path)
    await fill_from(store, data)
    hit = store.get(digest_of(data))
    assert isinstance(hit, CachedBlob) and hit.verified
    assert await _body(hit) == (data, True)
    store.close()

    store = make_store(tmp_path)
    first = store.get(digest_of(data))
    assert isinstance(first, CachedBlob) and not first.verified
    assert await _body(first) == (data, False)  # copied and hashed
    again = store.get(digest_of(data))
    assert isinstance(again, CachedBlob) and again.verified
    store.close()


@pytest.mark.parametrize("restart", [False, True])
async def test_flipped_bytes_abort_before_the_last_chunk(tmp_path: Path, restart: bool) -> None:
    data = blob(9 * MiB + 5)
    store = make_store(tmp_path)
    await fill_from(store, data)
    _flip(store, data, at=len(data) // 2)
    if restart:
        store.close()
        store = make_store(tmp_path)
    handle = store.get(digest_of(data))
    assert isinstance(handle, CachedBlob) and not handle.verified  # the write changed its identity
    received = 0
    with pytest.raises(BlobCorrupt):
        async for item in handle.segments():
            assert isinstance(item, bytes)
            received += len(item)
    assert received < len(data)
    assert store.stat(digest_of(data)) is None
    assert os.listdir(store.layout.quarantine) == [f"sha256-{digest_of(data).hex}"]
    source = BytesSource(data)
    assert not isinstance(store.get(digest_of(data), source), CachedBlob)  # the next request refetches
    store.close()


async def test_range_of_an_unverified_blob_verifies_the_whole_first(tmp_path: Path) -> None:
    data = blob(3 * MiB)
    store = make_store(tmp_path)
    await fill_from(store, data)
    _flip(store, data, at=2 * MiB)
    handle = store.get(digest_of(data))
    assert isinstance(handle, CachedBlob)
    with pytest.raises(BlobCorrupt):
        await _body(handle, 0, 100)  # those 100 bytes are intact; the blob is not
    assert store.stat(digest_of(data)) is None
    store.close()


@pytest.mark.parametrize("change", ["truncate", "grow"])
async def test_resized_file_is_quarantined_on_the_hit_and_at_restart(tmp_path: Path, change: str) -> None:
    one, two = blob(MiB, 1), blob(MiB, 2)
    store = make_store(tmp_path)
    for data in (one, two):
        await fill_from(store, data)
    for data in (one, two):
        path = store.layout.blob_path(digest_of(data))
        if change == "truncate":
            os.truncate(path, len(data) - 1)
        else:
            with open(path, "ab") as handle:
                handle.write(b"!")
    assert store.get(digest_of(one), BytesSource(one)).__class__ is not CachedBlob
    store.close()
    store = make_store(tmp_path)  # the restart scan catches the other one
    assert store.stat(digest_of(two)) is None
    assert f"sha256-{digest_of(two).hex}" in os.listdir(store.layout.quarantine)
    store.close()


async def test_scrubber_pass_quarantines_rot(tmp_path: Path) -> None:
    good, bad = blob(2 * MiB, 3), blob(2 * MiB, 4)
    store = make_store(tmp_path)
    for data in (good, bad):
        await fill_from(store, data)
    _flip(store, bad)
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # an injected clock: the pacing is exact, and instant
        waits.append(seconds)
        now[0] += seconds

    scrubber = Scrubber(store, rate=1 * MiB, clock=lambda: now[0], sleep=sleep)
    await scrubber.run_pass()
    assert scrubber.corrupt_found == 1 and scrubber.pass_done == scrubber.pass_bytes == 4 * MiB
    assert store.stat(digest_of(bad)) is None and store.stat(digest_of(good)) is not None
    assert sum(waits) == pytest.approx(4.0)  # 4 MiB at 1 MiB/s
    store.close()


async def test_scrubber_leaves_blobs_it_knows_were_just_hashed_for_a_later_pass(tmp_path: Path) -> None:
    """A commit hashes the blob whole: the scrubber re-hashes it only once min_age has passed;
    a blob it did not see committed (found on disk at start) is scrubbed in its first pass."""
    old, new = blob(1 * MiB, 5), blob(1 * MiB, 6)
    store = make_store(tmp_path)
    await fill_from(store, old)  # before the scrubber started: as if found on disk
    now = [1000.0]
    scrubber = Scrubber(store, rate=64 * MiB, min_age=3600.0, clock=lambda: now[0], sleep=lambda _: None)

    async def passes(count: int) -> None:
        while scrubber.passes < count:
            await asyncio.sleep(0.01)

    scrubber.start()
    try:
        await asyncio.wait_for(passes(2), 10)
        assert scrubber.hashed_bytes == 1 * MiB  # the blob it had not seen hashed, then nothing due
        before = scrubber.passes
        await fill_from(store, new)  # committed while the scrubber runs: it wakes, nothing is due
        await asyncio.wait_for(passes(before + 1), 10)
        assert scrubber.hashed_bytes == 1 * MiB
        _flip(store, new)
        now[0] += 3600.0
        await scrubber.run_pass()  # an hour on: both are due again
        assert scrubber.hashed_bytes == 3 * MiB and scrubber.corrupt_found == 1
        assert store.stat(digest_of(new)) is None and store.stat(digest_of(old)) is not None
    finally:
        await scrubber.stop()
        store.close()


async def test_one_process_per_cache_dir_and_refs_survive(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.refs.put("tag", "up/repo:v1", b"sha256:abc", confirmed=123.0, variant="application/x")
    with pytest.raises(CacheInUse, match=f"pid {os.getpid()}"):
        make_store(tmp_path)
    store.close()
    reopened = make_store(tmp_path)
    [ref] = reopened.refs.variants("tag", "up/repo:v1")
    assert (ref.variant, ref.value, ref.confirmed) == ("application/x", b"sha256:abc", 123.0)
    reopened.close()

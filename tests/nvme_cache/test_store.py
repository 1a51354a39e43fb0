from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import pytest

from nvme_cache import BlobNotFound, BlobStore, CachedBlob, Fill, FillFailed, VerificationFailed
from tests.nvme_cache.sources import BytesSource, digest_of

MiB = 1024 * 1024


def make_store(root: Path, **kwargs: object) -> BlobStore:
    params: dict[str, object] = {"max_size": 256 * MiB, "chunk_size": 64 * 1024}
    params.update(kwargs)
    store = BlobStore(root, **params)  # type: ignore[arg-type]
    store.open()
    return store


async def collect(handle: CachedBlob | Fill, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in handle.read(start, end)])


async def fill_from(store: BlobStore, data: bytes) -> None:
    """Fill and wait for the commit (a reader may finish before the fsync and rename)."""
    handle = store.get(digest_of(data), BytesSource(data))
    assert await collect(handle) == data
    if isinstance(handle, Fill):
        await handle.wait()


def blob(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def temp_files(store: BlobStore) -> list[str]:
    return os.listdir(store.layout.tmp)


async def test_fill_then_hit_and_survives_restart(tmp_path: Path) -> None:
    data = blob(3 * MiB + 17)
    digest = digest_of(data)
    store = make_store(tmp_path)
    source = BytesSource(data)
    fill = store.get(digest, source, media_type="application/octet-stream")
    assert isinstance(fill, Fill)
    assert await collect(fill) == data
    await fill.wait()
    hit = store.get(digest, source)
    assert isinstance(hit, CachedBlob)
    assert await collect(hit) == data
    assert source.opens == 1
    store.close()

    reopened = make_store(tmp_path)
    info = reopened.stat(digest)
    assert info is not None and info.size == len(data) and info.media_type == "application/octet-stream"
    assert await collect(reopened.get(digest)) == data
    reopened.close()


async def test_concurrent_readers_share_one_fill(tmp_path: Path) -> None:
    data = blob(2 * MiB)
    digest = digest_of(data)
    store = make_store(tmp_path)
    source = BytesSource(data, chunk=32 * 1024)
    handles = [store.get(digest, source) for _ in range(12)]
    bodies = await asyncio.gather(*(collect(h) for h in handles))
    assert all(body == data for body in bodies)
    assert source.opens == 1
    store.close()


async def test_mismatch_fails_every_reader_and_caches_nothing(tmp_path: Path) -> None:
    data = blob(MiB)
    digest = digest_of(data)
    store = make_store(tmp_path)
    source = BytesSource(data, corrupt_last_byte=True)
    handles = [store.get(digest, source) for _ in range(4)]
    received: list[int] = [0] * 4

    async def read(i: int, handle: CachedBlob | Fill) -> None:
        async for chunk in handle.read():
            received[i] += len(chunk)

    results = await asyncio.gather(*(read(i, h) for i, h in enumerate(handles)), return_exceptions=True)
    assert all(isinstance(r, FillFailed) for r in results)
    # The last chunk is held until verification, so no reader saw a complete-looking body.
    assert all(n < len(data) for n in received)
    assert store.stat(digest) is None
    assert temp_files(store) == []
    with pytest.raises(BlobNotFound):
        store.get(digest)
    # The next request fetches again and succeeds.
    good = BytesSource(data)
    assert await collect(store.get(digest, good)) == data
    assert good.opens == 1
    store.close()


async def test_source_breaking_mid_body_fails_readers(tmp_path: Path) -> None:
    data = blob(MiB)
    store = make_store(tmp_path)
    fill = store.get(digest_of(data), BytesSource(data, break_after=512 * 1024))
    with pytest.raises(FillFailed):
        await collect(fill)
    assert store.stat(digest_of(data)) is None
    assert temp_files(store) == []
    store.close()


async def test_wrong_size_from_source_is_refused(tmp_path: Path) -> None:
    data = blob(100_000)
    store = make_store(tmp_path)
    fill = store.get(digest_of(data), BytesSource(data), expected_size=len(data) - 1)
    with pytest.raises(FillFailed):
        await collect(fill)
    with pytest.raises(VerificationFailed):
        await fill.wait()
    store.close()


async def test_unknown_size_source(tmp_path: Path) -> None:
    data = blob(MiB + 5)
    store = make_store(tmp_path)
    fill = store.get(digest_of(data), BytesSource(data, report_size=False))
    assert await collect(fill) == data
    await fill.wait()
    assert store.stat(digest_of(data)).size == len(data)  # type: ignore[union-attr]
    store.close()


async def test_abandoned_fill_still_completes(tmp_path: Path) -> None:
    data = blob(2 * MiB)
    digest = digest_of(data)
    store = make_store(tmp_path)
    source = BytesSource(data, delay=0.001)
    fill = store.get(digest, source)
    assert isinstance(fill, Fill)
    reader = fill.read()
    await reader.__anext__()
    await reader.aclose()  # the client went away
    await fill.wait()
    assert store.stat(digest) is not None
    store.close()


async def test_abandoned_fill_is_cancelled_when_configured(tmp_path: Path) -> None:
    data = blob(2 * MiB)
    digest = digest_of(data)
    store = make_store(tmp_path, complete_abandoned_fills=False)
    source = BytesSource(data, delay=0.001)
    fill = store.get(digest, source)
    assert isinstance(fill, Fill)
    reader = fill.read()
    await reader.__anext__()
    await reader.aclose()
    with pytest.raises(FillFailed):
        await fill.wait()
    assert store.stat(digest) is None
    assert temp_files(store) == []
    store.close()


async def test_ranges_on_complete_and_inflight_blobs(tmp_path: Path) -> None:
    data = blob(MiB)
    digest = digest_of(data)
    store = make_store(tmp_path)
    source = BytesSource(data, chunk=10_000, delay=0.0005)
    fill = store.get(digest, source)
    inflight_parts = await asyncio.gather(
        collect(fill, 0, 10), collect(fill, 500_000, None), collect(fill, 123, 99_999)
    )
    assert inflight_parts == [data[:10], data[500_000:], data[123:99_999]]
    await fill.wait()
    cached = store.get(digest)
    assert await collect(cached, 1000, 2000) == data[1000:2000]
    assert await collect(cached, len(data) - 1, None) == data[-1:]
    store.close()


async def test_restart_cleans_temp_files_and_reconciles(tmp_path: Path) -> None:
    data = blob(200_000)
    digest = digest_of(data)
    store = make_store(tmp_path)
    await fill_from(store, data)
    store.close()
    # A crash leaves a temp file, a blob file the index never heard of, and a row without a file.
    (tmp_path / "tmp" / "deadbeef.partial").write_bytes(b"partial")
    orphan = blob(1000, seed=7)
    orphan_digest = digest_of(orphan)
    orphan_path = tmp_path / "blobs" / "sha256" / orphan_digest.hex[:2] / orphan_digest.hex
    orphan_path.parent.mkdir(parents=True, exist_ok=True)
    orphan_path.write_bytes(orphan)
    os.unlink(tmp_path / "blobs" / "sha256" / digest.hex[:2] / digest.hex)

    store = make_store(tmp_path)
    assert temp_files(store) == []
    assert store.stat(digest) is None
    assert store.stat(orphan_digest) is not None
    assert store.bytes_used == len(orphan)
    store.close()


async def test_verify_all_quarantines_corrupt_files(tmp_path: Path) -> None:
    good, bad = blob(300_000, 1), blob(300_000, 2)
    store = make_store(tmp_path)
    for data in (good, bad):
        await fill_from(store, data)
    path = store.layout.blob_path(digest_of(bad))
    with open(path, "r+b") as handle:
        handle.seek(1000)
        handle.write(b"X")
    report = await store.verify_all()
    assert report.checked == 2
    assert report.corrupt == (str(digest_of(bad)),)
    assert store.stat(digest_of(bad)) is None and store.stat(digest_of(good)) is not None
    assert os.listdir(store.layout.quarantine) == [f"sha256-{digest_of(bad).hex}"]
    store.close()


async def test_put_bytes_verifies(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    doc = b'{"schemaVersion":2}'
    await store.put_bytes(digest_of(doc), doc, "application/vnd.oci.image.manifest.v1+json")
    assert await store.read_bytes(digest_of(doc), 1024) == doc
    with pytest.raises(VerificationFailed):
        await store.put_bytes(digest_of(doc), doc + b" ", None)
    store.close()

"""A reader of a verified cached blob is cut off when the scrubber (or any verification) finds
the blob corrupt and quarantines it mid-read: never a complete body of rotten bytes. The store's
copying path (hub routes, /v2 where sendfile is unavailable), its zero-copy segments, and a real
mirror process with its background scrubber and a /v2 GET over sendfile."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nvme_cache import BlobStore, CachedBlob, FileSegment, FillFailed
from tests.nvme_cache.sources import digest_of
from tests.nvme_cache.test_store import MiB, blob, fill_from, make_store


def _rot(path: Path, at: int) -> None:
    """Bit rot: bytes change, the inode's times do not."""
    st = os.stat(path)
    with open(path, "r+b") as handle:
        handle.seek(at)
        handle.write(b"\xde\xad\xbe\xef")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


async def _verified_cached_blob(tmp_path: Path) -> tuple[BlobStore, bytes, CachedBlob]:
    """A 9 MiB blob filled, committed and so verified in this process."""
    data = blob(9 * MiB + 5)
    store = make_store(tmp_path)
    await fill_from(store, data)
    handle = store.get(digest_of(data))
    assert isinstance(handle, CachedBlob) and handle.verified
    return store, data, handle


async def test_copying_reader_of_verified_blob_is_cut_off_by_quarantine(tmp_path: Path) -> None:
    store, data, handle = await _verified_cached_blob(tmp_path)
    digest = handle.digest
    received: list[bytes] = []
    reader = handle.read()
    received.append(await anext(reader))  # first 4 MiB sent
    _rot(store.layout.blob_path(digest), 6 * MiB)
    assert not await store.check_file(digest, stage="scrub")  # the scrubber finds it and quarantines
    assert store.stat(digest) is None
    with pytest.raises(FillFailed):  # the body must be aborted, not completed with wrong bytes
        async for chunk in reader:
            received.append(chunk)
    assert b"".join(received) != data or len(b"".join(received)) < len(data)
    store.close()


async def test_zero_copy_segments_of_verified_blob_stop_after_quarantine(tmp_path: Path, monkeypatch) -> None:
    """The /v2 path: segments() of a verified blob. With segments smaller than the blob, the
    next segment after a quarantine must not be handed out."""
    import nvme_cache.store as store_module

    monkeypatch.setattr(store_module, "_SEGMENT_MAX", 4 * MiB)
    store, _, handle = await _verified_cached_blob(tmp_path)
    digest = handle.digest
    segments = handle.segments()
    first = await anext(segments)
    assert isinstance(first, FileSegment)
    _rot(store.layout.blob_path(digest), 6 * MiB)
    assert not await store.check_file(digest, stage="scrub")
    with pytest.raises(FillFailed):
        async for _ in segments:
            pass
    store.close()


# --- the same through a real mirror process (zero-copy /v2 GET, the background scrubber) ----------

import hashlib  # noqa: E402
import time  # noqa: E402

import httpx  # noqa: E402

from tests.registry_mirror.test_e2e_support import ns, start_mirror, streamed_digest, wait_cached  # noqa: E402
from tests.support.images import push_blob, write_random_file  # noqa: E402


@pytest.mark.integration
def test_v2_reader_of_verified_blob_is_cut_off_when_the_scrubber_quarantines_it(
    mirror_process, origin_factory, tmp_path: Path
) -> None:
    size = 96 * MiB  # far more than the loopback socket buffers hold
    origin = origin_factory()
    digest = push_blob(origin, "test/rot", write_random_file(tmp_path / "rot.bin", size, seed="rot"))
    mirror = start_mirror(
        mirror_process, origin, tmp_path, extra_toml='[cache]\nscrub_rate = "256MiB"\nscrub_min_age = "0s"'
    )
    url = f"{mirror.url}/v2/test/rot/blobs/{digest}"
    with httpx.stream("GET", url, params=ns(origin), timeout=60) as response:
        assert streamed_digest(response) == (digest, size)  # filled, committed, verified
    path = wait_cached(mirror.cache_dir, digest)  # committed: the next GET is a cache hit, not a joined fill
    deadline = time.monotonic() + 10
    while time.time() - path.stat().st_mtime < 0.5:  # marked verified (its mtime set back a second)
        assert time.monotonic() < deadline
        time.sleep(0.01)
    quarantined = mirror.cache_dir / "quarantine" / digest.replace(":", "-")
    hasher = hashlib.sha256()
    received = 0
    with pytest.raises(httpx.TransportError):  # cut off, never a complete 200 of rotten bytes
        with httpx.stream("GET", url, params=ns(origin), timeout=60) as response:
            assert response.status_code == 200
            chunks = response.iter_bytes(1 << 20)
            first = next(chunks)
            hasher.update(first)
            received += len(first)
            _rot(path, size - 8 * MiB)  # rot near the end, which this reader has not been sent yet
            deadline = time.monotonic() + 30
            while not quarantined.exists():
                assert time.monotonic() < deadline, "the scrubber never found the rot"
                time.sleep(0.05)
            for chunk in chunks:
                hasher.update(chunk)
                received += len(chunk)
    assert received < size or f"sha256:{hasher.hexdigest()}" == digest

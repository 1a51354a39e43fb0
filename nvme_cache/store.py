"""The blob store: verified blobs on disk, the fills that add them, the readers that serve them."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nvme_cache import metrics
from nvme_cache.errors import BlobNotFound, BlobVanished, RangeNotSatisfiable, VerificationFailed
from nvme_cache.evict import EvictionPolicy, plan_eviction
from nvme_cache.fileio import write_at
from nvme_cache.index import BlobIndex
from nvme_cache.inflight import PIECE_SIZE, Fill, FillSource
from nvme_cache.integrity import BlobCorrupt, FileIdentity, file_matches, hashed_chunks
from nvme_cache.layout import Layout
from nvme_cache.lock import CacheLock
from nvme_cache.refs import Refs
from nvme_cache.sendfile import FileSegment, ShortRead, segment_chunks
from nvme_cache.threads import worker_pool
from oci.digest import Digest

log = logging.getLogger("nvme_cache")

_FLUSH_INTERVAL = 5.0
_RACY_NS = 1_000_000_000  # a verified file's mtime is kept at least this far in the past
_SEGMENT_MAX = 256 * 1024 * 1024  # one zero-copy send of a cached blob at most

BlobListener = Callable[[str, int], None]  # (digest, size)
Pace = Callable[[int], None]  # called with each chunk's size while hashing (the scrubber's rate)


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int
    media_type: str | None


@dataclass(frozen=True)
class FillProgress:
    """A fill in progress as others may read it (p2p announcements, the admin API): a snapshot,
    so nothing outside the store holds or steers the fill itself."""

    digest: str
    size: int | None  # None until the source said
    written: int  # bytes present from offset 0 without a gap
    source: str  # the label its bytes are counted under: "origin" | "peer" | "delta"
    shareable: bool  # its bytes are stored as they arrive (False: a pass-through stream)


@dataclass(frozen=True)
class VerifyReport:
    checked: int
    corrupt: tuple[str, ...]


class CachedBlob:
    """A committed blob; `read` streams it with one read ahead of the send.

    Not yet `verified` since this process started (or written since): a whole read hashes while
    it sends and holds back its last chunk until the digest matches; a range waits for one
    verification of the whole file. A mismatch quarantines the file and aborts the body.
    """

    source = "cache"

    def __init__(self, store: BlobStore, digest: Digest, info: BlobInfo, *, verified: bool = False) -> None:
        self._store = store
        self.digest = digest
        self.size: int | None = info.size
        self.media_type = info.media_type
        self.verified = verified

    async def wait_started(self) -> None:
        return None

    async def read(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if self.verified:
            source: AsyncIterator[bytes | FileSegment] = self._store._read_file(self.digest, start, end)
        else:
            source = self._store._first_read(self.digest, start, end, zero_copy=False)
        async for chunk in source:
            assert isinstance(chunk, bytes)
            yield chunk

    def segments(
        self, start: int = 0, end: int | None = None, *, hold_back: bool = True, live: bool = False
    ) -> AsyncIterator[FileSegment | bytes]:
        """The range as file segments for a zero-copy send once verified; bytes while verifying.
        (`live` is for a fill's readers: a cached blob has nothing to read along with.)"""
        if self.verified:
            return self._store._file_segments(self.digest, start, end)
        return self._store._first_read(self.digest, start, end, zero_copy=True)


class BlobStore:
    def __init__(
        self,
        root: Path,
        *,
        max_size: int,
        high_watermark: float = 0.90,
        low_watermark: float = 0.80,
        min_free_bytes: int = 0,
        complete_abandoned_fills: bool = True,
        direct_writes: bool = False,
        chunk_size: int = 1024 * 1024,
        executor: Executor | None = None,
        piece_size: int = PIECE_SIZE,
    ) -> None:
        self.layout = Layout(root)
        self._lock = CacheLock(root)
        self.policy = EvictionPolicy(max_size, high_watermark, low_watermark, min_free_bytes)
        self.chunk_size = chunk_size
        self.piece_size = piece_size  # the unit a range fill claims and a reader demands
        # Cache hits read bigger chunks: measured 1.28x with four clients and 1.13x with one
        # for 4 MiB over 1 MiB (fewer loop turns and syscalls per byte; see docs/benchmarks.md).
        self.read_chunk_size = max(chunk_size, 4 * 1024 * 1024)
        self._complete_abandoned = complete_abandoned_fills
        self._direct_writes = direct_writes  # fills nobody reads go around the page cache (nvme_cache/fileio.py)
        self._executor = executor or worker_pool("nvme-cache", 32)
        self._index: BlobIndex | None = None
        self._fills: dict[str, Fill] = {}
        self._readers: Counter[str] = Counter()
        self._reserved = 0
        self._flush_task: asyncio.Task[None] | None = None
        # digest -> the file identity it was last hashed at, in this process (nothing survives a restart)
        self._verified: dict[str, FileIdentity] = {}
        self._verifying: dict[str, asyncio.Task[bool]] = {}
        self.on_commit: list[BlobListener] = []
        self.on_evict: list[BlobListener] = []
        self.ready = False

    # -- lifecycle -----------------------------------------------------------------------------
    def open(self, holder: Mapping[str, Any] | None = None) -> None:
        """Take the directory's lock (CacheInUse if another process holds it; `holder` details go
        into it), load and validate the index against the directory (no blob is read), drop temp
        files, and quarantine files whose size differs from their index row."""
        started = time.monotonic()
        self.layout.create()
        self._lock.acquire(holder)
        removed = self.layout.remove_temp_files()
        self._index = BlobIndex(self.layout.index_path)
        self._index.load()
        on_disk = self.layout.scan()
        resized = self._quarantine_resized(on_disk)
        added, dropped = self._index.reconcile(on_disk)
        metrics.register_usage_source(self._usage)
        self.ready = True
        log.info(
            "cache open: %d blobs, %d bytes, %d temp files removed, %d found on disk, %d stale rows, "
            "%d quarantined for a wrong size, %.2fs",
            len(self._index),
            self._index.bytes_used,
            removed,
            added,
            dropped,
            resized,
            time.monotonic() - started,
        )

    def _quarantine_resized(self, on_disk: dict[str, int]) -> int:
        """A file whose size differs from its index row was truncated or grown behind our back."""
        resized = [d for d, size in on_disk.items() if (e := self.index.get(d)) is not None and e.size != size]
        for digest in resized:
            indexed = self.index.get(digest)
            size = on_disk.pop(digest)
            self._quarantine(
                digest, "restart_scan", f"file has {size} bytes, the index says {indexed.size if indexed else '?'}"
            )
        return len(resized)

    def start_background(self) -> None:
        self._flush_task = asyncio.get_running_loop().create_task(self._flush_loop())

    async def aclose(self) -> None:
        if self._flush_task is not None:
            self._flush_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flush_task
        for fill in list(self._fills.values()):
            with contextlib.suppress(Exception):
                await fill.wait()
        self.close()

    def close(self) -> None:
        metrics.unregister_usage_source(self._usage)
        if self._index is not None:
            self._index.close()
            self._index = None
        self._lock.release()
        self.ready = False

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(_FLUSH_INTERVAL)
            self.index.flush()

    @property
    def index(self) -> BlobIndex:
        if self._index is None:
            raise RuntimeError("BlobStore.open() was not called")
        return self._index

    @property
    def refs(self) -> Refs:
        """Durable names (tags, revisions, listings) kept beside the blob index."""
        return self.index.refs

    @property
    def bytes_used(self) -> int:
        return self.index.bytes_used

    def _usage(self) -> tuple[int, int]:
        return (self._index.bytes_used if self._index else 0, self.policy.max_size)

    # -- lookups -------------------------------------------------------------------------------
    def stat(self, digest: Digest) -> BlobInfo | None:
        entry = self.index.get(str(digest))
        if entry is None:
            return None
        return BlobInfo(str(digest), entry.size, entry.media_type)

    def _on_disk(self, key: str, info: BlobInfo) -> FileIdentity | None:
        """The cached file's identity, or None (dropped or quarantined) when it is gone or resized."""
        try:
            identity = FileIdentity.of(os.stat(self.layout.blob_path(Digest.parse(key))))
        except FileNotFoundError:
            self.index.remove([key])  # removed behind our back: fetch it again
            self._verified.pop(key, None)
            return None
        if identity.size != info.size:
            self._quarantine(key, "size", f"file has {identity.size} bytes, the index says {info.size}")
            return None
        return identity

    def inflight(self, digest: Digest) -> Fill | None:
        return self._fills.get(str(digest))

    @property
    def fills_in_flight(self) -> int:
        return len(self._fills)

    def progress(self, digest: Digest) -> FillProgress | None:
        """How far the fill of `digest` is, or None when none is running."""
        fill = self._fills.get(str(digest))
        if fill is None:
            return None
        return FillProgress(str(digest), fill.size, fill.written, fill.source, fill.passthrough_from is None)

    def written_segments(self, digest: Digest, start: int, end: int) -> AsyncIterator[bytes | FileSegment] | None:
        """Bytes [start, end) of the fill of `digest` when all of them are written and stored (a
        peer's piece request), else None. No verification waits: a downloader writes verified
        pieces only, and a seed's bytes define them."""
        fill = self._fills.get(str(digest))
        if fill is None or fill.passthrough_from is not None or not fill.has(start, end):
            return None
        return fill.segments(start, end, hold_back=False)

    def lookup(self, digest: Digest) -> CachedBlob | Fill | None:
        """The cached blob or the fill already running for it; None on a miss (nothing counted)."""
        info = self.stat(digest)
        if info is not None:
            identity = self._on_disk(str(digest), info)
            if identity is not None:
                metrics.hits.add(1)
                return CachedBlob(self, digest, info, verified=self._verified.get(str(digest)) == identity)
        fill = self._fills.get(str(digest))
        if fill is not None:
            metrics.hits.add(1, {"inflight": "true"})
        return fill

    def get(
        self,
        digest: Digest,
        open_source: FillSource | None = None,
        *,
        expected_size: int | None = None,
        media_type: str | None = None,
        first_offset: int = 0,
    ) -> CachedBlob | Fill:
        """The cached blob, the fill already running for it, or a new fill from `open_source`.

        `first_offset`: where the first reader starts (a Range), fetched first by a range fill.
        Raises BlobNotFound when the blob is neither cached nor filling and no source is given.
        """
        found = self.lookup(digest)
        if found is not None:
            return found
        if open_source is None:
            raise BlobNotFound(str(digest))
        metrics.misses.add(1)
        return self._start_fill(digest, open_source, expected_size, media_type, first_offset)

    def _start_fill(
        self,
        digest: Digest,
        open_source: FillSource,
        expected_size: int | None,
        media_type: str | None,
        first_offset: int = 0,
    ) -> Fill:
        temp = self.layout.tmp / f"{digest.hex[:16]}.{uuid.uuid4().hex}"
        fill = Fill(
            digest,
            temp,
            self.layout.blob_path(digest),
            open_source,
            self,
            expected_size=expected_size,
            media_type=media_type,
            executor=self._executor,
            chunk_size=self.chunk_size,
            complete_abandoned=self._complete_abandoned,
            first_offset=first_offset,
            piece_size=self.piece_size,
            direct_writes=self._direct_writes,
        )
        self._fills[str(digest)] = fill
        fill.start()
        return fill

    async def put_bytes(self, digest: Digest, data: bytes, media_type: str | None = None) -> None:
        """Cache a small verified object (a manifest) in one step."""
        if hashlib.new(digest.algorithm, data).hexdigest() != digest.hex:
            metrics.verification_failures.add(1)
            raise VerificationFailed(f"content does not match {digest}")
        if self.stat(digest) is not None:
            if media_type:
                self.index.set_media_type(str(digest), media_type)
            return
        temp = self.layout.tmp / f"{digest.hex[:16]}.{uuid.uuid4().hex}"
        final = self.layout.blob_path(digest)
        await asyncio.get_running_loop().run_in_executor(self._executor, _write_file, temp, final, data)
        self.index.add(str(digest), len(data), media_type)
        self._mark_verified(str(digest))
        metrics.bytes_written.add(len(data), {"source": "origin"})
        self._after_commit(str(digest), len(data))

    async def read_bytes(self, digest: Digest, limit: int) -> bytes:
        """A small cached object whole (manifests); BlobNotFound if missing or larger than limit."""
        info = self.stat(digest)
        if info is None or info.size > limit:
            raise BlobNotFound(str(digest))
        parts = [chunk async for chunk in self._read_file(digest, 0, None)]
        data = b"".join(parts)
        if hashlib.new(digest.algorithm, data).hexdigest() != digest.hex:  # small: always checked
            self._quarantine(str(digest), "first_read", "cached bytes do not match the digest")
            raise BlobNotFound(str(digest))
        return data

    # -- reading committed blobs -------------------------------------------------------------------
    async def _read_file(self, digest: Digest, start: int, end: int | None) -> AsyncIterator[bytes]:
        """The copying read, in read_chunk_size reads (a file cut short just ends early)."""
        with contextlib.suppress(ShortRead):
            async for segment in self._file_segments(digest, start, end):
                async for data in segment_chunks(segment, self.read_chunk_size, self._executor):
                    yield data

    async def _file_segments(self, digest: Digest, start: int, end: int | None) -> AsyncIterator[FileSegment]:
        key = str(digest)
        fd = self._open_reader(key, digest)
        entry = self.index.get(key)

        def valid() -> bool:  # still the row this reader opened: not quarantined or dropped since
            return self.index.get(key) is entry

        try:
            size = self._checked_size(key, fd)
            stop = size if end is None else min(end, size)
            if start > size or (start == size and size > 0):
                raise RangeNotSatisfiable(start, size)
            offset = start
            while offset < stop:
                count = min(_SEGMENT_MAX, stop - offset)
                segment = FileSegment(fd, offset, count, valid=valid)
                segment.check()
                metrics.bytes_read.add(count)
                yield segment
                offset += count
            if offset > start and not valid():
                raise BlobVanished(f"{digest} was quarantined while it was sent")
        finally:
            self._close_reader(key, fd)

    async def _first_read(
        self, digest: Digest, start: int, end: int | None, *, zero_copy: bool
    ) -> AsyncIterator[FileSegment | bytes]:
        """A read of a blob not yet verified in this process (see CachedBlob)."""
        key = str(digest)
        entry = self.index.get(key)
        size = entry.size if entry is not None else 0
        if start > 0 or (end is not None and end < size):
            # A reader from now on: the whole-file hash can take long, and eviction must not
            # remove the blob under it (the 206's headers are already out).
            hold = self._open_reader(key, digest)
            try:
                if not await self.verify(digest):
                    raise BlobCorrupt(f"{digest}: cached bytes do not match the digest (quarantined)")
                ranged = self._file_segments(digest, start, end) if zero_copy else self._read_file(digest, start, end)
                async for item in ranged:
                    yield item
            finally:
                self._close_reader(key, hold)
            return
        fd = self._open_reader(key, digest)
        try:
            size = self._checked_size(key, fd)
            identity = FileIdentity.of(os.fstat(fd))
            try:
                async for data in hashed_chunks(fd, digest, size, self.read_chunk_size, self._executor):
                    metrics.bytes_read.add(len(data))
                    yield data
            except BlobCorrupt as exc:
                self._quarantine_if_same(key, identity, "first_read", str(exc))
                raise
            if self.index.get(key) is not None:
                self._trust(key, self.layout.blob_path(digest), identity)
                metrics.blobs_verified.add(1, {"stage": "first_read"})
        finally:
            self._close_reader(key, fd)

    def _open_reader(self, key: str, digest: Digest) -> int:
        try:
            fd = os.open(self.layout.blob_path(digest), os.O_RDONLY)
        except FileNotFoundError:
            # Removed or quarantined behind this reader's back: its body must not look complete.
            self.index.remove([key])
            self._verified.pop(key, None)
            raise BlobVanished(key) from None
        self._readers[key] += 1
        self.index.touch(key)
        return fd

    def _close_reader(self, key: str, fd: int) -> None:
        self._readers[key] -= 1
        if self._readers[key] <= 0:
            del self._readers[key]
        os.close(fd)

    def _checked_size(self, key: str, fd: int) -> int:
        st = os.fstat(fd)
        entry = self.index.get(key)
        if entry is not None and entry.size != st.st_size:
            self._quarantine_if_same(
                key, FileIdentity.of(st), "size", f"file has {st.st_size} bytes, the index says {entry.size}"
            )
            raise BlobCorrupt(f"{key}: cached file has {st.st_size} bytes, expected {entry.size}")
        return st.st_size

    # -- fill hooks --------------------------------------------------------------------------------
    def reserve(self, size: int) -> bool:
        """Make room for a fill of `size` bytes; False means it can never fit (serve it uncached)."""
        if size > self.policy.max_size * self.policy.high_watermark:
            return False
        over_cap = self.index.bytes_used + self._reserved + size > self.policy.high_bytes
        free = shutil.disk_usage(self.layout.root).free
        low_on_disk = free - size < self.policy.min_free_bytes
        if over_cap or low_on_disk:
            if not self._could_fit(size, free):
                metrics.uncacheable.add(1, {"reason": "no_room"})
                return False  # evicting everything would not make room: keep the cache as it is
            target = self.policy.low_bytes - size - self._reserved if over_cap else self.index.bytes_used
            self._evict(target, free_needed=size)
        if self.index.bytes_used + self._reserved + size > self.policy.max_size:
            return False  # everything left is pinned or in use
        self._reserved += size
        return True

    def release(self, size: int) -> None:
        self._reserved -= size

    def make_room(self, size: int) -> None:
        """The disk said ENOSPC: evict for `size` bytes, unless even an empty cache would not do."""
        if self._could_fit(size, shutil.disk_usage(self.layout.root).free):
            self._evict(self.index.bytes_used - size, free_needed=size)

    def _could_fit(self, size: int, free: int) -> bool:
        """Whether evicting every blob that may go would leave room for `size` more bytes."""
        protected = self._protected()
        evictable = sum(entry.size for digest, entry in self.index.lru() if digest not in protected)
        fits_disk = free + evictable - size >= self.policy.min_free_bytes
        fits_cap = self.index.bytes_used - evictable + self._reserved + size <= self.policy.max_size
        return fits_disk and fits_cap

    def commit(self, fill: Fill) -> None:
        assert fill.size is not None
        self.index.add(str(fill.digest), fill.size, fill.media_type)
        self._mark_verified(str(fill.digest))  # its digest was just checked
        self._after_commit(str(fill.digest), fill.size)

    def _mark_verified(self, key: str) -> None:
        self._trust(key, self.layout.blob_path(Digest.parse(key)), None)

    def _trust(self, key: str, path: Path, checked: FileIdentity | None) -> None:
        """Remember the file as verified at its identity now (`checked`: the identity it was
        hashed at, None when its bytes were just written and verified).

        File times are coarse (one kernel tick): a write in the same tick as the check would
        leave mtime unchanged. So, as git does with racily clean entries, a recent mtime is set
        back by a second first; any later write then moves it forward and is seen."""
        try:
            st = os.stat(path)
            if checked is not None and FileIdentity.of(st) != checked:
                return  # changed since it was hashed: leave it unverified
            now = time.time_ns()
            if st.st_mtime_ns > now - _RACY_NS:
                os.utime(path, ns=(st.st_atime_ns, now - _RACY_NS))
                st = os.stat(path)
        except FileNotFoundError:
            return
        self._verified[key] = FileIdentity.of(st)

    def fill_done(self, fill: Fill) -> None:
        if self._fills.get(str(fill.digest)) is fill:
            del self._fills[str(fill.digest)]

    def _after_commit(self, digest: str, size: int) -> None:
        for listener in self.on_commit:
            listener(digest, size)
        if self.index.bytes_used > self.policy.high_bytes:
            self._evict(self.policy.low_bytes)

    # -- eviction, pins, verification ----------------------------------------------------------
    def _protected(self) -> set[str]:
        return self.index.pinned() | set(self._readers) | set(self._fills)

    def _evict(self, target_used: int, free_needed: int = 0) -> int:
        free = shutil.disk_usage(self.layout.root).free
        victims = plan_eviction(
            self.index.lru(),
            self.index.bytes_used,
            max(target_used, 0),
            self._protected(),
            free_bytes=free - free_needed,
            min_free_bytes=self.policy.min_free_bytes,
        )
        for digest in victims:
            self._remove(digest, reason="lru")
        return len(victims)

    def evict(self, digest: Digest) -> bool:
        """Admin eviction of one blob; refuses pinned or busy blobs."""
        key = str(digest)
        if key not in self.index or key in self._protected():
            return False
        self._remove(key, reason="admin")
        return True

    def _remove(self, digest: str, *, reason: str) -> None:
        entry = self.index.get(digest)
        size = entry.size if entry else 0
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.layout.blob_path(Digest.parse(digest)))
        self.index.remove([digest])
        self._verified.pop(digest, None)
        metrics.evictions.add(1, {"reason": reason})
        metrics.evicted_bytes.add(size)
        for listener in self.on_evict:
            listener(digest, size)

    def pin(self, name: str, digests: Iterable[Digest | str]) -> None:
        self.index.pin(name, [str(d) for d in digests])

    def unpin(self, name: str) -> None:
        self.index.unpin(name)

    def pins(self) -> dict[str, set[str]]:
        return self.index.pins()

    # -- verification and quarantine ----------------------------------------------------------
    def is_verified(self, digest: Digest) -> bool:
        return str(digest) in self._verified

    async def verify(self, digest: Digest, *, stage: str = "first_read") -> bool:
        """Hash the cached file once (concurrent callers share the check); False means it was
        corrupt (now quarantined) or is gone."""
        key = str(digest)
        task = self._verifying.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._verify_file(digest, stage, None))
            self._verifying[key] = task
            task.add_done_callback(lambda _: self._verifying.pop(key, None))
        return await asyncio.shield(task)

    async def check_file(self, digest: Digest, *, stage: str, pace: Pace | None = None) -> bool:
        """One verification of its own (the scrubber's, paced: never shared with a client waiting
        for `verify`); False means corrupt (now quarantined) or gone."""
        return await self._verify_file(digest, stage, pace)

    async def _verify_file(self, digest: Digest, stage: str, pace: Pace | None) -> bool:
        key = str(digest)
        entry = self.index.get(key)
        if entry is None:
            return False
        path = self.layout.blob_path(digest)
        loop = asyncio.get_running_loop()
        ok, identity = await loop.run_in_executor(
            self._executor, file_matches, path, digest, entry.size, self.read_chunk_size, pace
        )
        if ok:
            if identity is not None and self.index.get(key) is entry:
                self._trust(key, path, identity)
            metrics.blobs_verified.add(1, {"stage": stage})
            return True
        if self.index.get(key) is entry:  # not replaced by a new fill meanwhile
            self._quarantine(key, stage, "cached bytes do not match the digest or size")
        return False

    async def verify_all(self) -> VerifyReport:
        """Rehash every blob; move corrupt files to quarantine/ and drop them from the index."""
        corrupt: list[str] = []
        checked = 0
        for digest_str, _ in self.index.lru():
            if digest_str in self._fills or self.index.get(digest_str) is None:
                continue
            checked += 1
            if not await self.verify(Digest.parse(digest_str), stage="verify"):
                corrupt.append(digest_str)
        return VerifyReport(checked, tuple(corrupt))

    def _quarantine_if_same(self, key: str, identity: FileIdentity, stage: str, reason: str) -> None:
        """Quarantine `key` unless its path now holds another file (a refetch committed meanwhile)."""
        try:
            current = FileIdentity.of(os.stat(self.layout.blob_path(Digest.parse(key))))
        except FileNotFoundError:
            current = None
        if current is None or current.inode == identity.inode:
            self._quarantine(key, stage, reason)

    def _quarantine(self, key: str, stage: str, reason: str) -> None:
        """Move a corrupt file aside (kept for inspection), forget it, tell the listeners (p2p
        withdraws it); the next request fetches it again."""
        digest = Digest.parse(key)
        entry = self.index.get(key)
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.layout.blob_path(digest), self.layout.quarantine / f"{digest.algorithm}-{digest.hex}")
        self.index.remove([key])
        self._verified.pop(key, None)
        metrics.corrupt_blobs.add(1, {"stage": stage})
        log.error(
            "cached blob %s is corrupt (%s: %s): moved to %s; the next request fetches it again",
            key,
            stage,
            reason,
            self.layout.quarantine,
        )
        for listener in self.on_evict:
            listener(key, entry.size if entry else 0)


def _write_file(temp: Path, final: Path, data: bytes) -> None:
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            write_at(fd, data, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(temp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise

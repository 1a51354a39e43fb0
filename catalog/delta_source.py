"""A fill source that rebuilds a blob from a cached base plus a catalog delta, else uses the origin.

`DeltaSources.wrap(digest, inner, size)` has the shape of the front end's source wrappers: for a
blob the active catalog lists as a delta target whose base is cached, the fill first downloads the
delta from the catalog's repository, rebuilds the blob into a temp file (catalog.delta.apply_delta
checks the target digest and size) and streams it with `source = "delta"`; the store verifies the
digest again. Any failure before the first byte falls back to `inner`, the full blob.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from catalog.delta import CHUNK, apply_delta
from catalog.fetch import pull_delta
from catalog.metrics import delta_bytes_saved, delta_rebuilds
from catalog.models import Catalog, Delta
from nvme_cache import BlobStore, Digest, FillSource, SourceStream

log = logging.getLogger("catalog.delta_source")

# (registry, repository, delta digest, output path) -> bytes written; verified against the digest.
DeltaFetcher = Callable[[str, str, str, Path], Awaitable[int]]


@dataclass(frozen=True)
class DeltaTable:
    """The deltas of the active catalog and where its artifact (holding the delta blobs) lives."""

    registry: str
    repository: str
    by_target: dict[str, tuple[Delta, int]]  # target digest -> (delta, target size)

    @classmethod
    def of(cls, catalog: Catalog, registry: str, repository: str) -> DeltaTable:
        sizes = {b.digest: b.size for b in catalog.blobs}
        table = {d.to_digest: (d, sizes[d.to_digest]) for d in catalog.deltas if d.to_digest in sizes}
        return cls(registry, repository, table)


class RebuiltStream:
    source = "delta"

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size: int | None = size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        with await loop.run_in_executor(None, self.path.open, "rb") as f:
            while chunk := await loop.run_in_executor(None, f.read, CHUNK):
                yield chunk


class DeltaSources:
    def __init__(
        self,
        store: BlobStore,
        work_dir: Path,
        *,
        insecure: bool = False,
        fetch_delta: DeltaFetcher | None = None,
        max_parallel_rebuilds: int = 1,
    ) -> None:
        self._store = store
        self._work_dir = Path(work_dir)
        self._insecure = insecure
        self._fetch_delta = fetch_delta or self._pull_delta
        # A rebuild holds the base plus an output window in memory (~2x the blob): bound them.
        self._rebuilds = asyncio.Semaphore(max_parallel_rebuilds)
        self._tables: dict[str, DeltaTable] = {}  # per catalog name
        self._targets: frozenset[str] = frozenset()  # every table's targets: one lookup per fill
        self.bytes_saved = 0
        self.rebuilt = 0
        self.fallbacks = 0

    def prepare(self) -> None:
        """Remove what an interrupted rebuild left behind."""
        shutil.rmtree(self._work_dir, ignore_errors=True)
        self._work_dir.mkdir(parents=True, exist_ok=True)

    def use(self, name: str, table: DeltaTable | None) -> None:
        """Set (or clear, with None) the deltas of catalog `name`."""
        if table is None:
            self._tables.pop(name, None)
        else:
            self._tables[name] = table
        self._targets = frozenset(d for each in self._tables.values() for d in each.by_target)

    def plan(self, digest: str) -> tuple[DeltaTable, Delta, int] | None:
        """The delta that would rebuild `digest` now: listed, and its base is cached."""
        for table in self._tables.values():
            entry = table.by_target.get(digest)
            if entry is not None and self._store.stat(Digest.parse(entry[0].from_digest)) is not None:
                return table, entry[0], entry[1]
        return None

    def wrap(self, digest: Digest, inner: FillSource, size: int | None) -> FillSource:
        if str(digest) not in self._targets:
            return inner

        @contextlib.asynccontextmanager
        async def open_delta_or_inner(offset: int = 0) -> AsyncIterator[SourceStream]:
            # A resumed fill (p2p passes an offset) wants the rest of the bytes: only `inner` has them.
            rebuilt = None if offset else await self._try_rebuild(str(digest))
            if rebuilt is None:
                async with inner(offset) as stream:
                    yield stream
                return
            path, target_size = rebuilt
            try:
                yield RebuiltStream(path, target_size)
            finally:
                path.unlink(missing_ok=True)

        return open_delta_or_inner

    async def _try_rebuild(self, digest: str) -> tuple[Path, int] | None:
        planned = self.plan(digest)
        if planned is None:
            return None
        table, delta, target_size = planned
        async with self._rebuilds:
            try:
                path = await self._rebuild(table, delta, target_size)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.fallbacks += 1
                log.warning(
                    "delta rebuild of %s from %s failed, fetching the full blob: %s", digest, delta.from_digest, exc
                )
                return None
        saved = max(0, target_size - delta.delta.size)
        self.rebuilt += 1
        self.bytes_saved += saved
        delta_bytes_saved.add(saved)
        log.info(
            "rebuilt %s (%d bytes) from %s with a %d byte delta",
            digest,
            target_size,
            delta.from_digest,
            delta.delta.size,
        )
        return path, target_size

    async def _rebuild(self, table: DeltaTable, delta: Delta, target_size: int) -> Path:
        stem = f"{delta.to_digest.replace(':', '-')}.{os.urandom(4).hex()}"
        delta_path, out_path = self._work_dir / f"{stem}.delta", self._work_dir / f"{stem}.blob"
        try:
            try:
                await self._fetch_delta(table.registry, table.repository, delta.delta.digest, delta_path)
            except Exception:
                delta_rebuilds.add(1, {"result": "delta_fetch_failed"})
                raise
            base = self._store.layout.blob_path(Digest.parse(delta.from_digest))
            await asyncio.to_thread(
                apply_delta, base, delta_path, out_path, delta.to_digest, target_size, durable=False
            )
        except BaseException:
            out_path.unlink(missing_ok=True)
            raise
        finally:
            delta_path.unlink(missing_ok=True)
        return out_path

    async def _pull_delta(self, registry: str, repository: str, digest: str, out: Path) -> int:
        return await asyncio.to_thread(pull_delta, registry, repository, digest, out, self._insecure)

"""The blob service: what every route that serves or fetches a blob calls (`/v2`, `/hf`,
`/modelscope`, admin prefetch, catalog prefetch).

    hit:  store.lookup(digest) -> the cached file, or the fill already running (nothing else built)
    miss: the fill's source chain, built now: peers -> catalog delta -> origin (each falls back
          to the next); one verified fill that every reader of the digest joins

A route sees one interface, like distribution's proxy BlobStore; the `/v2` GET reads top to
bottom in registry_mirror.api._blobs.get_blob, like Spegel's handleBlob.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from nvme_cache import BlobNotFound, BlobStore, CachedBlob, Digest, Fill, FillFailed, FillSource
from registry_mirror.api._errors import ErrorCode, OCIError
from registry_mirror.api._paths import ByteRange
from registry_mirror.api._responses import BodyDone
from registry_mirror.api._translations import fill_error
from registry_mirror.policy import UpstreamLimits
from registry_mirror.telemetry import _metrics as metrics
from registry_mirror.upstream import Target, UpstreamError, UpstreamNotFound, Upstreams, origin_source

# Puts another source in front of a fill's source (p2p peers, catalog deltas): (digest, the
# source it falls back to, the blob's size when known) -> the source the fill reads.
SourceLayer = Callable[[Digest, FillSource, int | None], FillSource]
OriginFor = Callable[[], FillSource]  # a blob's origin source, called on a miss only


@dataclass(frozen=True)
class OpenBlob:
    """A blob being served: from the cache, a fill joined, or a fill this request started."""

    handle: CachedBlob | Fill
    started_here: bool  # this request started the fill

    @property
    def source(self) -> str:
        """The label its bytes are counted under: "cache" for a hit or a joined fill, else where
        the fill reads (known once it started)."""
        return self.handle.source if self.started_here and isinstance(self.handle, Fill) else "cache"

    @property
    def size(self) -> int | None:
        return self.handle.size


@dataclass(frozen=True)
class Framing:
    """Status, length headers and byte offsets of a blob response for an optional Range."""

    status: int
    headers: dict[str, str]  # Content-Length (when known), Content-Range for a 206
    start: int
    end: int | None  # exclusive; None: to the end


def range_framing(size: int | None, byte_range: ByteRange | None) -> Framing:
    """A Range whose end is unknown yet (a chunked upstream that ignores Range) gets the whole
    blob, a 200: `bytes N-*/*` is no valid Content-Range (RFC 9110 14.4)."""
    whole = Framing(200, {} if size is None else {"Content-Length": str(size)}, 0, None)
    if byte_range is None or byte_range.end is None:
        return whole
    headers = {"Content-Length": str(byte_range.length), "Content-Range": byte_range.content_range(size)}
    return Framing(206, headers, byte_range.start, byte_range.end + 1)


@dataclass(frozen=True)
class BlobService:
    store: BlobStore
    upstreams: Upstreams
    layers: tuple[SourceLayer, ...] = ()  # tried in this order before the origin: peers, deltas
    limits: UpstreamLimits | None = None  # per-upstream caps on origin fetches (policy)

    def resolve(self, registry: str | None, repository: str) -> Target:
        return self.upstreams.resolve(registry, repository)

    def origin(self, target: Target, digest: Digest) -> FillSource:
        return origin_source(target.client, target.repository, digest, target.name, self.limits)

    def source_chain(self, digest: Digest, origin: FillSource, size: int | None) -> FillSource:
        """The source a fill of `digest` reads: the layers in order, `origin` last."""
        source = origin
        for layer in reversed(self.layers):
            source = layer(digest, source, size)
        return source

    def fill_source(self, target: Target, digest: Digest, size: int | None) -> FillSource:
        """Peers, deltas, then `target`'s origin (catalog prefetch; `size` from the catalog)."""
        return self.source_chain(digest, self.origin(target, digest), size)

    async def open(self, target: Target, digest: Digest, *, first_offset: int = 0) -> OpenBlob:
        """A `/v2` blob: cached, joined, or a new fill from `target` (`first_offset`: where the
        first reader starts, fetched first by a range fill)."""
        found = self.store.lookup(digest)
        if found is not None:
            return OpenBlob(found, started_here=False)
        size = await self._size_for_layers(target, digest)
        return self.open_from(digest, lambda: self.origin(target, digest), size_hint=size, first_offset=first_offset)

    def open_from(
        self,
        digest: Digest,
        origin: OriginFor | None,
        *,
        size_hint: int | None = None,
        expected_size: int | None = None,
        first_offset: int = 0,
    ) -> OpenBlob:
        """Cached, joined, or a new fill through the layers and `origin` (built only now). `size_hint`
        is what the layers are told; `expected_size` the store checks. Raises BlobNotFound on a
        miss without an origin."""
        found = self.store.lookup(digest)
        if found is not None:
            return OpenBlob(found, started_here=False)
        if origin is None:
            raise BlobNotFound(str(digest))
        source = self.source_chain(digest, origin(), size_hint)
        fill = self.store.get(digest, source, expected_size=expected_size, first_offset=first_offset)
        return OpenBlob(fill, started_here=True)

    async def started(self, blob: OpenBlob, upstream: str) -> None:
        """Waits for the first byte; a fill that failed before it is the OCI error its source gave."""
        try:
            await blob.handle.wait_started()
        except FillFailed as exc:
            metrics.failed_downloads.add(1, {"reason": "upstream", "upstream": upstream})
            raise fill_error(exc, ErrorCode.BLOB_UNKNOWN) from None

    async def _size_for_layers(self, target: Target, digest: Digest) -> int | None:
        """The origin's size of `digest` (a HEAD) when a new fill may go through peers or deltas: a
        peer's announcement is never trusted for it (one lying holder made every pull of a digest
        fail with a short body). None without layers, or when the origin gave no size (the swarm
        then leaves the bytes to the origin)."""
        if not self.layers:
            return None
        metrics.upstream_requests.add(1, {"kind": "blob_size", "upstream": target.name})
        try:
            return await target.client.head_blob(target.repository, str(digest))
        except UpstreamNotFound:
            raise OCIError(ErrorCode.BLOB_UNKNOWN, f"{target.repository} on {target.name} has no {digest}") from None
        except UpstreamError:
            return None  # the origin will be asked again for the bytes, and its error reported then


def record_body(source: str, upstream: str, started: float, kind: str | None = None) -> BodyDone:
    """Counts a blob body's bytes by source, its latency and an aborted transfer."""
    byte_labels = {"source": source, "upstream": upstream} | ({"kind": kind} if kind else {})

    def record(sent: int, first_byte: float | None, completed: bool) -> None:
        metrics.blob_bytes.add(sent, byte_labels)
        if first_byte is not None:
            metrics.time_to_first_byte.record(first_byte, {"source": source})
        if completed:
            metrics.blob_duration.record(time.perf_counter() - started, {"source": source})
        else:
            metrics.failed_downloads.add(1, {"reason": "aborted", "upstream": upstream})

    return record

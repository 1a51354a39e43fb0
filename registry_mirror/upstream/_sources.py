"""Fill sources: where the bytes of a missing blob come from (the origin now; peers and deltas plug
in here as further sources tried in order)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from nvme_cache import Digest, FillSource, SourceStream
from registry_mirror.telemetry import _metrics as metrics
from registry_mirror.telemetry import upstream_span
from registry_mirror.upstream._client import BlobStream, UpstreamClient, UpstreamUnavailable
from registry_mirror.upstream._ranges import OriginRanges

if TYPE_CHECKING:
    from registry_mirror.policy import UpstreamLimits


class OriginStream:
    source = "origin"

    def __init__(self, stream: BlobStream, limits: UpstreamLimits | None = None, upstream_name: str = "") -> None:
        self._stream = stream
        self._limits = limits
        self._upstream_name = upstream_name
        self.size = stream.size

    def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._stream.iter_chunks()
        if self._limits is not None and self._limits.bandwidth is not None:
            return self._limits.throttle(self._upstream_name, chunks)
        return chunks


def origin_source(
    client: UpstreamClient,
    repository: str,
    digest: Digest,
    upstream_name: str,
    limits: UpstreamLimits | None = None,
) -> FillSource:
    """`limits`: the per-upstream concurrency and bandwidth caps (registry_mirror.policy)."""

    @contextlib.asynccontextmanager
    async def open_origin(offset: int = 0) -> AsyncIterator[OriginStream]:
        """The blob from `offset` on (p2p resumes a download from the origin with a Range)."""
        async with contextlib.AsyncExitStack() as stack:
            if limits is not None and limits.concurrency is not None:
                await stack.enter_async_context(limits.slot(upstream_name))
            metrics.upstream_requests.add(1, {"kind": "blob", "upstream": upstream_name})
            stack.enter_context(upstream_span("upstream blob GET", upstream=upstream_name, digest=str(digest)))
            stream = await stack.enter_async_context(
                client.open_blob(repository, str(digest), range_start=offset or None)
            )
            expected = 206 if offset else 200
            if stream.status != expected:
                raise UpstreamUnavailable(
                    stream.status, None, f"blob GET answered {stream.status}, expected {expected}"
                )
            yield OriginStream(stream, limits, upstream_name)

    # A fill that sees `ranges` fetches by ranges on worker threads and never calls open_origin;
    # wrappers (p2p, delta) that stream the origin themselves use open_origin. Through a via mirror
    # the fill streams open_origin (which tries the via mirror first): the via mirror does the
    # ranged fetch from the origin for the whole tier.
    if client.settings.via:
        return open_origin
    slot = None
    throttle = None
    if limits is not None:
        if limits.concurrency is not None:
            slot = functools.partial(limits.slot, upstream_name)
        throttle = limits.blocking_throttle(upstream_name)
    ranges = OriginRanges(
        client, client.range_pool(), repository, str(digest), upstream_name, slot=slot, throttle=throttle
    )
    return RangedOrigin(open_origin, ranges)


class RangedOrigin:
    """An origin source that is also a RangeSource (`ranges`): a fill fetches it by ranges, a
    wrapper that streams the origin itself calls it."""

    def __init__(self, open_stream: FillSource, ranges: OriginRanges) -> None:
        self._open_stream = open_stream
        self.ranges = ranges

    def __call__(self, offset: int = 0) -> AbstractAsyncContextManager[SourceStream]:
        return self._open_stream(offset)

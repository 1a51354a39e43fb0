"""Fill sources: where the bytes of a missing blob come from (the origin now; peers and deltas plug
in here as further sources tried in order)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from nvme_cache import Digest, FillSource
from registry_mirror import metrics
from registry_mirror.upstream import BlobStream, UpstreamClient, UpstreamUnavailable


class OriginStream:
    source = "origin"

    def __init__(self, stream: BlobStream) -> None:
        self._stream = stream
        self.size = stream.size

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.iter_chunks()


def origin_source(client: UpstreamClient, repository: str, digest: Digest, upstream_name: str) -> FillSource:
    @contextlib.asynccontextmanager
    async def open_origin() -> AsyncIterator[OriginStream]:
        metrics.upstream_requests.add(1, {"kind": "blob", "upstream": upstream_name})
        async with client.open_blob(repository, str(digest)) as stream:
            if stream.status != 200:
                raise UpstreamUnavailable(stream.status, None, f"blob GET answered {stream.status}, expected 200")
            yield OriginStream(stream)

    return open_origin

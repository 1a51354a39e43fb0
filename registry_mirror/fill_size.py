"""The size of a blob whose fill may come from peers, from its origin: a peer's announcement is
never trusted for it (one lying holder made every pull of a digest fail with a short body)."""

from __future__ import annotations

from nvme_cache import Digest
from registry_mirror import metrics
from registry_mirror.errors import ErrorCode, OCIError
from registry_mirror.state import Mirror
from registry_mirror.upstream import UpstreamError, UpstreamNotFound
from registry_mirror.upstreams import Target


async def size_for_peers(mirror: Mirror, target: Target, digest: Digest) -> int | None:
    """The origin's size of `digest` (a HEAD) when a new fill would go through peers or deltas;
    None when no other source is configured, the blob is cached or being filled, or the origin
    gave no size (the swarm then leaves the bytes to the origin)."""
    if not mirror.source_wrappers or mirror.store.stat(digest) is not None or mirror.store.inflight(digest):
        return None
    metrics.upstream_requests.add(1, {"kind": "blob_size", "upstream": target.name})
    try:
        return await target.client.head_blob(target.repository, str(digest))
    except UpstreamNotFound:
        raise OCIError(ErrorCode.BLOB_UNKNOWN, f"{target.repository} on {target.name} has no {digest}") from None
    except UpstreamError:
        return None  # the origin will be asked again for the bytes, and its error reported then

"""GET and HEAD of a blob: cache hit -> stream from disk; miss -> join or start the one fill."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from nvme_cache import CachedBlob, Digest, FillFailed
from registry_mirror import metrics
from registry_mirror.errors import ErrorCode
from registry_mirror.fill_size import size_for_peers
from registry_mirror.paths import ByteRange, DistributionRequest, parse_range
from registry_mirror.responses import BlobResponse, BodyDone
from registry_mirror.sources import origin_source
from registry_mirror.state import Mirror
from registry_mirror.translations import fill_error
from registry_mirror.upstreams import Target

OCTET_STREAM = "application/octet-stream"


def blob_headers(digest: Digest, size: int | None) -> dict[str, str]:
    headers = {
        "Content-Type": OCTET_STREAM,
        "Docker-Content-Digest": str(digest),
        "ETag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": "max-age=31536000",
    }
    if size is not None:
        headers["Content-Length"] = str(size)
    return headers


async def get_blob(
    mirror: Mirror,
    request: DistributionRequest,
    headers: Mapping[str, str],
    *,
    head: bool,
    started: float,
    notes: dict[str, Any] | None = None,
) -> BlobResponse:
    """`notes`: the request's access-log fields."""
    target = mirror.upstreams.resolve(request.registry, request.repository)
    digest = request.digest
    assert digest is not None
    if mirror.signatures is not None and (refused := mirror.signatures.check_blob(target, str(digest))) is not None:
        if notes is not None:
            notes.update(signature=refused.result, signature_policy=refused.policy)
        raise mirror.signatures.refusal(refused)
    joined = mirror.store.inflight(digest) is not None
    # Cached or in flight for another pair, or fetched through peers: the upstream must confirm.
    plain_miss = not joined and mirror.store.stat(digest) is None and (head or not mirror.source_wrappers)
    await mirror.provenance.admit(target, digest, "blob", origin_answers=plain_miss)
    if head:
        return await _head_blob(mirror, target, digest, started)
    origin = origin_source(target.client, target.repository, digest, target.name, mirror.upstream_limits)
    size = await size_for_peers(mirror, target, digest)  # peers are never asked for a size
    # Where this reader starts: a cold Range's pieces are the first ones a range fill fetches.
    wanted = parse_range(headers.get("range"), None)
    handle = mirror.store.get(
        digest, mirror.fill_source(digest, origin, size), first_offset=wanted.start if wanted else 0
    )
    started_here = not joined and not isinstance(handle, CachedBlob)
    if started_here:
        mirror.provenance.begin(target, digest)  # same-pair joiners need no confirmation
    fetched = False
    try:
        await handle.wait_started()
        fetched = True
    except FillFailed as exc:
        metrics.failed_downloads.add(1, {"reason": "upstream", "upstream": target.name})
        raise fill_error(exc, ErrorCode.BLOB_UNKNOWN) from None
    finally:
        if started_here:  # fetched for this pair, which its origin allowed (or confirmed)
            mirror.provenance.end(target, digest, fetched=fetched)
    source = "cache" if isinstance(handle, CachedBlob) or joined else handle.source
    byte_range = parse_range(headers.get("range"), handle.size)
    status, response_headers, start, end = _framing(digest, handle.size, byte_range)
    # A full GET never completes unverified; a Range may finish on the source's bytes for it.
    body = handle.segments(start, end, hold_back=byte_range is None)
    return BlobResponse(
        status,
        response_headers,
        body,
        started=started,
        source=source,
        on_done=body_recorder(source, target.name, started),
    )


def _framing(
    digest: Digest, size: int | None, byte_range: ByteRange | None
) -> tuple[int, dict[str, str], int, int | None]:
    if byte_range is None:
        return 200, blob_headers(digest, size), 0, None
    if byte_range.end is None:
        # Size not known yet (a chunked upstream): an open range, length unknown.
        headers = blob_headers(digest, None)
        headers["Content-Range"] = f"bytes {byte_range.start}-*/*"
        return 206, headers, byte_range.start, None
    headers = blob_headers(digest, byte_range.length)
    headers["Content-Range"] = byte_range.content_range(size)
    return 206, headers, byte_range.start, byte_range.end + 1


async def _head_blob(mirror: Mirror, target: Target, digest: Digest, started: float) -> BlobResponse:
    info = mirror.store.stat(digest)
    if info is not None:
        size: int | None = info.size
    elif (fill := mirror.store.inflight(digest)) is not None:
        try:
            await fill.wait_started()
        except FillFailed as exc:
            raise fill_error(exc) from None
        size = fill.size
    else:
        metrics.upstream_requests.add(1, {"kind": "blob_head", "upstream": target.name})
        size = await target.client.head_blob(target.repository, str(digest))
    return BlobResponse(200, blob_headers(digest, size), None, started=started)


def body_recorder(source: str, upstream: str, started: float, kind: str | None = None) -> BodyDone:
    """Counts a blob body's bytes by source, its latency and an aborted transfer (also for /hf)."""
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

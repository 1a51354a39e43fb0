"""GET and HEAD of a `/v2` blob: the policy checks this API adds (signatures, provenance), then the
blob service (registry_mirror.api._blob_service): cache hit -> stream from disk; miss -> join or start
the one fill."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nvme_cache import Digest, FillFailed
from registry_mirror.api._blob_service import range_framing, record_body
from registry_mirror.api._paths import DistributionRequest, parse_range
from registry_mirror.api._responses import BlobResponse
from registry_mirror.api._state import Mirror
from registry_mirror.api._translations import fill_error
from registry_mirror.telemetry import _metrics as metrics
from registry_mirror.upstream import Target

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
    blobs = mirror.blobs
    target = blobs.resolve(request.registry, request.repository)
    digest = request.digest
    assert digest is not None
    if mirror.signatures is not None and (refused := mirror.signatures.check_blob(target, str(digest))) is not None:
        if notes is not None:
            notes.update(signature=refused.result, signature_policy=refused.policy)
        raise mirror.signatures.refusal(refused)
    joined = mirror.store.inflight(digest) is not None
    # Cached or in flight for another pair, or fetched through peers: the upstream must confirm.
    plain_miss = not joined and mirror.store.stat(digest) is None and (head or not blobs.layers)
    await mirror.provenance.admit(target, digest, "blob", origin_answers=plain_miss)
    if head:
        return await _head_blob(mirror, target, digest, started)
    # Where this reader starts: a cold Range's pieces are the first ones a range fill fetches.
    wanted = parse_range(headers.get("range"), None)
    blob = await blobs.open(target, digest, first_offset=wanted.start if wanted else 0)
    if blob.started_here:
        mirror.provenance.begin(target, digest)  # same-pair joiners need no confirmation
    fetched = False
    try:
        await blobs.started(blob, target.name)
        fetched = True
    finally:
        if blob.started_here:  # fetched for this pair, which its origin allowed (or confirmed)
            mirror.provenance.end(target, digest, fetched=fetched)
    byte_range = parse_range(headers.get("range"), blob.size)
    framing = range_framing(blob.size, byte_range)
    # A full GET never completes unverified, nor does a Range that asks for the whole blob
    # (`bytes=0-`, `bytes=-<size>`): any other Range may finish on the source's bytes for it.
    whole = framing.start == 0 and (framing.end is None or framing.end == blob.size)
    body = blob.handle.segments(framing.start, framing.end, hold_back=framing.status == 200 or whole, live=True)
    source = blob.source
    return BlobResponse(
        framing.status,
        blob_headers(digest, None) | framing.headers,
        body,
        started=started,
        source=source,
        on_done=record_body(source, target.name, started),
    )


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

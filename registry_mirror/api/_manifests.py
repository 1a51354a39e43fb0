"""GET and HEAD of a manifest, by tag or by digest."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.responses import Response

from registry_mirror.api._errors import API_VERSION_HEADER
from registry_mirror.api._paths import DistributionRequest
from registry_mirror.api._state import Mirror


def accept_values(headers: Headers) -> list[str]:
    """Every Accept header line, split on commas: skopeo sends several lines and all must reach
    the upstream."""
    values: list[str] = []
    for line in headers.getlist("accept"):
        for item in line.split(","):
            item = item.strip()
            if item and item not in values:
                values.append(item)
    return values


async def get_manifest(
    mirror: Mirror, request: DistributionRequest, headers: Headers, *, head: bool, notes: dict[str, Any] | None = None
) -> Response:
    """`notes`: the request's access-log fields (the signature verdict goes there)."""
    target = mirror.upstreams.resolve(request.registry, request.repository)
    assert request.reference is not None
    cached = request.digest is not None and mirror.manifests.is_cached(request.digest)
    if request.digest is not None:
        # By digest from the cache: only for pairs that fetched it or whose upstream confirms.
        await mirror.provenance.admit(target, request.digest, "manifest", origin_answers=not cached)
    manifest = await mirror.manifests.get(target, request.reference, accept_values(headers))
    if not cached:
        mirror.provenance.record(target, manifest.digest)  # by tag or fetched: its upstream answered
    if mirror.signatures is not None:  # the one point every served manifest passes
        verdict = await mirror.signatures.check_manifest(target, manifest)
        if verdict is not None:
            if notes is not None:
                notes.update(signature=verdict.result, signature_policy=verdict.policy)
            if verdict.result == "refused":
                raise mirror.signatures.refusal(verdict)
    response_headers = {
        "Content-Type": manifest.media_type,
        "Content-Length": str(len(manifest.body)),
        "Docker-Content-Digest": str(manifest.digest),
        "ETag": f'"{manifest.digest}"',
        API_VERSION_HEADER[0]: API_VERSION_HEADER[1],
    }
    if head:
        return Response(status_code=200, headers=response_headers)
    return Response(content=manifest.body, status_code=200, headers=response_headers)

"""tags/list and the referrers API: answered by the upstream, passed through (never cached)."""

from __future__ import annotations

from starlette.datastructures import Headers, QueryParams
from starlette.responses import Response

from registry_mirror.api._errors import API_VERSION_HEADER, ErrorCode
from registry_mirror.api._manifests import accept_values
from registry_mirror.api._paths import DistributionRequest
from registry_mirror.api._state import Mirror
from registry_mirror.api._translations import upstream_error
from registry_mirror.telemetry import _metrics as metrics
from registry_mirror.upstream import UpstreamError

_PASSED_HEADERS = ("content-type", "link", "oci-filters-applied", "docker-content-digest")


async def list_tags(mirror: Mirror, request: DistributionRequest, query: QueryParams, headers: Headers) -> Response:
    params = {k: v for k, v in query.items() if k in ("n", "last")}
    return await _pass(mirror, request, "tags/list", params, headers, ErrorCode.NAME_UNKNOWN)


async def referrers(mirror: Mirror, request: DistributionRequest, query: QueryParams, headers: Headers) -> Response:
    params = {k: v for k, v in query.items() if k == "artifactType"}
    return await _pass(mirror, request, f"referrers/{request.digest}", params, headers, ErrorCode.MANIFEST_UNKNOWN)


async def _pass(
    mirror: Mirror,
    request: DistributionRequest,
    suffix: str,
    params: dict[str, str],
    headers: Headers,
    not_found: ErrorCode,
) -> Response:
    target = mirror.upstreams.resolve(request.registry, request.repository)
    metrics.upstream_requests.add(1, {"kind": suffix.split("/")[0], "upstream": target.name})
    try:
        answer = await target.client.get(target.repository, suffix, params, accept_values(headers))
    except UpstreamError as exc:
        raise upstream_error(exc, not_found) from None
    out = {k: v for k, v in answer.headers.items() if k.lower() in _PASSED_HEADERS}
    out[API_VERSION_HEADER[0]] = API_VERSION_HEADER[1]
    if "link" in {k.lower() for k in out}:
        # The upstream's next-page link points at the upstream; keep only its path and query.
        out = {k: (_relative_link(v) if k.lower() == "link" else v) for k, v in out.items()}
    return Response(content=answer.body, status_code=answer.status, headers=out)


def _relative_link(value: str) -> str:
    start, end = value.find("<"), value.find(">")
    if start == -1 or end == -1:
        return value
    url = value[start + 1 : end]
    if "://" in url:
        rest = url.split("://", 1)[1]
        url = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return f"<{url}>{value[end + 1 :]}"

"""Parse a distribution API request once into a value; map a Range header to the API's errors.

Every string that leaves this module in a `DistributionRequest` is checked against the OCI
distribution spec grammar (`oci.reference`, `oci.digest`), so repository components, tags and digests are safe path segments
(no `..`, no empty component, no `/` at either end, no `%`): nothing is ever percent-decoded.

Path forms (containerd docs/hosts.md, `override_path`; `remotes/docker/config/hosts.go`):
- `[host."http://m:5000"]`                               -> `/v2/<name>/manifests/<ref>`
- `[host."http://m:5000/prefix"]` (containerd appends /v2) -> `/prefix/v2/<name>/...`
- `[host."http://m:5000/prefix"]` + `override_path = true` -> `/prefix/<name>/...` (no /v2)
containerd adds `?ns=<registry host>` whenever the host is not the registry itself. podman, CRI-O,
buildah and skopeo send no `ns`: for them `route_by_path` reads the registry from the first path
component (`/v2/quay.io/org/app/...`, a registries.conf mirror `location = "node:5000/quay.io"`).
With `override_path=None` (auto) both forms are accepted and `/v2/` wins; a repository whose
first component is literally `v2` then needs `override_path=True` to be read correctly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final, Literal
from urllib.parse import parse_qs

import oci
from oci import MAX_NAME_LENGTH, Digest, InvalidDigest, UnsatisfiableRange
from oci import ByteRange as ByteRange  # re-exported: the blob routes frame responses with it
from registry_mirror.api._errors import ErrorCode, OCIError

Kind = Literal["base", "manifest", "blob", "tags", "referrers", "uploads"]

_UPLOAD_ID = re.compile(r"[A-Za-z0-9_.=-]{1,256}")
DOCKER_HUB_HOSTS: Final = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


@dataclass(frozen=True)
class DistributionRequest:
    kind: Kind
    repository: str  # "" for the base endpoint
    reference: str | Digest | None = None  # tag or digest (manifest); digest (blob, referrers)
    digest: Digest | None = None  # the reference when it is a digest
    registry: str | None = None  # `?ns=`, lowercased; None when containerd sent none
    upload_id: str | None = None  # only for kind "uploads"


def parse_scope(
    scope: Mapping[str, Any], path_prefix: str = "", *, override_path: bool | None = None
) -> DistributionRequest:
    """Parse an ASGI scope. Uses `raw_path` (undecoded), so `%2f` or `%2e%2e` stay visible and fail
    the grammar instead of turning into `/` or `..` as they do in the decoded `scope["path"]`."""
    raw: bytes | None = scope.get("raw_path")
    path = raw.decode("latin-1") if raw is not None else str(scope["path"])
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    ns_values = parse_qs(query).get("ns", [])
    if len(ns_values) > 1:
        raise OCIError(ErrorCode.NAME_INVALID, "more than one ns parameter")
    ns = ns_values[0] if ns_values else None
    return parse_distribution_path(path, ns, path_prefix=path_prefix, override_path=override_path)


def parse_distribution_path(
    path: str,
    query_ns: str | None,
    *,
    path_prefix: str = "",
    override_path: bool | None = None,
) -> DistributionRequest:
    registry = parse_registry_host(query_ns) if query_ns is not None else None
    endpoint = _strip_api_root(path, path_prefix, override_path)
    if endpoint is None:
        return DistributionRequest("base", "", registry=registry)
    return _parse_endpoint(endpoint, registry)


def _strip_api_root(path: str, path_prefix: str, override_path: bool | None) -> str | None:
    """The part after the API root (`<name>/<endpoint>`), or None for the base endpoint."""
    prefix = "/" + path_prefix.strip("/") if path_prefix.strip("/") else ""
    if not path.startswith("/") or (path != prefix and not path.startswith(prefix + "/")):
        raise _not_found(path)
    rest = path[len(prefix) :]  # "" or starts with "/"
    if override_path is not True and (rest in ("/v2", "/v2/") or rest.startswith("/v2/")):
        rest = rest[3:]
    elif override_path is False:
        raise _not_found(path)
    return rest[1:] if rest not in ("", "/") else None


def _parse_endpoint(endpoint: str, registry: str | None) -> DistributionRequest:
    segments = endpoint.split("/")
    if len(segments) >= 3 and segments[-2:] == ["tags", "list"]:
        return DistributionRequest("tags", _repository(segments[:-2]), registry=registry)
    if len(segments) >= 3 and segments[-2] == "blobs" and segments[-1] == "uploads":
        return DistributionRequest("uploads", _repository(segments[:-2]), registry=registry)
    if len(segments) >= 4 and segments[-3:-1] == ["blobs", "uploads"]:
        upload_id = segments[-1] or None
        if upload_id is not None and not _UPLOAD_ID.fullmatch(upload_id):
            raise OCIError(ErrorCode.BLOB_UPLOAD_UNKNOWN)
        repository = _repository(segments[:-3])
        return DistributionRequest("uploads", repository, registry=registry, upload_id=upload_id)
    if len(segments) >= 3 and segments[-2] in ("manifests", "blobs", "referrers") and segments[-1]:
        repository = _repository(segments[:-2])
        if segments[-2] == "manifests":
            reference = parse_reference(segments[-1])
            digest = reference if isinstance(reference, Digest) else None
            return DistributionRequest("manifest", repository, reference, digest, registry)
        digest = parse_digest(segments[-1])
        kind: Kind = "blob" if segments[-2] == "blobs" else "referrers"
        return DistributionRequest(kind, repository, digest, digest, registry)
    raise _not_found(endpoint)


def route_by_path(request: DistributionRequest, upstream_names: frozenset[str]) -> DistributionRequest:
    """With no `?ns=`, a repository whose first component names a configured upstream goes to that
    upstream with the rest as the repository: `quay.io/org/app` -> (quay.io, `org/app`). A
    repository of one component, or an `ns` sent, leave the request as it is."""
    if request.registry is not None or "/" not in request.repository:
        return request
    first, rest = request.repository.split("/", 1)
    if first not in upstream_names:
        return request
    return replace(request, registry=first, repository=rest)


def _repository(components: list[str]) -> str:
    return validate_repository("/".join(components))


def validate_repository(name: str) -> str:
    """`name` unchanged if it is a valid repository name, else OCIError NAME_INVALID."""
    if not name:
        raise OCIError(ErrorCode.NAME_INVALID, "empty repository name")
    if len(name) > MAX_NAME_LENGTH:
        raise OCIError(ErrorCode.NAME_INVALID, detail={"reason": "longer than 255 characters"})
    if not oci.is_repository(name):
        raise OCIError(ErrorCode.NAME_INVALID, detail={"name": name})
    return name


def parse_reference(text: str) -> str | Digest:
    """A manifest reference: a digest if it has a `:`, else a tag.

    A malformed digest is DIGEST_INVALID (400). A malformed tag is MANIFEST_UNKNOWN (404): no
    manifest can exist under it, and a 404 lets containerd move on to its next host.
    """
    if ":" in text:
        return parse_digest(text)
    if not oci.is_tag(text):
        raise OCIError(ErrorCode.MANIFEST_UNKNOWN, detail={"reason": "invalid tag"})
    return text


def parse_digest(text: str) -> Digest:
    try:
        return Digest.parse(text)
    except InvalidDigest as exc:
        raise OCIError(ErrorCode.DIGEST_INVALID, detail={"reason": str(exc)}) from exc


def parse_registry_host(ns: str) -> str:
    """The `?ns=` value, lowercased (host names are case-insensitive)."""
    if not oci.is_registry_host(ns):
        raise OCIError(ErrorCode.NAME_INVALID, detail={"reason": "invalid ns registry host"})
    return ns.lower()


def normalize_repository(ns: str | None, repo: str, library_prefix: bool) -> str:
    """Docker Hub's official images live under `library/`: `alpine` -> `library/alpine`.

    Applied to one-component names when the upstream says so (`library_prefix`) or when the
    registry is Docker Hub, which never serves one-component names.
    """
    validate_repository(repo)
    if "/" in repo or not (library_prefix or (ns or "").lower() in DOCKER_HUB_HOSTS):
        return repo
    return validate_repository("library/" + repo)


def _not_found(path: str) -> OCIError:
    return OCIError(ErrorCode.NOT_FOUND, detail={"path": path[:300]})


# --- Range: the grammar is oci.ranges; here an unsatisfiable one becomes the API's 416 ---------


def parse_range(header: str | None, size: int | None) -> ByteRange | None:
    """`oci.parse_range`, with an unsatisfiable range as OCIError RANGE_INVALID (416) carrying
    `Content-Range: bytes */<size>`."""
    try:
        return oci.parse_range(header, size)
    except UnsatisfiableRange as exc:
        raise range_not_satisfiable(exc.size) from None


def range_not_satisfiable(size: int) -> OCIError:
    return OCIError(ErrorCode.RANGE_INVALID, headers={"Content-Range": f"bytes */{size}"})

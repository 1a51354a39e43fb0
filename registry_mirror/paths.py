"""Parse a distribution API request once into a value; parse a Range header.

Every string that leaves this module in a `DistributionRequest` is checked against the OCI
distribution spec grammar, so repository components, tags and digests are safe path segments
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

from nvme_cache.digest import Digest, InvalidDigest
from registry_mirror.errors import ErrorCode, OCIError

Kind = Literal["base", "manifest", "blob", "tags", "referrers", "uploads"]

MAX_NAME_LENGTH: Final = 255
# distribution-spec v1.1 name grammar; `-+` (not `-*`) keeps the regex free of backtracking blowups.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_.=-]{1,256}")
# registry host as in `?ns=`: DNS name or IPv4 or [IPv6], optional port
_HOST_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REGISTRY_HOST = re.compile(
    rf"(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[[0-9a-fA-F:.]+\])(?::[0-9]{{1,5}})?"
)
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
    if not all(_COMPONENT.fullmatch(part) for part in name.split("/")):
        raise OCIError(ErrorCode.NAME_INVALID, detail={"name": name})
    return name


def parse_reference(text: str) -> str | Digest:
    """A manifest reference: a digest if it has a `:`, else a tag.

    A malformed digest is DIGEST_INVALID (400). A malformed tag is MANIFEST_UNKNOWN (404): no
    manifest can exist under it, and a 404 lets containerd move on to its next host.
    """
    if ":" in text:
        return parse_digest(text)
    if not _TAG.fullmatch(text):
        raise OCIError(ErrorCode.MANIFEST_UNKNOWN, detail={"reason": "invalid tag"})
    return text


def parse_digest(text: str) -> Digest:
    try:
        return Digest.parse(text)
    except InvalidDigest as exc:
        raise OCIError(ErrorCode.DIGEST_INVALID, detail={"reason": str(exc)}) from exc


def parse_registry_host(ns: str) -> str:
    """The `?ns=` value, lowercased (host names are case-insensitive)."""
    if len(ns) > 255 or not _REGISTRY_HOST.fullmatch(ns):
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


# --- Range (RFC 9110 section 14) ---------------------------------------------------------------

_RANGE_SPEC = re.compile(r"([0-9]{0,32})-([0-9]{0,32})")


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int | None  # inclusive; None: to the end of a blob whose size is not known yet

    @property
    def length(self) -> int | None:
        return None if self.end is None else self.end - self.start + 1

    def content_range(self, size: int | None) -> str:
        if self.end is None:
            raise ValueError("an open range has no Content-Range until the size is known")
        return f"bytes {self.start}-{self.end}/{'*' if size is None else size}"

    def resolve(self, size: int) -> ByteRange:
        """This range against a now-known size: clamped, or RANGE_INVALID if unsatisfiable."""
        return _satisfy(self.start, self.end, size)


def parse_range(header: str | None, size: int | None) -> ByteRange | None:
    """The single byte range a GET should serve, or None to serve the whole blob (200).

    - `bytes=a-b`, `bytes=a-`, `bytes=-n`; the unit is case-insensitive, spaces around are fine.
    - Malformed, another unit, or several ranges: None. RFC 9110 lets a server ignore Range,
      and a multipart/byteranges body is not worth it for a registry (containerd sends `N-`).
    - A suffix (`-n`) while the size is unknown: None, the whole blob.
    - Unsatisfiable against a known size: OCIError RANGE_INVALID (416) carrying
      `Content-Range: bytes */<size>`.
    """
    if header is None:
        return None
    unit, sep, range_set = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in range_set:
        return None
    match = _RANGE_SPEC.fullmatch(range_set.strip())
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first:
        if not last:
            return None  # "bytes=-"
        return _suffix(int(last), size)
    start, end = int(first), (int(last) if last else None)
    if end is not None and end < start:
        return None  # invalid range-spec: ignore the header
    if size is None:
        return ByteRange(start, end)
    return _satisfy(start, end, size)


def _suffix(length: int, size: int | None) -> ByteRange | None:
    if size is None:
        return None
    if length == 0 or size == 0:
        raise range_not_satisfiable(size)
    return ByteRange(max(0, size - length), size - 1)


def _satisfy(start: int, end: int | None, size: int) -> ByteRange:
    if start >= size:
        raise range_not_satisfiable(size)
    last = size - 1 if end is None else min(end, size - 1)
    return ByteRange(start, last)


def range_not_satisfiable(size: int) -> OCIError:
    return OCIError(ErrorCode.RANGE_INVALID, headers={"Content-Range": f"bytes */{size}"})

"""The distribution API: parse the request once, then hand it to the handler of its kind.

A plain ASGI app (no per-request Starlette routing) because manifest HEADs are the hot path.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from registry_mirror.api import _blobs as blobs
from registry_mirror.api import _manifests as manifests
from registry_mirror.api import _passthrough as passthrough
from registry_mirror.api._errors import API_VERSION_HEADER, ErrorCode, OCIError, to_response_parts
from registry_mirror.api._paths import DistributionRequest, parse_scope, route_by_path
from registry_mirror.api._state import Mirror
from registry_mirror.api._translations import translate
from registry_mirror.config import Settings
from registry_mirror.policy import Policy, Subject

log = logging.getLogger("registry_mirror")

_READ_METHODS = ("GET", "HEAD")


class DistributionAPI:
    def __init__(self, mirror: Mirror, policy: Policy | None = None) -> None:
        """`policy`: checked here only when the app is used without `PolicyGate` in front (the
        app built by `registry_mirror.runtime._app` gates every route there, once)."""
        self.mirror = mirror
        self.policy = policy
        self._upstream_names = upstream_names(mirror.settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        info: dict[str, Any] = scope.setdefault("registry_mirror", {})
        try:
            response = await self._handle(scope, info, started)
        except Exception as exc:  # every failure becomes OCI error JSON, never a bare 500 page
            error = translate(exc)
            if error.code == ErrorCode.UNKNOWN:
                log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            info.setdefault("error", str(error.code))
            status, headers, body = to_response_parts(error)
            response = Response(body if scope["method"] != "HEAD" else b"", status, headers)
            if scope["method"] == "HEAD":
                response.headers["Content-Length"] = str(len(body))
        await response(scope, receive, send)

    async def _handle(self, scope: Scope, info: dict[str, Any], started: float) -> Any:
        request = _parse(
            scope.get("raw_path") or scope["path"].encode(),
            scope.get("query_string", b""),
            self.mirror.settings.path_prefix,
            self._upstream_names,
        )
        info.update(route=request.kind, repository=request.repository, upstream=request.registry)
        headers = Headers(scope=scope)
        if self.policy is not None:
            client = scope.get("client")
            self.policy.check(request, client[0] if client else None, headers)
        method = scope["method"]
        if request.kind == "uploads" or method not in _READ_METHODS:
            raise OCIError(
                ErrorCode.UNSUPPORTED, "this mirror is read-only: push, delete and uploads are not supported"
            )
        if request.kind == "base":
            return Response(
                b"{}", 200, {"Content-Type": "application/json", API_VERSION_HEADER[0]: API_VERSION_HEADER[1]}
            )
        head = method == "HEAD"
        if request.digest is not None:
            info["digest"] = str(request.digest)
        if request.kind == "blob":
            response = await blobs.get_blob(self.mirror, request, headers, head=head, started=started, notes=info)
            info["source"] = response.source
            return response
        if request.kind == "manifest":
            return await manifests.get_manifest(self.mirror, request, headers, head=head, notes=info)
        query = QueryParams(scope.get("query_string", b""))
        if request.kind == "tags":
            return await passthrough.list_tags(self.mirror, request, query, headers)
        if request.kind == "referrers":
            return await passthrough.referrers(self.mirror, request, query, headers)
        raise _unroutable(request)


def upstream_names(settings: Settings) -> frozenset[str]:
    """The names a path may start with to pick its upstream (clients that send no `?ns=`)."""
    return frozenset(u.name for u in settings.upstreams)


@functools.lru_cache(maxsize=8192)
def _parse(raw_path: bytes, query_string: bytes, path_prefix: str, names: frozenset[str]) -> DistributionRequest:
    """Parsing is pure and the result immutable: hot paths (a tag every node HEADs) parse once.
    Only successes are cached; a bad request raises its OCIError every time."""
    request = parse_scope({"raw_path": raw_path, "query_string": query_string, "path": ""}, path_prefix)
    return route_by_path(request, names)


def _unroutable(request: DistributionRequest) -> OCIError:
    return OCIError(ErrorCode.NOT_FOUND, f"no handler for {request.kind}")


def distribution_subject(policy: Policy, settings: Settings) -> Callable[[str, bytes], Subject | None]:
    """The gate's view of a distribution request: its normalised blocklist Subject, after the same
    routing the API applies (so `quay.io/org/app` is blocked as org/app on quay.io)."""
    path_prefix, names = settings.path_prefix, upstream_names(settings)

    def subject_of(path: str, query: bytes) -> Subject | None:
        request = _parse(path.encode("latin-1"), query, path_prefix, names)
        return None if request.kind == "base" else policy.subject(request)

    return subject_of

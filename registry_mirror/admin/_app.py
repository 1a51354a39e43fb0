"""The admin API: a small Starlette app on its own listener (loopback by default; a bearer token
is required when it listens anywhere else). `registry-mirror ctl` is its client.

Extension points (given to `build_admin` at wiring time, no import of the provider here):
- `status_providers[name] = fn`: `fn()` (sync or async) returns a JSON-able mapping shown under
  `name` in `GET /admin/status` (p2p: "peers", model delivery, ...).
- `catalog`: an object with `status()` and `rollback()` (sync or async), served at
  `/admin/catalog` and `/admin/catalog/rollback`.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from catalog import CatalogError
from http_limits.errors import EXCEPTION_HANDLERS, ExceptionHandler, error_response
from nvme_cache import Digest, Fill, InvalidDigest
from oci import MANIFEST_TYPES, bearer_matches, is_qualified_host
from registry_mirror.api import (
    ErrorCode,
    Listener,
    Mirror,
    OCIError,
    parse_reference,
    parse_registry_host,
    translate,
    validate_repository,
)
from registry_mirror.policy import InvalidRule, Policy, Subject, rule_from_mapping
from registry_mirror.telemetry import _metrics as metrics
from registry_mirror.version import VERSION

log = logging.getLogger("registry_mirror.admin")

StatusProvider = Callable[[], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]

MANIFEST_ACCEPT = list(MANIFEST_TYPES)
_PREFETCH_CONCURRENCY = 3


class CatalogControl(Protocol):
    def status(self) -> Any: ...

    def rollback(self) -> Any: ...


@dataclass
class PrefetchJob:
    id: str
    ref: str
    state: str = "resolving"  # resolving, running, done, failed
    total_bytes: int = 0
    blobs: dict[str, int] = field(default_factory=dict)  # digest -> size
    done: set[str] = field(default_factory=set)
    error: str | None = None
    started: float = field(default_factory=time.time)
    live: Callable[[], int] = lambda: 0  # bytes of blobs still filling

    def to_json(self) -> dict[str, Any]:
        done_bytes = sum(self.blobs[d] for d in self.done) + self.live()
        return {
            "id": self.id, "ref": self.ref, "state": self.state, "error": self.error,
            "total_blobs": len(self.blobs), "done_blobs": len(self.done),
            "total_bytes": self.total_bytes, "done_bytes": min(done_bytes, self.total_bytes),
        }  # fmt: skip


@dataclass
class AdminContext:
    mirror: Mirror
    policy: Policy
    metrics_registry: CollectorRegistry | None = None
    status_providers: dict[str, StatusProvider] = field(default_factory=dict)
    catalog: CatalogControl | None = None
    jobs: dict[str, PrefetchJob] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    running: set[asyncio.Task[None]] = field(default_factory=set)  # prefetch jobs (kept referenced)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_admin_exposure(host: str, token: str | None) -> None:
    """Never open beyond loopback without a token."""
    if not is_loopback(host) and not token:
        raise ValueError(f"admin.listen {host!r} is not a loopback address: set admin.token_file or admin.token_env")


class _TokenGuard:
    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.expected = token or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.expected is not None:
            presented = dict(scope["headers"]).get(b"authorization")
            if not bearer_matches(presented, self.expected):
                await _error(401, "admin token missing or wrong")(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_admin(
    mirror: Mirror,
    policy: Policy,
    metrics_registry: CollectorRegistry | None = None,
    *,
    catalog: CatalogControl | None = None,
    status_providers: Mapping[str, StatusProvider] | None = None,
) -> Listener | None:
    """The admin listener (settings.admin.listen; "" disables it). `catalog`: what
    /admin/catalog shows; `status_providers`: further sections of /admin/status."""
    admin = mirror.settings.admin
    if not admin.listen:
        return None
    from registry_mirror.config import parse_listen

    host, port = parse_listen(admin.listen)
    check_admin_exposure(host, admin.token)
    # A port that cannot be bound is fatal (registry_mirror.runtime._startup binds every listener first):
    # a mirror quietly without its admin API would let `ctl` talk to some other instance.
    context = AdminContext(mirror, policy, metrics_registry, dict(status_providers or {}), catalog)
    return Listener("admin", create_admin_app(context, admin.token), host, port)


def _upstream_url(settings: Any, name: str) -> str:
    upstream = settings.upstream(name)
    return str(upstream.url) if upstream is not None else ""


_error = error_response  # the control APIs' one error body (http_limits.errors)


async def _call(fn: Callable[[], Any]) -> Any:
    result = fn()
    return await result if inspect.isawaitable(result) else result


def _digest(request: Request) -> Digest:
    return Digest.parse(request.path_params["digest"])


class BadParameter(ValueError):
    """An admin parameter that does not parse: a 400 that names the field, never a 500."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


_PIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def _int_param(request: Request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise BadParameter(name, f"expected an integer from {minimum} to {maximum}, got {raw[:40]!r}")
    return int(raw)


def _pin_name(request: Request) -> str:
    name = request.query_params.get("name", "admin")
    if not _PIN_NAME.fullmatch(name):
        raise BadParameter("name", "expected 1-128 characters of A-Z a-z 0-9 . _ : - (starting alphanumeric)")
    return name


def _single_values(request: Request) -> None:
    """A parameter given twice is ambiguous: refuse instead of picking one."""
    for key in request.query_params:
        if len(request.query_params.getlist(key)) > 1:
            raise BadParameter(key, "given more than once")


def create_admin_app(context: AdminContext, token: str | None = None) -> ASGIApp:
    mirror = context.mirror
    store = mirror.store

    async def status(request: Request) -> JSONResponse:
        index = store.index
        settings = mirror.settings
        body: dict[str, Any] = {
            "address": f"{settings.listen_host}:{settings.listen_port}",
            "version": VERSION,
            "pid": os.getpid(),
            "cache_dir": str(settings.cache.directory),
            "uptime_seconds": round(time.time() - context.started, 1),
            "cache": {
                "blobs": len(index), "bytes_used": index.bytes_used, "bytes_capacity": store.policy.max_size,
                "pins": len(index.pins()), "fills_in_flight": store.fills_in_flight,
            },
            "traffic": traffic_summary(context.metrics_registry),
            "upstreams": mirror.upstreams.names(),
            "upstream_urls": {name: _upstream_url(settings, name) for name in mirror.upstreams.names()},
            "default_upstream": settings.default_upstream,
            "blocklist_rules": len(context.policy.blocklist.rules()),
        }  # fmt: skip
        if (limits := mirror.upstream_limits) is not None:
            body["upstream_limits"] = {
                "concurrency": limits.concurrency, "bandwidth": limits.bandwidth,
                "peak_in_flight": dict(limits.peak_in_flight),
            }  # fmt: skip
        if context.catalog is not None:
            body["catalog"] = await _call(context.catalog.status)
        for name, provider in context.status_providers.items():
            body[name] = await _call(provider)
        return JSONResponse(body)

    async def cache_list(request: Request) -> JSONResponse:
        _single_values(request)
        limit = _int_param(request, "limit", 1000, 0, 1_000_000)
        pinned = store.index.pinned()
        rows = [
            {
                "digest": d,
                "size": e.size,
                "media_type": e.media_type,
                "last_access": e.last_access,
                "pinned": d in pinned,
            }
            for d, e in reversed(list(store.index.lru()))  # most recently used first
        ]
        return JSONResponse({"blobs": rows[:limit], "total": len(rows)})

    async def cache_inspect(request: Request) -> JSONResponse:
        digest = _digest(request)
        entry = store.index.get(str(digest))
        fill = store.progress(digest)
        if entry is None and fill is None:
            return _error(404, f"{digest} is not in the cache")
        pins = sorted(name for name, digests in store.index.pins().items() if str(digest) in digests)
        body: dict[str, Any] = {"digest": str(digest), "pins": pins, "path": str(store.layout.blob_path(digest))}
        if entry is not None:
            body.update(size=entry.size, media_type=entry.media_type, last_access=entry.last_access, state="cached")
        else:
            assert fill is not None
            body.update(size=fill.size, written=fill.written, state="filling", source=fill.source)
        return JSONResponse(body)

    async def cache_evict(request: Request) -> JSONResponse:
        digest = _digest(request)
        if store.stat(digest) is None:
            return _error(404, f"{digest} is not in the cache")
        if not store.evict(digest):
            return _error(409, f"{digest} is pinned or being read; unpin it or retry")
        return JSONResponse({"evicted": str(digest)})

    async def cache_verify(request: Request) -> JSONResponse:
        """Rehash every cached blob here, in the process that serves them: a corrupt one is
        quarantined and forgotten at once, so the next request refetches it (never an empty 200)."""
        report = await store.verify_all()
        return JSONResponse(
            {"checked": report.checked, "corrupt": list(report.corrupt), "quarantine": str(store.layout.quarantine)}
        )

    async def cache_pin(request: Request) -> JSONResponse:
        _single_values(request)
        digest, name = _digest(request), _pin_name(request)
        if request.method == "POST":
            store.pin(name, store.pins().get(name, set()) | {str(digest)})
        else:
            remaining = store.pins().get(name, set()) - {str(digest)}
            store.pin(name, remaining) if remaining else store.unpin(name)
        return JSONResponse({"pin": name, "digests": sorted(store.pins().get(name, set()))})

    async def blocklist_list(request: Request) -> JSONResponse:
        rules = [{"origin": origin, **rule.to_json()} for origin, rule in context.policy.blocklist.rules()]
        return JSONResponse({"rules": rules})

    async def blocklist_add(request: Request) -> JSONResponse:
        try:
            values = await request.json()
            if not isinstance(values, dict):
                raise InvalidRule("expected a JSON object")
            rule = context.policy.blocklist.add(rule_from_mapping(values))
        except (InvalidRule, json.JSONDecodeError) as exc:
            return _error(400, str(exc), "rule")
        return JSONResponse({"origin": "admin", **rule.to_json()}, status_code=201)

    async def blocklist_remove(request: Request) -> JSONResponse:
        rule_id = request.path_params["rule_id"]
        origin = context.policy.blocklist.remove(rule_id)
        if origin is None:
            return _error(404, f"no blocklist rule {rule_id}")
        if origin == "file":
            return _error(409, f"rule {rule_id} comes from the config file: remove it there (reloaded automatically)")
        return JSONResponse({"removed": rule_id})

    async def catalog_status(request: Request) -> JSONResponse:
        if context.catalog is None:
            return _error(404, "no catalog is configured on this mirror")
        return JSONResponse(await _call(context.catalog.status))

    async def catalog_rollback(request: Request) -> JSONResponse:
        if context.catalog is None:
            return _error(404, "no catalog is configured on this mirror")
        try:
            return JSONResponse(await _call(context.catalog.rollback))
        except CatalogError as exc:  # the catalog says why it cannot roll back (no previous serial, ...)
            return _error(409, str(exc))
        except Exception:
            log.exception("catalog rollback failed")
            return _error(500, "the rollback failed: see the mirror's log")

    async def prefetch_start(request: Request) -> JSONResponse:
        try:
            values = await request.json()
            if not isinstance(values, dict) or not isinstance(values.get("ref"), str):
                raise BadParameter("ref", 'expected {"ref": "REGISTRY/REPOSITORY:TAG"}')
            if not isinstance(values.get("platform", ""), str):
                raise BadParameter("platform", 'expected a string like "linux/amd64"')
            ref = str(values["ref"])
            target, reference = _parse_ref(ref, mirror.settings.default_upstream)
        except BadParameter:
            raise
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            return _error(400, f'expected {{"ref": "REGISTRY/REPOSITORY:TAG"}}: {exc}', "ref")
        except OCIError as exc:
            return _error(400, exc.message, "ref")
        job = PrefetchJob(uuid.uuid4().hex[:12], ref)
        context.jobs[job.id] = job
        platform = str(values.get("platform", "linux/amd64"))
        job_task = asyncio.get_running_loop().create_task(_run_prefetch(context, job, target, reference, platform))
        context.running.add(job_task)
        job_task.add_done_callback(context.running.discard)
        return JSONResponse(job.to_json(), status_code=202)

    async def prefetch_status(request: Request) -> JSONResponse:
        job = context.jobs.get(request.path_params["job_id"])
        if job is None:
            return _error(404, "no such prefetch job")
        return JSONResponse(job.to_json())

    routes = [
        Route("/admin/status", status, methods=["GET"]),
        Route("/admin/cache", cache_list, methods=["GET"]),
        Route("/admin/cache/verify", cache_verify, methods=["POST"]),
        Route("/admin/cache/{digest}", cache_inspect, methods=["GET"]),
        Route("/admin/cache/{digest}", cache_evict, methods=["DELETE"]),
        Route("/admin/cache/{digest}/pin", cache_pin, methods=["POST", "DELETE"]),
        Route("/admin/blocklist", blocklist_list, methods=["GET"]),
        Route("/admin/blocklist", blocklist_add, methods=["POST"]),
        Route("/admin/blocklist/{rule_id}", blocklist_remove, methods=["DELETE"]),
        Route("/admin/catalog", catalog_status, methods=["GET"]),
        Route("/admin/catalog/rollback", catalog_rollback, methods=["POST"]),
        Route("/admin/prefetch", prefetch_start, methods=["POST"]),
        Route("/admin/prefetch/{job_id}", prefetch_status, methods=["GET"]),
    ]
    handlers: dict[Any, ExceptionHandler] = {
        **EXCEPTION_HANDLERS,
        InvalidDigest: _bad_digest,
        BadParameter: _bad_parameter,
    }
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.admin = context
    return _TokenGuard(app, token)


async def _bad_digest(request: Request, exc: Exception) -> Response:
    metrics.admin_bad_requests.add(1, {"field": "digest"})
    return _error(400, f"invalid digest: {exc}", "digest")


async def _bad_parameter(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadParameter)
    metrics.admin_bad_requests.add(1, {"field": exc.field})
    return _error(400, str(exc), exc.field)


def traffic_summary(registry: CollectorRegistry | None) -> dict[str, Any]:
    """Blob bytes by source and the byte hit ratio, read from the Prometheus registry."""
    by_source: dict[str, float] = {}
    if registry is not None:
        for family in registry.collect():
            if family.name == "registry_mirror_blob_bytes":
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        source = sample.labels.get("source", "")
                        by_source[source] = by_source.get(source, 0) + sample.value
    total = sum(by_source.values())
    served_locally = total - by_source.get("origin", 0)
    return {
        "blob_bytes_by_source": {k: int(v) for k, v in sorted(by_source.items())},
        "hit_ratio": round(served_locally / total, 4) if total else None,
        "origin_bytes_saved": int(served_locally),
    }


# -- prefetch -------------------------------------------------------------------------------------


def _parse_ref(ref: str, default_upstream: str) -> tuple[tuple[str, str], str | Digest]:
    """REGISTRY/REPO[:TAG|@DIGEST] -> ((registry, repository), reference)."""
    name, at, digest_text = ref.partition("@")
    first, slash, rest = name.partition("/")
    if slash and is_qualified_host(first):
        registry, path = parse_registry_host(first), rest
    else:
        registry, path = default_upstream, name
    repository, colon, tag = path.rpartition(":") if ":" in path.rsplit("/", 1)[-1] else (path, "", "")
    reference: str | Digest = parse_reference(digest_text) if at else (tag if colon else "latest")
    return (registry, validate_repository(repository)), reference


async def _run_prefetch(
    context: AdminContext, job: PrefetchJob, where: tuple[str, str], reference: str | Digest, platform: str
) -> None:
    mirror = context.mirror
    try:
        registry, repository = where
        target = mirror.upstreams.resolve(registry, repository)
        tag = reference if isinstance(reference, str) else None
        subject = Subject(upstream=target.name, repository=repository, tag=tag)
        context.policy.check_subject(subject)
        manifest = await mirror.manifests.get(target, reference, MANIFEST_ACCEPT)
        document = json.loads(manifest.body)
        if "manifests" in document:  # an index: the platform's image
            child = _pick_platform(document["manifests"], platform)
            manifest = await mirror.manifests.get(target, Digest.parse(child), MANIFEST_ACCEPT)
            document = json.loads(manifest.body)
        descriptors = [document["config"], *document.get("layers", [])] if "config" in document else []
        job.blobs = {d["digest"]: int(d["size"]) for d in descriptors}
        job.total_bytes = sum(job.blobs.values())
        job.state = "running"
        filling: set[Digest] = set()
        job.live = lambda: sum(p.written for d in filling if (p := mirror.store.progress(d)) is not None)
        limiter = asyncio.Semaphore(_PREFETCH_CONCURRENCY)

        async def one(digest_text: str, size: int) -> None:
            async with limiter:
                context.policy.check_subject(Subject(upstream=target.name, repository=repository, digest=digest_text))
                digest = Digest.parse(digest_text)
                blob = mirror.blobs.open_from(
                    digest, lambda: mirror.blobs.origin(target, digest), size_hint=size, expected_size=size
                )
                if isinstance(blob.handle, Fill):
                    filling.add(digest)
                    try:
                        await blob.handle.wait()
                    finally:
                        filling.discard(digest)
                job.done.add(digest_text)

        await asyncio.gather(*(one(d, s) for d, s in job.blobs.items()))
        job.state = "done"
    except Exception as exc:  # reported through the job, the server keeps running
        error = translate(exc)  # an upstream's or the cache's failure, as its fixed OCI message
        if error.code == ErrorCode.UNKNOWN:
            log.exception("prefetch %s failed", job.ref)  # the detail stays in the log
        job.state, job.error = "failed", f"{error.code}: {error.message}"


def _pick_platform(manifests: list[dict[str, Any]], platform: str) -> str:
    os_name, _, arch = platform.partition("/")
    for entry in manifests:
        p = entry.get("platform", {})
        if p.get("os") == os_name and p.get("architecture") == arch:
            return str(entry["digest"])
    raise OCIError(ErrorCode.MANIFEST_UNKNOWN, f"the index has no {platform} image")

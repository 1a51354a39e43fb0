"""create_app(settings): the ASGI app. Its lifespan opens the cache and the upstream clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

import registry_mirror.translations  # noqa: F401  (registers the exception translations)
from registry_mirror import metrics
from nvme_cache import BlobStore, ZeroCopyMiddleware
from nvme_cache.scrub import Scrubber
from registry_mirror.access_log import AccessLog
from registry_mirror.admin import install_admin
from registry_mirror.catalog_wiring import install_catalogs, install_cluster_catalogs
from registry_mirror.dispatch import DistributionAPI, distribution_subject
from registry_mirror.hub import build_hub_app
from registry_mirror.hub.subjects import hf_subject, modelscope_subject
from registry_mirror.manifest_cache import ManifestCache
from registry_mirror.p2p_wiring import install_p2p
from registry_mirror.policy.asgi import PolicyGate
from registry_mirror.provenance import Provenance
from registry_mirror.policy.setup import build_policy, build_upstream_limits
from registry_mirror.settings import Settings
from registry_mirror.signatures.setup import build_signature_gate
from registry_mirror.state import Mirror
from registry_mirror.telemetry import install_metrics, metrics_endpoint
from registry_mirror.tracing import TracingMiddleware, install_tracing, shutdown_tracing
from registry_mirror.upstreams import Upstreams
from registry_mirror.version import VERSION

log = logging.getLogger("registry_mirror")


def build_mirror(settings: Settings) -> Mirror:
    cache = settings.cache
    store = BlobStore(
        cache.directory,
        max_size=cache.max_size,
        high_watermark=cache.high_watermark,
        low_watermark=cache.low_watermark,
        min_free_bytes=cache.min_free_bytes,
        complete_abandoned_fills=cache.complete_abandoned_fills,
        chunk_size=cache.chunk_size,
    )
    manifests = ManifestCache(
        store,
        tag_ttl=settings.tag_ttl,
        max_stale=settings.max_stale,
        negative_ttl=settings.negative_ttl,
        max_bytes=settings.manifest_max_bytes,
    )
    provenance = Provenance(cache.directory / "provenance.sqlite", settings.confirm_ttl)
    signatures = build_signature_gate(settings, manifests, store)
    return Mirror(settings, store, Upstreams(settings), manifests, provenance=provenance, signatures=signatures)


def create_app(settings: Settings) -> ASGIApp:
    return build_app(settings)[0]


def build_app(settings: Settings, config_file: Path | None = None) -> tuple[ASGIApp, Mirror]:
    """The main ASGI app and the Mirror behind it (whose `listeners` the server also serves).
    `config_file` is polled for blocklist changes."""
    metrics_registry = install_metrics()
    mirror = build_mirror(settings)
    node = install_p2p(mirror, settings.p2p)
    policy = build_policy(settings, config_file)
    mirror.upstream_limits = build_upstream_limits(settings)
    catalogs = install_catalogs(mirror, settings)
    # With peers, the admin API's catalog view includes the cluster's readiness.
    catalog_view = catalogs if catalogs is None or node is None else install_cluster_catalogs(
        mirror, catalogs, node, min(settings.catalog.poll_interval, 10.0))
    admin = install_admin(mirror, policy, metrics_registry)
    if admin is not None:
        admin.catalog = catalog_view
        if node is not None:
            admin.status_providers["peers"] = node.status
    mirror.on_startup.append(policy.blocklist.start_watching)
    mirror.on_shutdown.append(policy.blocklist.stop_watching)
    tracing = install_tracing(settings.telemetry.otlp_endpoint, settings.telemetry.service_name)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        metrics.watch_loop_tasks(asyncio.get_running_loop())
        mirror.store.open(holder=_lock_holder(settings))
        mirror.store.start_background()
        scrubber = Scrubber(mirror.store, settings.cache.scrub_rate)
        scrubber.start()
        mirror.on_shutdown.insert(0, scrubber.stop)
        mirror.provenance.open()
        for hook in mirror.on_startup:
            await hook()
        try:
            yield
        finally:
            for hook in reversed(mirror.on_shutdown):
                await hook()
            await mirror.upstreams.aclose()
            mirror.provenance.close()
            await mirror.store.aclose()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        ready = mirror.store.ready and settings.upstream(settings.default_upstream) is not None
        return JSONResponse({"ready": ready, "cache_index_loaded": mirror.store.ready}, status_code=200 if ready else 503)

    api = DistributionAPI(mirror)  # PolicyGate below checks every route, this one included
    hub = build_hub_app(
        mirror,
        settings.hf.upstream,
        settings.modelscope.upstream,
        settings.hf.revision_ttl,
        settings.hf.auth_ttl,
        modelscope_ttls=(settings.modelscope.revision_ttl, settings.modelscope.auth_ttl),
    )
    mirror.on_shutdown.append(hub.aclose)
    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route("/readyz", readyz, methods=["GET", "HEAD"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Mount("/hf", hub),
            Mount("/modelscope", hub),
            Route("/{path:path}", api, methods=None),
        ],
        lifespan=lifespan,
    )
    app.state.mirror = mirror
    gated = PolicyGate(_FastPath(api, app, settings.path_prefix), policy, [
        ("", distribution_subject(policy, settings)),
        ("/hf", hf_subject),
        ("/modelscope", modelscope_subject),
    ])
    logged = AccessLog(gated, enabled=settings.access_log)
    if tracing:
        mirror.on_shutdown.insert(0, _async(shutdown_tracing))  # runs last: flushes the final spans
        return ZeroCopyMiddleware(TracingMiddleware(logged), settings.limits.send_timeout), mirror
    return ZeroCopyMiddleware(logged, settings.limits.send_timeout), mirror


class _FastPath:
    """Distribution API paths go straight to DistributionAPI (it parses and answers errors
    itself); everything else through Starlette. Skipping Starlette's router and middleware
    stack measured about a third of the CPU of a cached manifest HEAD (py-spy)."""

    def __init__(self, api: ASGIApp, app: ASGIApp, path_prefix: str) -> None:
        self.api = api
        self.app = app
        self.root = path_prefix or "/v2"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and (path == self.root or path.startswith(self.root + "/")):
            await self.api(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _lock_holder(settings: Settings) -> dict[str, str]:
    """Written into the cache dir's lock: `cache verify` finds this instance's admin API there."""
    admin = settings.admin.listen
    return {"listen": f"{settings.listen_host}:{settings.listen_port}", "version": VERSION,
            "admin": f"http://{admin}" if admin else ""}


def _async(fn: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def hook() -> None:
        fn()

    return hook

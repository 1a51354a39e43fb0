"""build_app(settings): the ASGI app and its assembly. Its lifespan opens the cache, starts the
services in their written order and stops them in reverse."""

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

from catalog import delta_sources
from nvme_cache import BlobStore, ZeroCopyMiddleware
from nvme_cache.scrub import Scrubber
from registry_mirror.admin import build_admin
from registry_mirror.api import (
    Assembly,
    BlobService,
    DistributionAPI,
    ManifestCache,
    Mirror,
    Service,
    SourceLayer,
    distribution_subject,
)
from registry_mirror.config import Settings
from registry_mirror.hub import build_hub_app, hf_subject, modelscope_subject
from registry_mirror.policy import PolicyGate, Provenance, build_policy, build_upstream_limits
from registry_mirror.runtime._catalogs import ClusterCatalogs, build_catalogs, catalog_options
from registry_mirror.runtime._p2p import build_p2p
from registry_mirror.signatures import build_signature_gate
from registry_mirror.telemetry import (
    AccessLog,
    TracingMiddleware,
    install_metrics,
    install_tracing,
    metrics_endpoint,
    shutdown_tracing,
)
from registry_mirror.telemetry import _metrics as metrics
from registry_mirror.upstream import Upstreams
from registry_mirror.version import VERSION

log = logging.getLogger("registry_mirror")


def build_store(settings: Settings) -> BlobStore:
    cache = settings.cache
    return BlobStore(
        cache.directory,
        max_size=cache.max_size,
        high_watermark=cache.high_watermark,
        low_watermark=cache.low_watermark,
        min_free_bytes=cache.min_free_bytes,
        complete_abandoned_fills=cache.complete_abandoned_fills,
        direct_writes=cache.direct_writes,
        chunk_size=cache.chunk_size,
    )


def build_mirror(settings: Settings, store: BlobStore | None = None, layers: tuple[SourceLayer, ...] = ()) -> Mirror:
    """The services every handler reads. `layers`: the blob sources tried before the origin."""
    store = store if store is not None else build_store(settings)
    manifests = ManifestCache(
        store,
        tag_ttl=settings.tag_ttl,
        max_stale=settings.max_stale,
        negative_ttl=settings.negative_ttl,
        max_bytes=settings.manifest_max_bytes,
    )
    upstreams = Upstreams(settings)
    blobs = BlobService(store, upstreams, layers, build_upstream_limits(settings))
    provenance = Provenance(settings.cache.directory / "provenance.sqlite", settings.confirm_ttl)
    signatures = build_signature_gate(settings, manifests, store)
    return Mirror(settings, store, upstreams, manifests, blobs, provenance=provenance, signatures=signatures)


def build_app(settings: Settings, config_file: Path | None = None) -> tuple[ASGIApp, Assembly]:
    """The main ASGI app and its assembly (whose `listeners` the server also serves). `config_file`
    is polled for blocklist changes.

    Built once, in dependency order; nothing is changed after. The order the parts start in
    (after the cache opened; they stop in reverse, before it closes) is the `services` tuple.
    """
    metrics_registry = install_metrics()
    store = build_store(settings)
    peer = build_p2p(settings.p2p, store)
    node = peer[0] if peer is not None else None
    policy = build_policy(settings, config_file)
    options = catalog_options(settings) if settings.catalog.sources else None
    deltas = delta_sources(store, options) if options is not None else None
    # A fill tries peers first (they cost the origin nothing), then a catalog delta, the origin last.
    layers: list[SourceLayer] = []
    if node is not None:
        layers.append(node.wrap)
    if deltas is not None:
        layers.append(deltas.wrap)
    mirror = build_mirror(settings, store, tuple(layers))
    catalogs = build_catalogs(options, mirror.blobs, deltas) if options is not None and deltas is not None else None
    # With peers, the admin API's catalog view includes the cluster's readiness.
    cluster = (
        None
        if catalogs is None or node is None
        else ClusterCatalogs(catalogs, node, min(settings.catalog.poll_interval, 10.0))
    )
    admin = build_admin(
        mirror,
        policy,
        metrics_registry,
        catalog=cluster if cluster is not None else catalogs,
        status_providers={"peers": node.status} if node is not None else {},
    )
    tracing = install_tracing(settings.telemetry.otlp_endpoint, settings.telemetry.service_name)
    scrubber = Scrubber(store, settings.cache.scrub_rate, min_age=settings.cache.scrub_min_age)
    hub = build_hub_app(
        mirror,
        settings.hf.upstream,
        settings.modelscope.upstream,
        settings.hf.revision_ttl,
        settings.hf.auth_ttl,
        modelscope_ttls=(settings.modelscope.revision_ttl, settings.modelscope.auth_ttl),
    )
    services = tuple(
        service
        for service in (
            Service("scrubber", _async(scrubber.start), scrubber.stop),
            Service("tracing", stop=_async(shutdown_tracing))
            if tracing
            else None,  # stops late: flushes the final spans
            Service("peers", node.start, node.aclose) if node is not None else None,
            Service("catalogs", catalogs.start, catalogs.aclose) if catalogs is not None else None,
            Service("cluster catalogs", cluster.start, cluster.aclose) if cluster is not None else None,
            Service("blocklist", policy.blocklist.start_watching, policy.blocklist.stop_watching),
            Service("hub", stop=hub.aclose),
        )
        if service is not None
    )
    listeners = tuple(listener for listener in (peer[1] if peer else None, admin) if listener is not None)
    assembly = Assembly(mirror, listeners, services)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        metrics.watch_loop_tasks(asyncio.get_running_loop())
        mirror.store.open(holder=_lock_holder(settings))
        mirror.store.start_background()
        mirror.provenance.open()
        started: list[Service] = []
        try:
            for service in services:
                if service.start is not None:
                    await service.start()
                started.append(service)
            yield
        finally:
            for service in reversed(started):
                if service.stop is not None:
                    await service.stop()
            await mirror.upstreams.aclose()
            mirror.provenance.close()
            await mirror.store.aclose()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        ready = mirror.store.ready and settings.upstream(settings.default_upstream) is not None
        return JSONResponse(
            {"ready": ready, "cache_index_loaded": mirror.store.ready}, status_code=200 if ready else 503
        )

    api = DistributionAPI(mirror)  # PolicyGate below checks every route, this one included
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
    gated = PolicyGate(
        _FastPath(api, app, settings.path_prefix),
        policy,
        [
            ("", distribution_subject(policy, settings)),
            ("/hf", hf_subject),
            ("/modelscope", modelscope_subject),
        ],
    )
    logged: ASGIApp = AccessLog(gated, enabled=settings.access_log)
    if tracing:
        logged = TracingMiddleware(logged)
    return ZeroCopyMiddleware(logged, settings.limits.send_timeout), assembly


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
    return {
        "listen": f"{settings.listen_host}:{settings.listen_port}",
        "version": VERSION,
        "admin": f"http://{admin}" if admin else "",
    }


def _async(fn: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def hook() -> None:
        fn()

    return hook

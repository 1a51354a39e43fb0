"""create_app(settings): the ASGI app. Its lifespan opens the cache and the upstream clients."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

import registry_mirror.translations  # noqa: F401  (registers the exception translations)
from nvme_cache import BlobStore
from registry_mirror.access_log import AccessLog
from registry_mirror.dispatch import DistributionAPI
from registry_mirror.manifest_cache import ManifestCache
from registry_mirror.settings import Settings
from registry_mirror.state import Mirror
from registry_mirror.telemetry import install_metrics, metrics_endpoint
from registry_mirror.upstreams import Upstreams

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
    return Mirror(settings, store, Upstreams(settings), manifests)


def create_app(settings: Settings) -> ASGIApp:
    install_metrics()
    mirror = build_mirror(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        mirror.store.open()
        mirror.store.start_background()
        log.info("registry-mirror ready: upstreams %s, default %s", ", ".join(mirror.upstreams.names()), settings.default_upstream)
        try:
            yield
        finally:
            await mirror.upstreams.aclose()
            await mirror.store.aclose()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        ready = mirror.store.ready and settings.upstream(settings.default_upstream) is not None
        return JSONResponse({"ready": ready, "cache_index_loaded": mirror.store.ready}, status_code=200 if ready else 503)

    api = DistributionAPI(mirror)
    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route("/readyz", readyz, methods=["GET", "HEAD"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/{path:path}", api, methods=None),
        ],
        lifespan=lifespan,
    )
    app.state.mirror = mirror
    return AccessLog(app, enabled=settings.access_log)

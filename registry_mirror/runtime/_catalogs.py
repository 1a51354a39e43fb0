"""Wires signed catalogs into the mirror: the delta sources (a layer of the blob service), and
pollers that prefetch into the cache through the blob service's own sources (peers when p2p is
on, then deltas, then the origin)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from catalog import Blob, CatalogOptions, CatalogService, DeltaSources, SourceFor, load_trusted_keys
from nvme_cache import Digest, FillSource
from oci import is_manifest
from p2p import P2PNode, TrackerError
from registry_mirror.api import BlobService
from registry_mirror.config import Settings

log = logging.getLogger("registry_mirror.catalog")
REOFFER_AFTER = 60.0  # seconds between offers of an unchanged catalog (a restarted tracker relearns it)


def catalog_options(settings: Settings) -> CatalogOptions:
    config = settings.catalog
    return CatalogOptions(
        sources=tuple(config.sources),
        trusted_keys=load_trusted_keys(config.trusted_keys),
        state_dir=settings.catalog_state_dir(),
        poll_interval=config.poll_interval,
        prefetch_concurrency=config.prefetch_concurrency,
        insecure=config.insecure,
    )


def build_catalogs(options: CatalogOptions, blobs: BlobService, deltas: DeltaSources) -> CatalogService:
    """The catalog service, prefetching through `blobs` (whose layers include `deltas`, built
    first with catalog.service.delta_sources); its pollers start with the app's lifespan."""
    service = CatalogService(blobs.store, options, catalog_source_for(blobs), deltas=deltas)
    log.info("following %d catalog(s): %s", len(service.pollers), ", ".join(options.sources))
    return service


class ClusterCatalogs:
    """The catalog service as the admin API sees it, plus the cluster: each active catalog is
    offered to the tracker (so it can tell how many peers hold all of it) and its status carries
    the tracker's readiness view."""

    def __init__(self, service: CatalogService, node: P2PNode, interval: float) -> None:
        self.service = service
        self.node = node
        self.interval = interval
        self._offered: dict[str, tuple[int, float]] = {}  # name -> (serial the tracker accepted, when)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._offer_forever())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def offer_once(self) -> None:
        now = time.monotonic()
        for poller in self.service.pollers:
            catalog = poller.active
            if catalog is None:
                continue
            serial, when = self._offered.get(catalog.name, (-1, 0.0))
            if serial == catalog.serial and now - when < REOFFER_AFTER:
                continue  # offered; again only now and then, for a tracker that restarted since
            try:
                await self.node.tracker.offer_catalog(
                    catalog.name, catalog.serial, self.node.config.peer_id, [blob.digest for blob in catalog.blobs]
                )
            except TrackerError as exc:
                log.debug("catalog %s serial %d not offered to the tracker yet: %s", catalog.name, catalog.serial, exc)
                continue
            if serial != catalog.serial:
                log.info("catalog %s serial %d offered to the tracker", catalog.name, catalog.serial)
            self._offered[catalog.name] = (catalog.serial, now)

    async def _offer_forever(self) -> None:
        while True:
            await self.offer_once()
            await asyncio.sleep(self.interval)

    async def status(self) -> dict[str, Any]:
        status = self.service.status()
        for entry in status["catalogs"]:
            active = entry.get("active")
            if active is None:
                continue
            try:
                entry["cluster"] = await self.node.tracker.catalog_readiness(active["name"], active["serial"])
            except TrackerError as exc:
                entry["cluster"] = {"error": str(exc)}
        return status

    async def rollback(self, name: str | None = None) -> dict[str, Any]:
        return await self.service.rollback(name)


def catalog_source_for(blobs: BlobService) -> SourceFor:
    """Where a catalog prefetch of `blob` reads: the blob service's sources for a blob, the
    registry's manifest endpoint for a manifest."""

    def source_for(blob: Blob, registry: str) -> FillSource:
        digest = Digest.parse(blob.digest)
        if is_manifest(blob.media_type):
            return _manifest_source(blobs, registry, blob, digest)
        return blobs.fill_source(blobs.resolve(registry, blob.repository), digest, blob.size)

    return source_for


class _BodyStream:
    source = "origin"

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.size: int | None = len(body)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._body


def _manifest_source(blobs: BlobService, registry: str, blob: Blob, digest: Digest) -> FillSource:
    # Registries serve manifests on /manifests/, not /blobs/; they are small (capped by the client).
    @contextlib.asynccontextmanager
    async def open_manifest(offset: int = 0) -> AsyncIterator[_BodyStream]:
        target = blobs.resolve(registry, blob.repository)
        response = await target.client.get_manifest(target.repository, str(digest), [blob.media_type])
        yield _BodyStream(response.body[offset:])

    return open_manifest

"""All catalog pollers of one mirror, and the delta source they share; what the admin API calls."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from catalog.delta_source import DeltaSources
from catalog.errors import CatalogError
from catalog.models import format_time
from catalog.poller import CatalogPoller, parse_source
from catalog.prefetch import SourceFor
from catalog.signing import load_public_key
from nvme_cache import BlobStore


@dataclass(frozen=True)
class CatalogOptions:
    sources: tuple[str, ...]  # REGISTRY/REPO:TAG
    trusted_keys: tuple[Ed25519PublicKey, ...]
    state_dir: Path
    poll_interval: float = 60.0
    prefetch_concurrency: int = 4
    insecure: bool = False  # plain HTTP to the catalog registry


def delta_sources(store: BlobStore, options: CatalogOptions) -> DeltaSources:
    """The delta sources the catalogs of `options` fill: built before the service when the
    mirror's blob sources (which the service prefetches through) must include them."""
    return DeltaSources(store, options.state_dir / "delta-work", insecure=options.insecure)


class CatalogService:
    def __init__(
        self, store: BlobStore, options: CatalogOptions, source_for: SourceFor, *, deltas: DeltaSources | None = None
    ) -> None:
        if not options.trusted_keys:
            raise CatalogError("catalog sources need at least one trusted key")
        self.options = options
        self.deltas = deltas if deltas is not None else delta_sources(store, options)
        self.pollers = [
            CatalogPoller(
                parse_source(text),
                store=store,
                trusted_keys=options.trusted_keys,
                state_dir=options.state_dir,
                source_for=source_for,
                deltas=self.deltas,
                insecure=options.insecure,
                poll_interval=options.poll_interval,
                prefetch_concurrency=options.prefetch_concurrency,
            )
            for text in options.sources
        ]

    async def start(self) -> None:
        self.options.state_dir.mkdir(parents=True, exist_ok=True)
        self.deltas.prepare()
        for poller in self.pollers:
            await poller.start()

    async def aclose(self) -> None:
        await asyncio.gather(*(poller.aclose() for poller in self.pollers))

    def status(self) -> dict[str, Any]:
        """JSON-ready: every source with its active/previous catalog, prefetch progress, refusals."""
        return {
            "catalogs": [poller.status() for poller in self.pollers],
            "deltas": {
                "rebuilt": self.deltas.rebuilt,
                "bytes_saved": self.deltas.bytes_saved,
                "fallbacks": self.deltas.fallbacks,
            },
        }

    async def rollback(self, name: str | None = None) -> dict[str, Any]:
        """Roll back the catalog called `name` (or the only one); returns what is now active.

        Raises CatalogError (no such catalog, nothing to roll back to, previous one expired).
        """
        poller = self._poller(name)
        catalog = await poller.rollback()
        return {
            "source": str(poller.source),
            "name": catalog.name,
            "serial": catalog.serial,
            "expires": format_time(catalog.expires),
        }

    def _poller(self, name: str | None) -> CatalogPoller:
        if name is None:
            if len(self.pollers) != 1:
                raise CatalogError(f"{len(self.pollers)} catalogs configured: name the one to roll back")
            return self.pollers[0]
        for poller in self.pollers:
            if (poller.active and poller.active.name == name) or str(poller.source) == name:
                return poller
        raise CatalogError(f"no active catalog named {name!r}")


def load_trusted_keys(paths: Sequence[Path]) -> tuple[Ed25519PublicKey, ...]:
    return tuple(load_public_key(Path(p)) for p in paths)

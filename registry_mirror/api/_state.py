"""What the app's lifespan builds and every handler reads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp

from nvme_cache import BlobStore
from registry_mirror.api._blob_service import BlobService
from registry_mirror.api._manifest_cache import ManifestCache
from registry_mirror.config import Settings
from registry_mirror.policy import Provenance, UpstreamLimits
from registry_mirror.signatures import SignatureGate
from registry_mirror.upstream import Upstreams

Hook = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Listener:
    """A second address the process serves (the peer listener, the admin API)."""

    name: str
    app: ASGIApp
    host: str
    port: int
    ssl: dict[str, Any] = field(default_factory=dict)  # uvicorn ssl_* keyword arguments


@dataclass(frozen=True)
class Service:
    """A part with a lifetime: the app's lifespan starts it after the cache opened and stops it,
    in reverse order, before the cache closes (registry_mirror.runtime._app writes the order down)."""

    name: str
    start: Hook | None = None
    stop: Hook | None = None


@dataclass(frozen=True)
class Mirror:
    """What every handler reads: built once by registry_mirror.runtime._app, never changed after."""

    settings: Settings
    store: BlobStore
    upstreams: Upstreams
    manifests: ManifestCache
    blobs: BlobService
    # Which (upstream, repository) pairs may see a cached digest (registry_mirror.policy._provenance).
    provenance: Provenance = field(default_factory=lambda: Provenance(None, 60.0))
    signatures: SignatureGate | None = None  # `[[signatures]]` policies; None when none is set

    @property
    def upstream_limits(self) -> UpstreamLimits | None:
        return self.blobs.limits


@dataclass(frozen=True)
class Assembly:
    """The built app's parts beyond the main listener: what the server binds and the lifespan runs."""

    mirror: Mirror
    listeners: tuple[Listener, ...] = ()
    services: tuple[Service, ...] = ()

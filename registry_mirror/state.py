"""What the app's lifespan builds and every handler reads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp

from nvme_cache import BlobStore, Digest, FillSource
from registry_mirror.manifest_cache import ManifestCache
from registry_mirror.policy.ratelimit import UpstreamLimits
from registry_mirror.provenance import Provenance
from registry_mirror.settings import Settings
from registry_mirror.signatures.gate import SignatureGate
from registry_mirror.upstreams import Upstreams

# Wraps the origin source of a blob with other sources tried first (peers, deltas).
SourceWrapper = Callable[[Digest, FillSource, int | None], FillSource]
Hook = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Listener:
    """A second address the process serves (the peer listener, the admin API)."""

    name: str
    app: ASGIApp
    host: str
    port: int
    ssl: dict[str, Any] = field(default_factory=dict)  # uvicorn ssl_* keyword arguments


@dataclass
class Mirror:
    settings: Settings
    store: BlobStore
    upstreams: Upstreams
    manifests: ManifestCache
    source_wrappers: list[SourceWrapper] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)
    # Run by the app's lifespan after the cache opened, and (in reverse) before it closes.
    on_startup: list[Hook] = field(default_factory=list)
    on_shutdown: list[Hook] = field(default_factory=list)
    upstream_limits: UpstreamLimits | None = None  # per-upstream caps on origin fetches (policy)
    # Which (upstream, repository) pairs may see a cached digest (registry_mirror.provenance).
    provenance: Provenance = field(default_factory=lambda: Provenance(None, 60.0))
    signatures: SignatureGate | None = None  # `[[signatures]]` policies; None when none is set

    def fill_source(self, digest: Digest, origin: FillSource, size: int | None = None) -> FillSource:
        """The source a fill of `digest` reads: p2p and delta wrappers first, the origin last."""
        source = origin
        for wrap in self.source_wrappers:
            source = wrap(digest, source, size)
        return source

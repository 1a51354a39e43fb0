"""What the app's lifespan builds and every handler reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from nvme_cache import BlobStore, Digest, FillSource
from registry_mirror.manifest_cache import ManifestCache
from registry_mirror.settings import Settings
from registry_mirror.upstreams import Upstreams

# Wraps the origin source of a blob with other sources tried first (peers, deltas).
SourceWrapper = Callable[[Digest, FillSource, int | None], FillSource]


@dataclass
class Mirror:
    settings: Settings
    store: BlobStore
    upstreams: Upstreams
    manifests: ManifestCache
    source_wrappers: list[SourceWrapper] = field(default_factory=list)

    def fill_source(self, digest: Digest, origin: FillSource, size: int | None = None) -> FillSource:
        """The source a fill of `digest` reads: p2p and delta wrappers first, the origin last."""
        source = origin
        for wrap in self.source_wrappers:
            source = wrap(digest, source, size)
        return source

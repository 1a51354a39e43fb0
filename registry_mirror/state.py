"""What the app's lifespan builds and every handler reads."""

from __future__ import annotations

from dataclasses import dataclass

from nvme_cache import BlobStore
from registry_mirror.manifest_cache import ManifestCache
from registry_mirror.settings import Settings
from registry_mirror.upstreams import Upstreams


@dataclass
class Mirror:
    settings: Settings
    store: BlobStore
    upstreams: Upstreams
    manifests: ManifestCache

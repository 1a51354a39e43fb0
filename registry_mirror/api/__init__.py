"""The OCI Distribution API (`/v2`): request parsing, blob and manifest handlers, responses
and the one OCI error type."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from registry_mirror.api._blob_service import BlobService as BlobService
    from registry_mirror.api._blob_service import OriginFor as OriginFor
    from registry_mirror.api._blob_service import SourceLayer as SourceLayer
    from registry_mirror.api._blob_service import range_framing as range_framing
    from registry_mirror.api._blob_service import record_body as record_body
    from registry_mirror.api._dispatch import DistributionAPI as DistributionAPI
    from registry_mirror.api._dispatch import distribution_subject as distribution_subject
    from registry_mirror.api._errors import ErrorCode as ErrorCode
    from registry_mirror.api._errors import OCIError as OCIError
    from registry_mirror.api._errors import to_response_parts as to_response_parts
    from registry_mirror.api._manifest_cache import Manifest as Manifest
    from registry_mirror.api._manifest_cache import ManifestCache as ManifestCache
    from registry_mirror.api._paths import DOCKER_HUB_HOSTS as DOCKER_HUB_HOSTS
    from registry_mirror.api._paths import DistributionRequest as DistributionRequest
    from registry_mirror.api._paths import normalize_repository as normalize_repository
    from registry_mirror.api._paths import parse_range as parse_range
    from registry_mirror.api._paths import parse_reference as parse_reference
    from registry_mirror.api._paths import parse_registry_host as parse_registry_host
    from registry_mirror.api._paths import validate_repository as validate_repository
    from registry_mirror.api._responses import BlobResponse as BlobResponse
    from registry_mirror.api._state import Assembly as Assembly
    from registry_mirror.api._state import Listener as Listener
    from registry_mirror.api._state import Mirror as Mirror
    from registry_mirror.api._state import Service as Service
    from registry_mirror.api._translations import translate as translate

# Each module is imported when one of its names is first used (PEP 562): importing the package
# costs nothing and cannot close an import cycle.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "_blob_service": ["BlobService", "OriginFor", "SourceLayer", "range_framing", "record_body"],
        "_dispatch": ["DistributionAPI", "distribution_subject"],
        "_errors": ["ErrorCode", "OCIError", "to_response_parts"],
        "_manifest_cache": ["Manifest", "ManifestCache"],
        "_paths": [
            "DOCKER_HUB_HOSTS",
            "DistributionRequest",
            "normalize_repository",
            "parse_range",
            "parse_reference",
            "parse_registry_host",
            "validate_repository",
        ],
        "_responses": ["BlobResponse"],
        "_state": ["Assembly", "Listener", "Mirror", "Service"],
        "_translations": ["translate"],
    },
)

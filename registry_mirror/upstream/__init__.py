"""Origins: the client for one upstream registry, which upstream answers a request, its auth,
ranged bodies, fill sources, single flight, redirects and tiered mirrors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

if TYPE_CHECKING:
    from registry_mirror.upstream._client import UpstreamDenied as UpstreamDenied
    from registry_mirror.upstream._client import UpstreamError as UpstreamError
    from registry_mirror.upstream._client import UpstreamNotFound as UpstreamNotFound
    from registry_mirror.upstream._client import UpstreamTooLarge as UpstreamTooLarge
    from registry_mirror.upstream._client import UpstreamTooManyRequests as UpstreamTooManyRequests
    from registry_mirror.upstream._client import UpstreamUnauthorized as UpstreamUnauthorized
    from registry_mirror.upstream._client import UpstreamUnavailable as UpstreamUnavailable
    from registry_mirror.upstream._selection import Target as Target
    from registry_mirror.upstream._selection import Upstreams as Upstreams
    from registry_mirror.upstream._singleflight import SingleFlight as SingleFlight
    from registry_mirror.upstream._sources import origin_source as origin_source
    from registry_mirror.upstream._staleness import count_stale as count_stale

# Each module is imported when one of its names is first used (PEP 562): importing the package
# costs nothing and cannot close an import cycle.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "_client": [
            "UpstreamDenied",
            "UpstreamError",
            "UpstreamNotFound",
            "UpstreamTooLarge",
            "UpstreamTooManyRequests",
            "UpstreamUnauthorized",
            "UpstreamUnavailable",
        ],
        "_selection": ["Target", "Upstreams"],
        "_singleflight": ["SingleFlight"],
        "_sources": ["origin_source"],
        "_staleness": ["count_stale"],
    },
)

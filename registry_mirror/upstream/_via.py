"""Tiered mirrors: an upstream fetched through another registry-mirror (node -> regional -> origin).

The node asks the `via` mirror with the registry's name in `?ns=`, exactly as containerd asks a node
mirror, so the regional mirror's cache, single flight and policy serve the whole region. When the via
mirror fails (no connection, 5xx, timeout, 404 or 401 from it), the node asks the origin itself;
after a transport failure or 5xx it skips the via mirror for `cooldown` seconds so that a dead
regional mirror costs one connect timeout, not one per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from yarl import URL

DEFAULT_COOLDOWN = 10.0


class ViaRoute:
    def __init__(
        self,
        url: str,
        registry: str,
        *,
        cooldown: float = DEFAULT_COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = URL(url.rstrip("/"))
        self.registry = registry
        self._cooldown = cooldown
        self._clock = clock
        self._skip_until = 0.0

    def url(self, repository: str, path_suffix: str, params: dict[str, str] | None = None) -> URL:
        return self.base.with_path(f"/v2/{repository}/{path_suffix}").with_query(
            {**(params or {}), "ns": self.registry}
        )

    def usable(self) -> bool:
        return self._clock() >= self._skip_until

    def failed(self, down: bool) -> None:
        """`down`: the via mirror itself is unwell (transport error, 5xx), not just this answer."""
        if down:
            self._skip_until = self._clock() + self._cooldown

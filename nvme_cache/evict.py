"""Which blobs to evict: least recently used first, never pinned or busy ones."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nvme_cache.index import Entry


@dataclass(frozen=True)
class EvictionPolicy:
    max_size: int
    high_watermark: float = 0.90
    low_watermark: float = 0.80
    min_free_bytes: int = 0

    @property
    def high_bytes(self) -> int:
        return int(self.max_size * self.high_watermark)

    @property
    def low_bytes(self) -> int:
        return int(self.max_size * self.low_watermark)


def plan_eviction(
    lru: Iterable[tuple[str, Entry]],
    used: int,
    target_used: int,
    protected: set[str],
    *,
    free_bytes: int | None = None,
    min_free_bytes: int = 0,
) -> list[str]:
    """Digests to remove, oldest first, until `used` <= target and the disk's free floor holds."""
    victims: list[str] = []
    free = free_bytes
    for digest, entry in lru:
        below_target = used <= target_used
        floor_ok = free is None or free >= min_free_bytes
        if below_target and floor_ok:
            break
        if digest in protected:
            continue
        victims.append(digest)
        used -= entry.size
        if free is not None:
            free += entry.size
    return victims

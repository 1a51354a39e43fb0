"""Revision -> commit resolution, cached like tags: fresh for `ttl`, then revalidated; served
stale (up to `max_stale`) while the origin fails. A 40-hex commit needs no resolution."""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cachetools import LRUCache

from registry_mirror.hub import metrics
from registry_mirror.hub.hf_upstream import HubUnavailable

COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Resolution:
    commit: str
    body: bytes  # the origin's revision JSON (Xet fields already stripped), replayed on cache hits
    fetched: float


RevisionKey = tuple[str, str, str]  # (repo type, repo id, revision)
Fetch = Callable[[], Awaitable[Resolution | None]]  # None: the origin refused (relayed by the caller)


def is_commit(revision: str) -> bool:
    return COMMIT.fullmatch(revision) is not None


class RevisionCache:
    def __init__(self, ttl: float, max_stale: float = 24 * 3600.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_stale = max_stale
        self._entries: LRUCache[RevisionKey, Resolution] = LRUCache(max_entries)

    def fresh(self, key: RevisionKey) -> Resolution | None:
        entry = self._entries.get(key)
        if entry is not None and time.monotonic() - entry.fetched < self.ttl:
            return entry
        return None

    async def resolve(self, key: RevisionKey, fetch: Fetch) -> Resolution | None:
        """The fresh answer, else the origin's, else (origin down) the stale one."""
        if (entry := self.fresh(key)) is not None:
            return entry
        try:
            resolved = await fetch()
        except HubUnavailable:
            stale = self._entries.get(key)
            if stale is None or time.monotonic() - stale.fetched > self.ttl + self.max_stale:
                raise
            metrics.stale_revisions_served.add(1)
            return stale
        if resolved is not None:
            self._entries[key] = resolved
        return resolved

    def remember(self, key: RevisionKey, resolution: Resolution) -> None:
        self._entries[key] = resolution

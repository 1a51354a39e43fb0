"""Hub origin answers kept with the cache: revision -> commit, a commit's tree pages and
paths-info, ModelScope listings and other GET answers about a repo.

They persist in the cache index (nvme_cache refs), so a restart keeps them. An answer pinned to a
40-hex commit never changes and is always fresh; any other is fresh for `ttl`, then asked again,
and served stale (up to `ttl + max_stale`, counted in `registry_mirror_stale_answers`) while the
origin fails.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from cachetools import LRUCache

from nvme_cache import BlobStore
from registry_mirror.hub._hf_upstream import HubUnavailable
from registry_mirror.upstream import count_stale

COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Resolution:
    commit: str  # "" where the answer names none (a listing)
    body: bytes  # the origin's JSON (Xet fields already stripped where needed), replayed on hits
    headers: tuple[tuple[str, str], ...] = ()  # the relayed headers of the origin's answer
    fetched: float = 0.0  # wall-clock time of the origin's answer, stamped by the cache


RevisionKey = tuple[str, ...]  # (repo type, repo id, revision or request)
Fetch = Callable[[], Awaitable[Resolution | None]]  # None: the origin refused (relayed by the caller)


def is_commit(revision: str) -> bool:
    return COMMIT.fullmatch(revision) is not None


class RevisionCache:
    def __init__(
        self,
        store: BlobStore,
        scope: str,
        ttl: float,
        max_stale: float = 24 * 3600.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl = ttl
        self.max_stale = max_stale
        self._store = store
        self._scope = scope  # the refs scope: one per hub
        self._clock = clock
        self._entries: LRUCache[RevisionKey, Resolution] = LRUCache(max_entries)  # in front of the refs

    def fresh(self, key: RevisionKey, *, immutable: bool = False) -> Resolution | None:
        entry = self._load(key)
        if entry is not None and (immutable or self._clock() - entry.fetched < self.ttl):
            return entry
        return None

    async def resolve(
        self, key: RevisionKey, fetch: Fetch, *, route: str, immutable: bool = False
    ) -> Resolution | None:
        """The fresh answer, else the origin's, else (origin down) the stale one."""
        if (entry := self.fresh(key, immutable=immutable)) is not None:
            return entry
        try:
            resolved = await fetch()
        except HubUnavailable as exc:
            stale = self._load(key)
            if stale is None or self._clock() - stale.fetched > self.ttl + self.max_stale:
                raise
            count_stale(route, exc.status, str(exc))
            return stale
        if resolved is not None:
            resolved = self.remember(key, resolved)
        return resolved

    def stale(self, key: RevisionKey, exc: HubUnavailable, *, route: str) -> Resolution | None:
        """The remembered answer while the origin fails (counted), None past the stale window."""
        entry = self._load(key)
        if entry is None or self._clock() - entry.fetched > self.ttl + self.max_stale:
            return None
        count_stale(route, exc.status, str(exc))
        return entry

    def remember(self, key: RevisionKey, resolution: Resolution) -> Resolution:
        stamped = replace(resolution, fetched=self._clock())
        meta = json.dumps({"commit": stamped.commit, "headers": list(stamped.headers)})
        self._store.refs.put(self._scope, _name(key), stamped.body, confirmed=stamped.fetched, meta=meta)
        self._entries[key] = stamped
        return stamped

    def _load(self, key: RevisionKey) -> Resolution | None:
        entry = self._entries.get(key)
        if entry is not None:
            return entry
        ref = self._store.refs.get(self._scope, _name(key))
        if ref is None:
            return None
        meta = json.loads(ref.meta or "{}")
        headers = tuple((str(k), str(v)) for k, v in meta.get("headers", []))
        entry = Resolution(str(meta.get("commit", "")), ref.value, headers, ref.confirmed)
        self._entries[key] = entry
        return entry


def _name(key: RevisionKey) -> str:
    return "\x1f".join(key)

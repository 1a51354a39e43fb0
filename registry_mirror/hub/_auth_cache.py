"""Who may read a hub repo's cached files.

The origin decides: a client's credentials are checked upstream once per (credential hash, repo)
and remembered for `ttl` seconds. A repo the origin served to an anonymous request is public
(kept in the cache index, so a restart remembers it); while the origin is down, public repos stay
readable and nothing else is.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping

from cachetools import TTLCache

from nvme_cache import BlobStore
from registry_mirror.hub import _metrics as metrics
from registry_mirror.hub._hf_upstream import HubUnavailable

ANONYMOUS = "anonymous"
Check = Callable[[], Awaitable[bool]]  # asks the origin; raises HubUnavailable when it cannot answer


def credential_key(creds: Mapping[str, str]) -> str:
    if not creds:
        return ANONYMOUS
    text = "\n".join(f"{name}:{value}" for name, value in sorted(creds.items()))
    return hashlib.sha256(text.encode()).hexdigest()


class AccessCache:
    def __init__(
        self, ttl: float, max_entries: int = 100_000, *, store: BlobStore | None = None, scope: str = "hub-public"
    ) -> None:
        self._allowed: TTLCache[tuple[str, str], bool] = TTLCache(max_entries, ttl)
        self._public: set[str] = set()
        self._store = store  # where public repos persist (None: memory only)
        self._scope = scope

    def allow(self, creds: Mapping[str, str], repo: str) -> None:
        """Records that the origin just served `repo` to these credentials."""
        key = credential_key(creds)
        self._allowed[(key, repo)] = True
        if key == ANONYMOUS and repo not in self._public:
            self._public.add(repo)
            if self._store is not None:
                self._store.refs.put(self._scope, repo, b"", confirmed=time.time())

    def known(self, creds: Mapping[str, str], repo: str) -> bool:
        return (credential_key(creds), repo) in self._allowed or (not creds and self.is_public(repo))

    def is_public(self, repo: str) -> bool:
        if repo in self._public:
            return True
        if self._store is not None and self._store.refs.get(self._scope, repo) is not None:
            self._public.add(repo)
            return True
        return False

    async def check(self, creds: Mapping[str, str], repo: str, ask_origin: Check) -> bool:
        if (credential_key(creds), repo) in self._allowed:
            metrics.auth_checks.add(1, {"result": "remembered"})
            return True
        try:
            allowed = await ask_origin()
        except HubUnavailable:
            if self.is_public(repo):
                metrics.auth_checks.add(1, {"result": "public_while_origin_down"})
                return True
            raise
        metrics.auth_checks.add(1, {"result": "allowed" if allowed else "denied"})
        if allowed:
            self.allow(creds, repo)
        return allowed

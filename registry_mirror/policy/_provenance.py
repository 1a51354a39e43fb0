"""Which (upstream, repository) pairs may see a cached digest.

The cache is content-addressed, so without this a blob or manifest fetched for a private
repository would be served for `/v2/<any>/<name>/blobs/<digest>?ns=<any upstream>`, defeating
`allow_repositories`, repository blocklist rules and the isolation of private upstreams.

- A digest fetched from an origin for a pair is recorded for that pair (SQLite next to the cache
  index, so a restart keeps serving what was fetched, even while the origin is down).
- Any other pair is served the cached bytes only after its upstream confirms, with a HEAD sent
  with the mirror's credentials for that upstream, that the repository holds the digest. A
  confirmation is remembered for `confirm_ttl` seconds (in memory), like the hub's token check.
- A refusal is a 404 (containerd asks its next host, which answers for itself), counted and logged.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from cachetools import LRUCache, TTLCache

import oci
from nvme_cache import Digest
from registry_mirror.api import ErrorCode, OCIError
from registry_mirror.telemetry import _metrics as metrics
from registry_mirror.upstream import (
    SingleFlight,
    Target,
    UpstreamDenied,
    UpstreamError,
    UpstreamNotFound,
    UpstreamUnauthorized,
)

log = logging.getLogger("registry_mirror.provenance")

Kind = Literal["blob", "manifest"]
Pair = tuple[str, str, str]  # digest, upstream, repository (as the upstream names it)
# Every manifest type: the HEAD asks "does this repository hold this digest", not for a format.
MANIFEST_TYPES = [*oci.MANIFEST_TYPES, oci.DOCKER_MANIFEST_V1_SIGNED]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS fetched_for (
    digest TEXT NOT NULL, upstream TEXT NOT NULL, repository TEXT NOT NULL,
    PRIMARY KEY (digest, upstream, repository)
) WITHOUT ROWID
"""


class Provenance:
    def __init__(self, path: Path | None, confirm_ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        """`path`: the SQLite file (None: in memory only, for tools and tests)."""
        self._path = path
        self._db: sqlite3.Connection | None = None
        self._known: LRUCache[Pair, bool] = LRUCache(maxsize=100_000)  # in front of the table
        self._confirmed: TTLCache[Pair, bool] = TTLCache(maxsize=100_000, ttl=max(confirm_ttl, 0.001), timer=clock)
        self._flights: SingleFlight[bool] = SingleFlight()
        # Pairs whose own origin fetch is starting: requests of the same pair that join that fill
        # are answered by the same origin response, so they need no confirmation of their own.
        self._pending: dict[Pair, int] = {}

    # -- records ---------------------------------------------------------------------------------
    def open(self) -> None:
        target = ":memory:" if self._path is None else str(self._path)
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a lost last record costs one HEAD, no more
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def record(self, target: Target, digest: Digest) -> None:
        """`digest` was fetched from `target`'s origin for its repository."""
        pair = _pair(target, digest)
        if self._known.get(pair):
            return
        self._known[pair] = True
        if self._db is not None:
            self._db.execute("INSERT OR IGNORE INTO fetched_for VALUES (?, ?, ?)", pair)

    def begin(self, target: Target, digest: Digest) -> None:
        """A fill for this pair is being started (its origin answers for it)."""
        pair = _pair(target, digest)
        self._pending[pair] = self._pending.get(pair, 0) + 1

    def end(self, target: Target, digest: Digest, *, fetched: bool) -> None:
        pair = _pair(target, digest)
        left = self._pending.get(pair, 1) - 1
        if left > 0:
            self._pending[pair] = left
        else:
            self._pending.pop(pair, None)
        if fetched:
            self.record(target, digest)

    def known(self, target: Target, digest: Digest) -> bool:
        pair = _pair(target, digest)
        if self._known.get(pair) or pair in self._pending:
            return True
        if self._db is None:
            return False
        row = self._db.execute(
            "SELECT 1 FROM fetched_for WHERE digest = ? AND upstream = ? AND repository = ?", pair
        ).fetchone()
        if row is not None:
            self._known[pair] = True
        return row is not None

    # -- the check -------------------------------------------------------------------------------
    async def admit(self, target: Target, digest: Digest, kind: Kind, *, origin_answers: bool) -> None:
        """Return when `target` may be served `digest`; raise the OCIError that refuses it.
        `origin_answers`: this request goes to the origin for this very pair anyway (a plain
        miss), which is confirmation enough; the caller records the pair once it succeeded."""
        if origin_answers or self.known(target, digest):
            return
        pair = _pair(target, digest)
        if self._confirmed.get(pair):
            return
        if await self._flights.do(pair, lambda: self._ask(target, digest, kind)):
            self._confirmed[pair] = True
            return
        metrics.cross_repository_refusals.add(1, {"upstream": target.name, "kind": kind})
        log.warning(
            "refused cached %s %s for %s/%s: the upstream does not confirm the repository holds it",
            kind,
            digest,
            target.name,
            target.repository,
        )
        code = ErrorCode.BLOB_UNKNOWN if kind == "blob" else ErrorCode.MANIFEST_UNKNOWN
        raise OCIError(code, f"{target.repository} on {target.name} does not hold {digest}")

    async def _ask(self, target: Target, digest: Digest, kind: Kind) -> bool:
        metrics.upstream_requests.add(1, {"kind": f"{kind}_confirm", "upstream": target.name})
        try:
            if kind == "blob":
                await target.client.head_blob(target.repository, str(digest))
            else:
                await target.client.get_manifest(target.repository, str(digest), MANIFEST_TYPES, method="HEAD")
        except (UpstreamNotFound, UpstreamDenied, UpstreamUnauthorized):
            metrics.cross_repository_confirmations.add(1, {"upstream": target.name, "result": "refused"})
            return False
        except UpstreamError:
            # Unreachable or failing: nothing confirms the repository holds it, so do not serve
            # it there (fail closed); pairs that fetched it themselves keep being served.
            metrics.cross_repository_confirmations.add(1, {"upstream": target.name, "result": "error"})
            return False
        metrics.cross_repository_confirmations.add(1, {"upstream": target.name, "result": "confirmed"})
        return True


def _pair(target: Target, digest: Digest) -> Pair:
    # The repository as the upstream names it: `alpine` and `library/alpine` are one pair.
    return (str(digest), target.name, target.client.upstream_repository(target.repository))

"""Serving hub files from nvme_cache.

- LFS files (and ModelScope files with a listed Sha256) are blobs named `sha256:<oid>`: a miss
  starts (or joins) the one verified fill through the blob service (peers first), so peers share them.
- Small non-LFS files have no sha256 upstream. Their (repo, commit, path) is immutable, so they
  are fetched whole (capped), verified by size and git blob oid (sha1 of "blob <size>\\0" + bytes),
  stored under the sha256 of their bytes, and found again through a map kept in the cache index
  (nvme_cache refs), so a restart with the origin down still finds them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from cachetools import LRUCache
from starlette.types import ASGIApp
from yarl import URL

from nvme_cache import Digest, FillFailed, FillSource
from registry_mirror.api import BlobResponse, Mirror, OCIError, OriginFor, parse_range, range_framing, record_body
from registry_mirror.hub import _metrics as metrics
from registry_mirror.hub._errors import RANGE_NOT_SATISFIABLE, UPSTREAM_ERROR, hub_error
from registry_mirror.hub._hf_upstream import HubClient, HubUnavailable
from registry_mirror.telemetry import _metrics as front_metrics

log = logging.getLogger("registry_mirror.hub")

SMALL_FILE_MAX_BYTES = 16 * 1024 * 1024  # the Hub keeps non-LFS files under 10 MB


class HubSourceStream:
    source = "origin"

    def __init__(self, size: int | None, chunks: AsyncIterator[bytes]) -> None:
        self.size = size
        self._chunks = chunks

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks


def hub_source(
    client: HubClient,
    url: URL,
    creds: Mapping[str, str],
    kind: str,
    size: int | None = None,
) -> FillSource:
    """A fill source reading one file from the hub origin (GET, redirects followed). `size` (from the
    listing) stands in for a missing Content-Length: p2p seeds, hashing pieces, only a known size."""

    @contextlib.asynccontextmanager
    async def open_origin(offset: int = 0) -> AsyncIterator[HubSourceStream]:
        """The file from `offset` on: p2p opens origin sources with an offset to resume a download."""
        headers = {"Range": f"bytes={offset}-"} if offset else None
        expected = 206 if offset else 200
        async with client.open("GET", url, creds, kind=kind, headers=headers) as response:
            if response.status != expected:
                raise HubUnavailable(f"GET {url.path} answered {response.status}, expected {expected}", response.status)
            remaining = response.content_length
            if remaining is None and size is not None:
                remaining = size - offset
            yield HubSourceStream(remaining, response.content.iter_chunked(client.chunk_size))

    return open_origin


async def serve_blob(
    mirror: Mirror,
    digest: Digest,
    size: int | None,
    origin: OriginFor | None,
    headers: Mapping[str, str],
    *,
    request_headers: Mapping[str, str],
    head: bool,
    kind: str,
) -> ASGIApp:
    """HEAD from what we know; GET from the cache or the one fill of `digest` (verified); `origin`
    builds the hub source on a miss."""
    started = time.perf_counter()
    if head:
        return BlobResponse(200, {**headers, **_length(size)}, None, started=started)
    blob = mirror.blobs.open_from(digest, origin, size_hint=size, expected_size=size)
    try:
        await blob.handle.wait_started()
    except FillFailed as exc:
        front_metrics.failed_downloads.add(1, {"reason": "upstream", "upstream": kind})
        log.info("hub fill of %s failed: %s", digest, exc)  # the cause stays here, not in the answer
        return hub_error(502, UPSTREAM_ERROR, "origin fetch failed")
    try:
        byte_range = parse_range(request_headers.get("range"), blob.size)
    except OCIError as exc:
        return hub_error(416, RANGE_NOT_SATISFIABLE, "range not satisfiable", exc.headers)
    framing = range_framing(blob.size, byte_range)
    served_from = blob.source
    return BlobResponse(
        framing.status,
        {**headers, **framing.headers, "Accept-Ranges": "bytes"},
        blob.handle.read(framing.start, framing.end),
        started=started,
        source=served_from,
        on_done=record_body(served_from, kind, started, kind=kind),
    )


def _length(size: int | None) -> dict[str, str]:
    return {} if size is None else {"Content-Length": str(size)}


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324 (git's own id)


@dataclass(frozen=True)
class SmallFileKey:
    repo_type: str
    repo: str
    commit: str
    path: str


class SmallFiles:
    """(repo, commit, path) -> sha256 of the verified bytes stored in nvme_cache."""

    def __init__(self, mirror: Mirror, max_entries: int = 100_000) -> None:
        self._mirror = mirror
        self._digests: LRUCache[SmallFileKey, Digest] = LRUCache(max_entries)

    def cached(self, key: SmallFileKey) -> Digest | None:
        digest = self._digests.get(key)
        if digest is None:
            ref = self._mirror.store.refs.get(_SMALL_SCOPE, _small_name(key))
            digest = None if ref is None else Digest.parse(ref.value.decode())
        if digest is not None and self._mirror.store.stat(digest) is None:
            self._digests.pop(key, None)  # evicted since
            return None
        if digest is not None:
            self._digests[key] = digest
        return digest

    async def fetch(
        self,
        key: SmallFileKey,
        client: HubClient,
        url: URL,
        creds: Mapping[str, str],
        size: int,
        git_oid: str,
    ) -> Digest:
        """Downloads, verifies against the listing's size and git oid, stores; raises on mismatch."""
        reply = await client.request("GET", url, creds, kind="small_file", limit=SMALL_FILE_MAX_BYTES)
        if reply.status != 200:
            raise HubUnavailable(f"GET {url.path} answered {reply.status}", reply.status)
        if len(reply.body) != size or git_blob_oid(reply.body) != git_oid:
            metrics.verification_failures.add(1, {"kind": "small_file"})
            raise HubUnavailable(f"{key.path}@{key.commit}: bytes do not match size {size} / oid {git_oid}")
        digest = Digest.from_bytes(reply.body)
        await self._mirror.store.put_bytes(digest, reply.body)
        self._digests[key] = digest
        self._mirror.store.refs.put(_SMALL_SCOPE, _small_name(key), str(digest).encode(), confirmed=time.time())
        return digest


_SMALL_SCOPE = "hub-small-file"


def _small_name(key: SmallFileKey) -> str:
    return "\x1f".join((key.repo_type, key.repo, key.commit, key.path))

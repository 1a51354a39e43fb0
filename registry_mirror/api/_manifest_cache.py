"""Manifests: by digest immutable (nvme_cache plus a small in-memory body cache); tag -> digest
(one per manifest media type) persisted in the cache index (nvme_cache refs), fresh for a TTL,
then revalidated with a HEAD, and served stale up to `max_stale` while the upstream fails, also
after a restart. A cached manifest answers any client whose Accept admits its media type."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache, TTLCache

from nvme_cache import BlobNotFound, BlobStore, Digest, VerificationFailed
from oci import OCI_INDEX, OCI_MANIFEST
from registry_mirror.api._errors import ErrorCode, OCIError
from registry_mirror.api._translations import upstream_error
from registry_mirror.telemetry import _metrics as metrics
from registry_mirror.upstream import (
    SingleFlight,
    Target,
    UpstreamError,
    UpstreamNotFound,
    UpstreamTooManyRequests,
    UpstreamUnavailable,
    count_stale,
)

_BODY_CACHE_BYTES = 64 * 1024 * 1024
_DEFAULT_MEDIA_TYPE = OCI_MANIFEST
_TAG_SCOPE = "tag"

log = logging.getLogger("registry_mirror.manifests")


@dataclass(frozen=True)
class Manifest:
    digest: Digest
    media_type: str
    body: bytes


@dataclass(frozen=True)
class _TagEntry:
    digest: Digest
    media_type: str
    confirmed: float  # wall-clock time the upstream last confirmed this mapping (survives restarts)


class ManifestCache:
    def __init__(
        self,
        store: BlobStore,
        *,
        tag_ttl: float,
        max_stale: float,
        negative_ttl: float,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._store = store
        self._tag_ttl = tag_ttl
        self._max_stale = max_stale
        self._max_bytes = max_bytes
        self._tags: LRUCache[str, tuple[_TagEntry, ...]] = LRUCache(maxsize=100_000)  # in front of the refs
        self._missing: TTLCache[tuple[str, str], OCIError] = TTLCache(
            maxsize=100_000, ttl=max(negative_ttl, 0.001), timer=clock
        )
        self._bodies: LRUCache[str, Manifest] = LRUCache(
            maxsize=_BODY_CACHE_BYTES, getsizeof=lambda m: len(m.body) + 200
        )
        self._flights: SingleFlight[Manifest] = SingleFlight()

    async def get(self, target: Target, reference: str | Digest, accept: list[str]) -> Manifest:
        if isinstance(reference, Digest):
            return await self.by_digest(target, reference, accept)
        return await self._by_tag(target, reference, accept)

    # -- by digest ------------------------------------------------------------------------------
    async def by_digest(self, target: Target, digest: Digest, accept: list[str]) -> Manifest:
        cached = await self._cached(digest)
        if cached is not None:
            return cached
        key = ("digest", target.name, target.repository, str(digest))
        return await self._flights.do(key, lambda: self._fetch(target, str(digest), accept, digest))

    def is_cached(self, digest: Digest) -> bool:
        return str(digest) in self._bodies or self._store.stat(digest) is not None

    async def _cached(self, digest: Digest) -> Manifest | None:
        manifest = self._bodies.get(str(digest))
        if manifest is not None:
            return manifest
        info = self._store.stat(digest)
        if info is None:
            return None
        try:
            body = await self._store.read_bytes(digest, self._max_bytes)
        except BlobNotFound:
            return None
        manifest = Manifest(digest, info.media_type or _sniff_media_type(body), body)
        self._bodies[str(digest)] = manifest
        return manifest

    async def _fetch(self, target: Target, reference: str, accept: list[str], expected: Digest | None) -> Manifest:
        metrics.upstream_requests.add(1, {"kind": "manifest", "upstream": target.name})
        response = await target.client.get_manifest(target.repository, reference, accept)
        body = response.body
        digest = Digest.from_bytes(body, expected.algorithm if expected else "sha256")
        if expected is not None and digest != expected:
            raise OCIError(ErrorCode.UPSTREAM_INVALID, f"upstream manifest does not match {expected}")
        claimed = response.digest
        if expected is None and claimed and claimed.startswith("sha256:") and claimed != str(digest):
            raise OCIError(ErrorCode.UPSTREAM_INVALID, "upstream Docker-Content-Digest does not match the body")
        media_type = _media_type(response.media_type, body)
        try:
            await self._store.put_bytes(digest, body, media_type)
        except VerificationFailed:  # cannot happen after the check above; keep the cache clean anyway
            raise OCIError(ErrorCode.UPSTREAM_INVALID) from None
        manifest = Manifest(digest, media_type, body)
        self._bodies[str(digest)] = manifest
        return manifest

    # -- by tag ----------------------------------------------------------------------------------
    async def _by_tag(self, target: Target, tag: str, accept: list[str]) -> Manifest:
        name = f"{target.name}/{target.repository}:{tag}"
        accept_key = ",".join(sorted(accept))
        # A 404 depends on the Accept (a registry refuses an index to a client that takes none).
        missing = self._missing.get((name, accept_key))
        if missing is not None:
            raise missing
        entry = _admitted(self._tag_entries(name), accept)
        if entry is not None and self._clock() - entry.confirmed < self._tag_ttl:
            cached = await self._cached(entry.digest)
            if cached is not None:
                return cached
        return await self._flights.do(
            ("tag", name, accept_key), lambda: self._refresh_tag(name, accept_key, target, tag, accept)
        )

    async def _refresh_tag(self, name: str, accept_key: str, target: Target, tag: str, accept: list[str]) -> Manifest:
        entry = _admitted(self._tag_entries(name), accept)
        try:
            manifest = await self._revalidate(entry, target, tag, accept) if entry else None
            if manifest is None:
                manifest = await self._fetch(target, tag, accept, None)
        except (UpstreamUnavailable, UpstreamTooManyRequests) as exc:
            stale = await self._stale(entry)
            if stale is None:
                raise upstream_error(exc, ErrorCode.MANIFEST_UNKNOWN) from None
            count_stale("manifest", exc.status, exc.message)
            log.info("served %s stale (%s) while %s fails: %s", name, stale.digest, target.name, exc.message)
            return stale
        except UpstreamNotFound as exc:
            if entry is not None:
                self._forget(name)  # the tag is gone (or moved out of this format)
            error = upstream_error(exc, ErrorCode.MANIFEST_UNKNOWN)
            self._missing[(name, accept_key)] = error
            raise error from None
        except UpstreamError as exc:
            raise upstream_error(exc, ErrorCode.MANIFEST_UNKNOWN) from None
        self._remember(name, manifest)
        return manifest

    async def _revalidate(self, entry: _TagEntry, target: Target, tag: str, accept: list[str]) -> Manifest | None:
        """A HEAD that confirms the known digest saves the body; None means fetch it."""
        metrics.upstream_requests.add(1, {"kind": "manifest_head", "upstream": target.name})
        head = await target.client.get_manifest(target.repository, tag, accept, method="HEAD")
        if head.digest != str(entry.digest):
            return None
        return await self._cached(entry.digest)

    async def _stale(self, entry: _TagEntry | None) -> Manifest | None:
        if entry is None or self._clock() - entry.confirmed > self._max_stale:
            return None
        return await self._cached(entry.digest)

    # -- the durable tag table (nvme_cache refs, one variant per manifest media type) ------------
    def _tag_entries(self, name: str) -> tuple[_TagEntry, ...]:
        entries = self._tags.get(name)
        if entries is None:
            entries = tuple(
                _TagEntry(Digest.parse(ref.value.decode()), ref.variant, ref.confirmed)
                for ref in self._store.refs.variants(_TAG_SCOPE, name)
            )
            self._tags[name] = entries
        return entries

    def _remember(self, name: str, manifest: Manifest) -> None:
        now = self._clock()
        self._store.refs.put(
            _TAG_SCOPE, name, str(manifest.digest).encode(), confirmed=now, variant=manifest.media_type
        )
        others = tuple(e for e in self._tag_entries(name) if e.media_type != manifest.media_type)
        self._tags[name] = (_TagEntry(manifest.digest, manifest.media_type, now), *others)

    def _forget(self, name: str) -> None:
        self._store.refs.delete(_TAG_SCOPE, name)
        self._tags.pop(name, None)


def _admitted(entries: tuple[_TagEntry, ...], accept: list[str]) -> _TagEntry | None:
    """The most recently confirmed entry whose media type the client's Accept admits."""
    return next((entry for entry in entries if accepts(accept, entry.media_type)), None)


def accepts(accept: list[str], media_type: str) -> bool:
    """Whether an Accept list (one item per entry, parameters allowed) admits `media_type`;
    no Accept at all admits anything, as in HTTP."""
    if not accept:
        return True
    major = media_type.split("/", 1)[0]
    for item in accept:
        value = item.split(";", 1)[0].strip().lower()
        if value in ("*/*", "*", media_type.lower(), f"{major}/*"):
            return True
    return False


def _media_type(content_type: str | None, body: bytes) -> str:
    value = (content_type or "").split(";")[0].strip()
    if value and value not in ("application/json", "application/octet-stream", "text/plain"):
        return value
    return _sniff_media_type(body)


def _sniff_media_type(body: bytes) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return _DEFAULT_MEDIA_TYPE
    media_type = document.get("mediaType") if isinstance(document, dict) else None
    if isinstance(media_type, str) and media_type:
        return media_type
    if isinstance(document, dict) and "manifests" in document:
        return OCI_INDEX
    return _DEFAULT_MEDIA_TYPE

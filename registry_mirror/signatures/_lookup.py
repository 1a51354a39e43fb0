"""Finding a manifest's cosign signatures on its upstream: the `sha256-<hex>.sig` tag in the
same repository (what cosign and containers/image write), then the referrers API where the
upstream offers it.

Signature manifests go through the mirror's own manifest cache (tag TTL, stale window, digest
check) and payload blobs through the blob store (verified against their digest before use), so a
warm node verifies with the origin down. Errors other than "no such signature" are
`SignatureFetchFailed`: the caller must not read them as "unsigned".
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from nvme_cache import BlobNotFound, BlobStore, Digest, VerificationFailed
from oci import IMAGE_MANIFEST_TYPES, OCI_INDEX
from registry_mirror.api import ErrorCode, Manifest, OCIError
from registry_mirror.signatures import _metrics as metrics
from registry_mirror.signatures._cosign import (
    MAX_PAYLOAD_BYTES,
    SIGNATURE_ARTIFACT_TYPE,
    SignedPayload,
    signature_payloads,
    signature_tag,
)
from registry_mirror.upstream import Target, UpstreamError, UpstreamNotFound, UpstreamUnavailable

SIGNATURE_MANIFEST_TYPES = list(IMAGE_MANIFEST_TYPES)
_ABSENT = (ErrorCode.MANIFEST_UNKNOWN, ErrorCode.NAME_UNKNOWN, ErrorCode.NOT_FOUND)

# ManifestCache.get(target, reference, accept): the one way this module reads manifests.
GetManifest = Callable[[Target, "str | Digest", list[str]], Awaitable[Manifest]]


class SignatureFetchFailed(Exception):
    """The upstream could not say which signatures a manifest has (unreachable, 5xx, garbage)."""


class SignatureLookup:
    def __init__(self, get_manifest: GetManifest, store: BlobStore) -> None:
        self._get_manifest = get_manifest
        self._store = store

    async def by_tag(self, target: Target, digest: str) -> list[SignedPayload]:
        """The signatures stored at the `sha256-<hex>.sig` tag; [] when there is no such tag."""
        try:
            manifest = await self._get_manifest(target, signature_tag(digest), SIGNATURE_MANIFEST_TYPES)
        except OCIError as exc:
            if exc.code in _ABSENT:
                return []
            raise self._failed(target, "tag", f"{exc.code}: {exc.message}") from None
        return await self._payloads(target, manifest)

    async def by_referrers(self, target: Target, digest: str) -> list[SignedPayload]:
        """Signatures attached as OCI 1.1 referrers; [] when the upstream has no referrers API."""
        try:
            answer = await target.client.get(
                target.repository, f"referrers/{digest}", {"artifactType": SIGNATURE_ARTIFACT_TYPE}, [OCI_INDEX]
            )
        except UpstreamUnavailable as exc:
            raise self._failed(target, "referrers", str(exc)) from None
        except UpstreamError:  # 404/400/405...: this upstream does not offer the API
            return []
        if answer.status != 200:
            return []
        try:
            index = json.loads(answer.body)
            listed = index["manifests"] if isinstance(index, dict) else []
        except (ValueError, KeyError):
            raise self._failed(target, "referrers", "the referrers answer is not an OCI index") from None
        found: list[SignedPayload] = []
        for descriptor in listed if isinstance(listed, list) else []:
            if not isinstance(descriptor, dict) or descriptor.get("artifactType") != SIGNATURE_ARTIFACT_TYPE:
                continue  # upstreams that ignore the filter list every referrer
            try:
                child = Digest.parse(str(descriptor.get("digest")))
                manifest = await self._get_manifest(target, child, SIGNATURE_MANIFEST_TYPES)
            except (ValueError, OCIError) as exc:
                raise self._failed(target, "referrers", f"referrer {descriptor.get('digest')}: {exc}") from None
            found += await self._payloads(target, manifest)
        return found

    async def _payloads(self, target: Target, manifest: Manifest) -> list[SignedPayload]:
        try:
            document = json.loads(manifest.body)
        except ValueError:
            raise self._failed(target, "manifest", f"signature manifest {manifest.digest} is not JSON") from None
        if not isinstance(document, dict):
            return []
        found = []
        for payload_digest, signature in signature_payloads(document):
            found.append(SignedPayload(await self._payload(target, payload_digest), signature))
        return found

    async def _payload(self, target: Target, digest_text: str) -> bytes:
        try:
            digest = Digest.parse(digest_text)
        except ValueError:
            raise self._failed(target, "payload", f"bad payload digest {digest_text!r}") from None
        if self._store.stat(digest) is not None:
            try:
                return await self._store.read_bytes(digest, MAX_PAYLOAD_BYTES)
            except BlobNotFound:
                pass  # evicted meanwhile, or too large: fetch (and check the size) below
        try:
            answer = await target.client.get(target.repository, f"blobs/{digest}")
        except UpstreamNotFound:
            raise self._failed(target, "payload", f"payload {digest} is missing upstream") from None
        except UpstreamError as exc:
            raise self._failed(target, "payload", str(exc)) from None
        if len(answer.body) > MAX_PAYLOAD_BYTES:
            raise self._failed(target, "payload", f"payload {digest} is over {MAX_PAYLOAD_BYTES} bytes")
        try:
            await self._store.put_bytes(digest, answer.body, "application/vnd.dev.cosign.simplesigning.v1+json")
        except VerificationFailed:
            raise self._failed(target, "payload", f"payload bytes do not match {digest}") from None
        return answer.body

    @staticmethod
    def _failed(target: Target, stage: str, message: str) -> SignatureFetchFailed:
        metrics.fetch_failures.add(1, {"upstream": target.name, "stage": stage})
        return SignatureFetchFailed(f"{stage}: {message}")

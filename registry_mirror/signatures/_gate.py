"""The signature policy at the point a manifest is about to be served.

- The first `[[signatures]]` policy whose upstream and repository globs match governs a
  repository (named as its upstream names it: `library/alpine` on Docker Hub).
- A manifest is verified when a signature by one of the policy's keys is over a cosign payload
  naming its digest; a child of a verified index is verified through it (the index names its
  children by digest). Signature manifests themselves are not images and pass.
- `enforce` refuses anything else with 403 DENIED naming the policy, and the blobs the refused
  manifest names are then refused under that repository too (unless a verified manifest there
  names them as well). `warn` serves it, counts and logs it.
- Verdicts are cached by (manifest digest, policy, policy version): a verified one until evicted,
  a refusal for `refusal_ttl` (so a signature pushed later is seen); a failed lookup is never
  cached. The version changes with any policy or key, so a changed policy never reuses one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Literal

from cachetools import LRUCache, TTLCache

from registry_mirror.api import ErrorCode, Manifest, OCIError
from registry_mirror.signatures import _metrics as metrics
from registry_mirror.signatures._cosign import VerifyKey, is_signature_manifest, verify
from registry_mirror.signatures._lookup import SignatureFetchFailed, SignatureLookup
from registry_mirror.upstream import SingleFlight, Target

log = logging.getLogger("registry_mirror.signatures")

Result = Literal["verified", "refused", "warned"]
_CACHE_ENTRIES = 100_000
VerdictKey = tuple[str, str, str]  # manifest digest, policy name, policy version
Scoped = tuple[str, str, str]  # upstream, repository (as the upstream names it), digest


@dataclass(frozen=True)
class SignaturePolicy:
    name: str
    upstream: str
    repositories: tuple[str, ...]
    keys: tuple[VerifyKey, ...]
    enforce: bool

    def matches(self, upstream: str, repository: str) -> bool:
        return upstream == self.upstream and any(fnmatchcase(repository, glob) for glob in self.repositories)


@dataclass(frozen=True)
class Verdict:
    policy: str
    digest: str
    result: Result
    reason: str  # why, for logs and the refusal message
    cached: bool = False


def policy_version(policies: Sequence[SignaturePolicy]) -> str:
    """A short hash of everything a verdict depends on: names, scopes, modes and key ids."""
    described = [
        [p.name, p.upstream, list(p.repositories), sorted(k.keyid for k in p.keys), p.enforce] for p in policies
    ]
    return hashlib.sha256(json.dumps(described).encode()).hexdigest()[:16]


class SignatureGate:
    def __init__(
        self,
        policies: Sequence[SignaturePolicy],
        lookup: SignatureLookup,
        *,
        refusal_ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policies = tuple(policies)
        self.version = policy_version(self.policies)
        self._lookup = lookup
        self._verified: LRUCache[VerdictKey, Verdict] = LRUCache(maxsize=_CACHE_ENTRIES)
        self._refused: TTLCache[VerdictKey, Verdict] = TTLCache(
            maxsize=_CACHE_ENTRIES, ttl=max(refusal_ttl, 0.001), timer=clock
        )
        self._children: LRUCache[Scoped, str] = LRUCache(maxsize=_CACHE_ENTRIES)  # child -> verified index
        self._denied_blobs: LRUCache[Scoped, str] = LRUCache(maxsize=_CACHE_ENTRIES)  # blob -> policy
        self._allowed_blobs: LRUCache[Scoped, bool] = LRUCache(maxsize=_CACHE_ENTRIES)
        self._flights: SingleFlight[Verdict] = SingleFlight()

    def policy_for(self, target: Target) -> SignaturePolicy | None:
        repository = target.client.upstream_repository(target.repository)
        return next((p for p in self.policies if p.matches(target.name, repository)), None)

    # -- manifests -------------------------------------------------------------------------------
    async def check_manifest(self, target: Target, manifest: Manifest) -> Verdict | None:
        """The verdict for serving `manifest` to `target` (None: no policy governs it). The caller
        refuses a "refused" verdict with `refusal(verdict)`."""
        policy = self.policy_for(target)
        if policy is None:
            return None
        document = _json(manifest.body)
        if is_signature_manifest(document):
            return None
        verdict = await self._verdict(policy, target, manifest)
        metrics.verdicts.add(
            1, {"policy": policy.name, "result": verdict.result, "cached": str(verdict.cached).lower()}
        )
        repository = target.client.upstream_repository(target.repository)
        if verdict.result == "verified":
            for child in _children(document):
                self._children[(target.name, repository, child)] = str(manifest.digest)
            for blob in _blobs(document):
                self._allowed_blobs[(target.name, repository, blob)] = True
        elif verdict.result == "refused":
            for blob in _blobs(document):
                self._denied_blobs[(target.name, repository, blob)] = policy.name
        return verdict

    def refusal(self, verdict: Verdict) -> OCIError:
        """The 403 for a refused verdict: names the policy, the digest and why."""
        return OCIError(
            ErrorCode.DENIED,
            f"signature policy {verdict.policy!r} refused {verdict.digest}: {verdict.reason}",
            detail={"policy": verdict.policy, "digest": verdict.digest, "policy_version": self.version},
        )

    async def _verdict(self, policy: SignaturePolicy, target: Target, manifest: Manifest) -> Verdict:
        key = (str(manifest.digest), policy.name, self.version)
        cached = self._verified.get(key)
        if cached is not None:
            return replace(cached, cached=True)
        # Before a cached refusal: a child asked for alone was refused, then its index verified.
        repository = target.client.upstream_repository(target.repository)
        parent = self._children.get((target.name, repository, str(manifest.digest)))
        if parent is not None and self._verified.get((parent, policy.name, self.version)) is not None:
            verdict = Verdict(policy.name, key[0], "verified", f"listed in the verified index {parent}")
            self._verified[key] = verdict
            return verdict
        cached = self._refused.get(key)
        if cached is not None:
            return replace(cached, cached=True)
        flight = (*key, target.name, repository)
        return await self._flights.do(flight, lambda: self._verify(policy, target, str(manifest.digest), key))

    async def _verify(self, policy: SignaturePolicy, target: Target, digest: str, key: VerdictKey) -> Verdict:
        try:
            signer, seen = await self._find_signer(policy, target, digest)
        except SignatureFetchFailed as exc:
            metrics.verifications.add(1, {"policy": policy.name, "result": "fetch_failed"})
            reason = f"its signatures could not be fetched ({exc})"
            log.warning(
                "signature policy %r: %s of %s/%s: %s", policy.name, digest, target.name, target.repository, reason
            )
            return Verdict(policy.name, digest, "refused" if policy.enforce else "warned", reason)  # not cached
        if signer is not None:
            metrics.verifications.add(1, {"policy": policy.name, "result": "verified"})
            verdict = Verdict(policy.name, digest, "verified", f"signed by key {signer[:12]}")
            self._verified[key] = verdict
            return verdict
        metrics.verifications.add(1, {"policy": policy.name, "result": "unverified"})
        reason = (
            "no signature found" if seen == 0 else f"none of its {seen} signatures is by a trusted key over this digest"
        )
        verdict = Verdict(policy.name, digest, "refused" if policy.enforce else "warned", reason)
        log.warning(
            "signature policy %r (%s): %s of %s/%s: %s",
            policy.name,
            "enforce" if policy.enforce else "warn",
            digest,
            target.name,
            target.repository,
            reason,
        )
        self._refused[key] = verdict
        return verdict

    async def _find_signer(self, policy: SignaturePolicy, target: Target, digest: str) -> tuple[str | None, int]:
        """(keyid of a valid signature or None, how many signatures were looked at)."""
        seen = 0
        for find in (self._lookup.by_tag, self._lookup.by_referrers):
            signatures = await find(target, digest)
            seen += len(signatures)
            for signed in signatures:
                keyid = verify(signed, digest, policy.keys)
                if keyid is not None:
                    return keyid, seen
        return None, seen

    # -- blobs -------------------------------------------------------------------------------
    def check_blob(self, target: Target, digest: str) -> Verdict | None:
        """A "refused" verdict for a blob that a manifest refused in this repository names (and
        no verified manifest there names too); None otherwise."""
        if not self._denied_blobs:
            return None
        scoped = (target.name, target.client.upstream_repository(target.repository), digest)
        refused_by = self._denied_blobs.get(scoped)
        if refused_by is None or self._allowed_blobs.get(scoped):
            return None
        metrics.blob_refusals.add(1, {"policy": refused_by})
        return Verdict(refused_by, digest, "refused", "it belongs to an image this policy refused")


def _json(body: bytes) -> dict[str, object]:
    try:
        document = json.loads(body)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _digests(descriptors: object) -> list[str]:
    if not isinstance(descriptors, list):
        return []
    return [d["digest"] for d in descriptors if isinstance(d, dict) and isinstance(d.get("digest"), str)]


def _children(document: dict[str, object]) -> list[str]:
    """The manifests an index (or a Docker manifest list) names."""
    return _digests(document.get("manifests"))


def _blobs(document: dict[str, object]) -> list[str]:
    """The config and layers an image manifest names."""
    return _digests([document.get("config")]) + _digests(document.get("layers"))

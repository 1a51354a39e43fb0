"""Build the signature gate from Settings (the only module here that knows Settings' shape)."""

from __future__ import annotations

import logging

from nvme_cache import BlobStore
from registry_mirror.api import ManifestCache
from registry_mirror.config import Settings
from registry_mirror.signatures._cosign import load_public_key
from registry_mirror.signatures._gate import SignatureGate, SignaturePolicy
from registry_mirror.signatures._lookup import SignatureLookup

log = logging.getLogger("registry_mirror.signatures")


def build_signature_gate(settings: Settings, manifests: ManifestCache, store: BlobStore) -> SignatureGate | None:
    """None without `[[signatures]]`; keys were already parsed once by the loader."""
    if not settings.signatures:
        return None
    policies = [
        SignaturePolicy(
            name=rule.name,
            upstream=rule.upstream,
            repositories=rule.repositories,
            keys=tuple(load_public_key(path.read_bytes()) for path in rule.public_keys),
            enforce=rule.mode == "enforce",
        )
        for rule in settings.signatures
    ]
    # A refusal is re-checked at the pace a tag is: a signature pushed later is seen as soon.
    gate = SignatureGate(policies, SignatureLookup(manifests.get, store), refusal_ttl=settings.tag_ttl)
    for policy in policies:
        log.info(
            "signature policy %r: %s on %s %s, %d key(s) (policy version %s)",
            policy.name,
            "enforce" if policy.enforce else "warn",
            policy.upstream,
            ",".join(policy.repositories),
            len(policy.keys),
            gate.version,
        )
    return gate

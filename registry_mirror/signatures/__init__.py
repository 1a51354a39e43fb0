"""Signature policy: keyed cosign signatures a manifest must carry before it is served."""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry_mirror._facade import lazy_exports

if TYPE_CHECKING:
    from registry_mirror.signatures._cosign import InvalidKey as InvalidKey
    from registry_mirror.signatures._cosign import SignedPayload as SignedPayload
    from registry_mirror.signatures._cosign import VerifyKey as VerifyKey
    from registry_mirror.signatures._cosign import load_public_key as load_public_key
    from registry_mirror.signatures._cosign import verify as verify
    from registry_mirror.signatures._gate import SignatureGate as SignatureGate
    from registry_mirror.signatures._gate import SignaturePolicy as SignaturePolicy
    from registry_mirror.signatures._gate import Verdict as Verdict
    from registry_mirror.signatures._lookup import SignatureFetchFailed as SignatureFetchFailed
    from registry_mirror.signatures._lookup import SignatureLookup as SignatureLookup
    from registry_mirror.signatures._setup import build_signature_gate as build_signature_gate

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "_cosign": (
            "InvalidKey",
            "SignedPayload",
            "VerifyKey",
            "load_public_key",
            "verify",
        ),
        "_gate": (
            "SignatureGate",
            "SignaturePolicy",
            "Verdict",
        ),
        "_lookup": (
            "SignatureFetchFailed",
            "SignatureLookup",
        ),
        "_setup": ("build_signature_gate",),
    },
)

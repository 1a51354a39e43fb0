"""Signature policy: keyed cosign signatures a manifest must carry before it is served."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lazy_loader

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

# Each module is imported when one of its names is first used (PEP 562): importing the package
# costs nothing and cannot close an import cycle.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "_cosign": ["InvalidKey", "SignedPayload", "VerifyKey", "load_public_key", "verify"],
        "_gate": ["SignatureGate", "SignaturePolicy", "Verdict"],
        "_lookup": ["SignatureFetchFailed", "SignatureLookup"],
        "_setup": ["build_signature_gate"],
    },
)

"""Signature policy: keyed cosign signatures a manifest must carry before it is served."""

from registry_mirror.signatures.cosign import InvalidKey, SignedPayload, VerifyKey, load_public_key, verify
from registry_mirror.signatures.gate import SignatureGate, SignaturePolicy, Verdict
from registry_mirror.signatures.lookup import SignatureFetchFailed, SignatureLookup

__all__ = [
    "InvalidKey",
    "SignatureFetchFailed",
    "SignatureGate",
    "SignatureLookup",
    "SignaturePolicy",
    "SignedPayload",
    "Verdict",
    "VerifyKey",
    "load_public_key",
    "verify",
]

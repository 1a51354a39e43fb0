"""cosign's keyed signatures in the "simple signing" format, checked without any network.

What cosign (and containers/image) write for `cosign sign --key`: a manifest at the tag
`sha256-<hex>.sig` in the image's repository, whose layers are simple-signing payloads
(`application/vnd.dev.cosign.simplesigning.v1+json`), each with its signature, base64, in the
`dev.cosignproject.cosign/signature` annotation. The signature is over the payload bytes exactly
as stored (never re-serialised JSON), and the payload names the signed manifest digest in
`critical.image.docker-manifest-digest`.

Keyless signatures (Fulcio certificates, Rekor bundles) need the public transparency log and
its roots; they are out of scope, and a layer that only carries a certificate does not count.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
# What `cosign attach signature --registry-referrers-mode=oci-1-1` and cosign 2 referrers write.
SIGNATURE_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
PAYLOAD_TYPE = "cosign container image signature"
MAX_PAYLOAD_BYTES = 256 * 1024  # cosign payloads are a few hundred bytes
_MAX_SIGNATURE_CHARS = 16 * 1024  # base64 of an RSA-8192 signature is ~1.4 KiB

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class InvalidKey(ValueError):
    """A public key file that is not a PEM public key of a kind cosign signs with."""


@dataclass(frozen=True)
class VerifyKey:
    """One trusted public key; `keyid` (sha256 of its DER SubjectPublicKeyInfo) names it in logs."""

    key: PublicKey
    keyid: str


@dataclass(frozen=True)
class SignedPayload:
    """One signature found for a manifest: the payload bytes as stored and the base64 signature."""

    payload: bytes
    signature: str


def signature_tag(digest: str) -> str:
    """`sha256:abc...` -> `sha256-abc....sig`, the tag cosign stores signatures under."""
    algorithm, _, hex_part = digest.partition(":")
    return f"{algorithm}-{hex_part}.sig"


def load_public_key(pem: bytes) -> VerifyKey:
    """A cosign public key (`cosign.pub`: ECDSA P-256 by default; RSA and Ed25519 also sign)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidKey(f"not a PEM public key ({exc})") from None
    if not isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
        raise InvalidKey(f"unsupported key type {type(key).__name__}: expected ECDSA, RSA or Ed25519")
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return VerifyKey(key, hashlib.sha256(der).hexdigest())


def signature_payloads(manifest: dict[str, object]) -> list[tuple[str, str]]:
    """(payload digest, base64 signature) of each simple-signing layer of a signature manifest."""
    found: list[tuple[str, str]] = []
    layers = manifest.get("layers")
    for layer in layers if isinstance(layers, list) else []:
        if not isinstance(layer, dict) or layer.get("mediaType") != SIMPLE_SIGNING_MEDIA_TYPE:
            continue
        annotations = layer.get("annotations")
        signature = annotations.get(SIGNATURE_ANNOTATION) if isinstance(annotations, dict) else None
        digest = layer.get("digest")
        if isinstance(signature, str) and signature and isinstance(digest, str):
            found.append((digest, signature))
    return found


def is_signature_manifest(manifest: dict[str, object]) -> bool:
    """A manifest whose every layer is a simple-signing payload: a signature, not an image."""
    layers = manifest.get("layers")
    return (
        isinstance(layers, list)
        and bool(layers)
        and all(isinstance(layer, dict) and layer.get("mediaType") == SIMPLE_SIGNING_MEDIA_TYPE for layer in layers)
    )


def verify(signed: SignedPayload, digest: str, keys: Iterable[VerifyKey]) -> str | None:
    """The keyid that signed `signed` for manifest `digest`, or None.

    The signature is checked over the raw payload first; only a payload that verifies is parsed,
    and it must be a cosign payload naming exactly `digest`. So a valid signature of another
    image (replayed under this image's tag) does not count.
    """
    if len(signed.payload) > MAX_PAYLOAD_BYTES or len(signed.signature) > _MAX_SIGNATURE_CHARS:
        return None
    try:
        raw_signature = base64.b64decode(signed.signature, validate=True)
    except (binascii.Error, ValueError):
        return None
    signer = next((key for key in keys if _verifies(key.key, raw_signature, signed.payload)), None)
    if signer is None or payload_digest(signed.payload) != digest:
        return None
    return signer.keyid


def payload_digest(payload: bytes) -> str | None:
    """`critical.image.docker-manifest-digest` of a cosign simple-signing payload, or None."""
    try:
        document = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    critical = document.get("critical") if isinstance(document, dict) else None
    if not isinstance(critical, dict) or critical.get("type") != PAYLOAD_TYPE:
        return None
    image = critical.get("image")
    value = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    return value if isinstance(value, str) else None


def _verifies(key: PublicKey, signature: bytes, payload: bytes) -> bool:
    # The hash cosign (sigstore-go's LoadVerifier with crypto.SHA256) signs with for each key type.
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, payload)
    except InvalidSignature:
        return False
    return True

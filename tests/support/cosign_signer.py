"""A test signer that writes exactly what `cosign sign --key` writes to a registry.

cosign is not packaged here and Debian's skopeo/podman have sigstore compiled out, so tests
sign with this: an ECDSA P-256 key (cosign's default), the simple-signing payload byte for byte
as cosign serialises it (checked against containers/image's cosign fixtures in
tests/registry_mirror/test_cosign.py), pushed as one layer of type
`application/vnd.dev.cosign.simplesigning.v1+json` with the base64 DER signature in the
`dev.cosignproject.cosign/signature` annotation, in a manifest at the tag `sha256-<hex>.sig`
of the image's own repository.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .images import OCI_MANIFEST, push_blob, push_manifest
from .origin import OriginRegistry

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def simple_signing_payload(reference: str, digest: str) -> bytes:
    """cosign's payload: Go's encoding/json of its struct (field order, no spaces)."""
    return json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": reference},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        },
        separators=(",", ":"),
    ).encode()


def signature_tag(digest: str) -> str:
    algorithm, _, hex_part = digest.partition(":")
    return f"{algorithm}-{hex_part}.sig"


@dataclass
class CosignSigner:
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def write_public_key(self, path: Path) -> Path:
        path.write_bytes(self.public_pem())
        return path

    def sign(self, payload: bytes) -> str:
        return base64.b64encode(self.key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()

    def signature_manifest(
        self, origin: OriginRegistry, repo: str, payload: bytes, signature: str, artifact_type: str | None = None
    ) -> bytes:
        """Push the payload and cosign's config blob; the signature manifest's body."""
        payload_digest = push_blob(origin, repo, payload)
        config = json.dumps(
            {
                "architecture": "",
                "created": "0001-01-01T00:00:00Z",
                "history": [{"created": "0001-01-01T00:00:00Z"}],
                "os": "",
                "rootfs": {"type": "layers", "diff_ids": [payload_digest]},
                "config": {},
            },
            separators=(",", ":"),
        ).encode()
        manifest: dict[str, object] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": push_blob(origin, repo, config)},
            "layers": [
                {
                    "mediaType": SIMPLE_SIGNING,
                    "size": len(payload),
                    "digest": payload_digest,
                    "annotations": {SIGNATURE_ANNOTATION: signature},
                }
            ],
        }
        if artifact_type is not None:
            manifest["artifactType"] = artifact_type
        return json.dumps(manifest, separators=(",", ":")).encode()

    def attach(
        self,
        origin: OriginRegistry,
        repo: str,
        digest: str,
        *,
        payload: bytes | None = None,
        signature: str | None = None,
        under: str | None = None,
    ) -> str:
        """Sign `digest` (or store the given payload/signature as they are, for attacks) at the
        signature tag of `under` (default: `digest` itself). Returns the signature manifest digest."""
        payload = payload if payload is not None else simple_signing_payload(f"{origin.host}/{repo}", digest)
        signature = signature if signature is not None else self.sign(payload)
        body = self.signature_manifest(origin, repo, payload, signature)
        return push_manifest(origin, repo, signature_tag(under or digest), body, OCI_MANIFEST)

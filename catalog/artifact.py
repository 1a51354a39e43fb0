"""The catalog as an OCI artifact: an image manifest with artifactType, the DSSE envelope as its
first layer and delta blobs as further layers. docker-registry 2.8 refuses the OCI artifact
manifest media type, so this is a plain image manifest (accepted by every registry)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from catalog.models import CATALOG_MEDIA_TYPE
from oci import OCI_MANIFEST

ENVELOPE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
DELTA_MEDIA_TYPE = "application/vnd.registry-mirror.delta.zstd-patch-from"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(EMPTY_CONFIG).hexdigest()
TITLE = "org.opencontainers.image.title"
DELTA_ANNOTATION = "vnd.registry-mirror.delta"  # value: the delta's digest, names the layer as a delta
ENVELOPE_TITLE = "catalog.dsse.json"


def descriptor(media_type: str, digest: str, size: int, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    desc: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if annotations:
        desc["annotations"] = annotations
    return desc


def artifact_manifest(envelope: bytes, delta_files: list[tuple[str, Path]]) -> bytes:
    """Manifest bytes for the envelope plus the given (delta digest, file) layers."""
    layers = [
        descriptor(
            ENVELOPE_MEDIA_TYPE,
            "sha256:" + hashlib.sha256(envelope).hexdigest(),
            len(envelope),
            {TITLE: ENVELOPE_TITLE},
        )
    ]
    for digest, path in delta_files:
        layers.append(
            descriptor(DELTA_MEDIA_TYPE, digest, path.stat().st_size, {TITLE: path.name, DELTA_ANNOTATION: digest})
        )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": CATALOG_MEDIA_TYPE,
        "config": descriptor(EMPTY_MEDIA_TYPE, EMPTY_DIGEST, len(EMPTY_CONFIG)),
        "layers": layers,
    }
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode("utf-8")

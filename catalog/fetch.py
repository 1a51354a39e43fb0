"""Mirror side: fetch a published catalog's envelope bytes (verify them with catalog.signing.verify)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from catalog.artifact import DELTA_ANNOTATION, ENVELOPE_MEDIA_TYPE
from catalog.errors import RegistryError, TooLargeError
from catalog.models import CATALOG_MEDIA_TYPE
from catalog.registry import Manifest, RegistryClient
from catalog.signing import MAX_ENVELOPE_BYTES
from oci import OCI_MANIFEST


def pull_catalog(registry: str, repo: str, tag: str, insecure: bool = False) -> bytes:
    """Return the DSSE envelope bytes of the catalog artifact at registry/repo:tag (unverified)."""
    with RegistryClient(registry, insecure) as client:
        manifest = client.get_manifest(repo, tag, accept=OCI_MANIFEST)
        layer = _envelope_layer(manifest)
        if int(layer["size"]) > MAX_ENVELOPE_BYTES:
            raise TooLargeError(f"catalog envelope is {layer['size']} bytes, over the {MAX_ENVELOPE_BYTES} byte limit")
        return client.get_blob_bytes(repo, layer["digest"], MAX_ENVELOPE_BYTES)


def pull_delta(registry: str, repo: str, delta_digest: str, out_path: Path, insecure: bool = False) -> int:
    """Download one delta blob (verified against its digest) from the catalog repository."""
    with RegistryClient(registry, insecure) as client:
        return client.download_blob(repo, delta_digest, out_path)


def _envelope_layer(manifest: Manifest) -> dict[str, Any]:
    doc = manifest.json()
    if doc.get("artifactType") != CATALOG_MEDIA_TYPE:
        raise RegistryError(f"{manifest.digest} is not a catalog artifact (artifactType {doc.get('artifactType')!r})")
    layers: list[dict[str, Any]] = [
        layer
        for layer in doc.get("layers", [])
        if layer.get("mediaType") == ENVELOPE_MEDIA_TYPE and DELTA_ANNOTATION not in layer.get("annotations", {})
    ]
    if len(layers) != 1:
        raise RegistryError(f"{manifest.digest}: expected exactly one envelope layer, found {len(layers)}")
    return layers[0]

"""Push a signed catalog (and its delta blobs) as an OCI artifact with plain registry HTTP."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from catalog.artifact import EMPTY_CONFIG, EMPTY_DIGEST, ENVELOPE_MEDIA_TYPE, artifact_manifest
from catalog.errors import CatalogError
from catalog.registry import Reference, RegistryClient
from catalog.signing import MAX_ENVELOPE_BYTES
from oci import OCI_MANIFEST

_DELTA_FILE = re.compile(r"^sha256-([0-9a-f]{64})\.delta$")
CHUNK = 1024 * 1024


def delta_files(delta_dir: Path) -> list[tuple[str, Path]]:
    """Every `sha256-<hex>.delta` file in `delta_dir` whose content matches its name."""
    found = []
    for path in sorted(delta_dir.iterdir()):
        match = _DELTA_FILE.match(path.name)
        if not match:
            continue
        digest = f"sha256:{match.group(1)}"
        if _file_digest(path) != digest:
            raise CatalogError(f"{path}: content does not match its name")
        found.append((digest, path))
    return found


def push_catalog(client: RegistryClient, target: Reference, envelope: bytes, delta_dir: Path | None = None) -> str:
    """Upload the blobs, then the manifest under target's tag; returns the manifest digest."""
    if len(envelope) > MAX_ENVELOPE_BYTES:
        raise CatalogError(f"envelope is over the {MAX_ENVELOPE_BYTES} byte limit")
    deltas = delta_files(delta_dir) if delta_dir is not None else []
    repo = target.repository
    client.push_blob(repo, EMPTY_DIGEST, len(EMPTY_CONFIG), EMPTY_CONFIG)
    client.push_blob(repo, "sha256:" + hashlib.sha256(envelope).hexdigest(), len(envelope), envelope)
    for digest, path in deltas:
        client.push_blob(repo, digest, path.stat().st_size, path)
    return client.push_manifest(repo, target.reference, artifact_manifest(envelope, deltas), OCI_MANIFEST)


def _file_digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


__all__ = ["push_catalog", "delta_files", "ENVELOPE_MEDIA_TYPE"]

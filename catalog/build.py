"""Build a catalog from images in a registry, optionally with layer deltas against an older image."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from catalog.delta import make_delta
from catalog.errors import RegistryError
from catalog.models import Blob, Catalog, Delta, DeltaBlob, Image
from catalog.registry import Manifest, Reference, RegistryClient
from oci import INDEX_TYPES

MAX_CONFIG_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class PlatformManifest:
    platform: str  # os/arch[/variant]
    manifest: Manifest


@dataclass(frozen=True)
class ResolvedImage:
    ref: Reference
    top: Manifest
    manifests: tuple[PlatformManifest, ...]


def delta_file_name(delta_digest: str) -> str:
    algo, _, hexdigest = delta_digest.partition(":")
    return f"{algo}-{hexdigest}.delta"


def resolve_image(client: RegistryClient, ref: Reference, platforms: tuple[str, ...]) -> ResolvedImage:
    """Resolve a ref to its manifest (or index) and the per-platform image manifests it selects."""
    top = client.get_manifest(ref.repository, ref.reference)
    if top.media_type in INDEX_TYPES:
        chosen = []
        for entry in top.json().get("manifests", []):
            platform = _platform_string(entry.get("platform", {}))
            if platform == "unknown/unknown" or (platforms and platform not in platforms):
                continue  # attestation manifests, or a platform not asked for
            chosen.append(PlatformManifest(platform, client.get_manifest(ref.repository, entry["digest"])))
    else:
        config = top.json().get("config", {})
        raw = client.get_blob_bytes(ref.repository, config["digest"], MAX_CONFIG_BYTES)
        platform = _platform_string(json.loads(raw))
        chosen = [PlatformManifest(platform, top)] if not platforms or platform in platforms else []
    if not chosen:
        raise RegistryError(f"{ref}: no manifest for platforms {', '.join(platforms) or 'any'}")
    return ResolvedImage(ref, top, tuple(chosen))


def image_blobs(image: ResolvedImage) -> list[Blob]:
    repo = image.ref.repository
    blobs = []
    if image.top.media_type in INDEX_TYPES:
        blobs.append(Blob(image.top.digest, len(image.top.body), image.top.media_type, repo))
    for pm in image.manifests:
        blobs.append(Blob(pm.manifest.digest, len(pm.manifest.body), pm.manifest.media_type, repo))
        doc = pm.manifest.json()
        for desc in [doc["config"], *doc.get("layers", [])]:
            blobs.append(Blob(desc["digest"], int(desc["size"]), desc["mediaType"], repo))
    return blobs


def layer_deltas(
    client: RegistryClient,
    old: ResolvedImage,
    new: ResolvedImage,
    delta_dir: Path,
    min_savings: float,
) -> list[Delta]:
    """Pair the layers of OLD and NEW by position (per platform) and delta the changed ones."""
    old_by_platform = {pm.platform: pm.manifest.json() for pm in old.manifests}
    deltas: list[Delta] = []
    seen: set[tuple[str, str]] = set()
    with tempfile.TemporaryDirectory(prefix=".catalog-build-", dir=delta_dir) as tmp:
        work = Path(tmp)
        for pm in new.manifests:
            old_doc = old_by_platform.get(pm.platform)
            if old_doc is None:
                continue
            for old_layer, new_layer in zip(
                old_doc.get("layers", []), pm.manifest.json().get("layers", []), strict=False
            ):
                pair = (old_layer["digest"], new_layer["digest"])
                if pair[0] == pair[1] or pair in seen:
                    continue
                seen.add(pair)
                delta = _one_delta(client, old.ref.repository, new.ref.repository, pair, work, delta_dir, min_savings)
                if delta is not None:
                    deltas.append(delta)
    return deltas


def _one_delta(
    client: RegistryClient,
    old_repo: str,
    new_repo: str,
    pair: tuple[str, str],
    work: Path,
    delta_dir: Path,
    min_savings: float,
) -> Delta | None:
    old_path, new_path, out = work / "old", work / "new", work / "delta"
    client.download_blob(old_repo, pair[0], old_path)
    client.download_blob(new_repo, pair[1], new_path)
    info = make_delta(old_path, new_path, out, min_savings=min_savings)
    old_path.unlink()
    new_path.unlink()
    if info is None:
        return None
    out.rename(delta_dir / delta_file_name(info.digest))
    return Delta(from_digest=pair[0], to_digest=pair[1], delta=DeltaBlob(info.digest, info.size))


def build_catalog(
    client: RegistryClient,
    images: list[Reference],
    name: str,
    serial: int,
    now: datetime,
    expires_in: timedelta,
    platforms: tuple[str, ...] = (),
    delta_from: Reference | None = None,
    delta_dir: Path | None = None,
    min_savings: float = 0.5,
    rollback_of: int | None = None,
) -> Catalog:
    """All refs must live on the registry `client` talks to. `rollback_of`: a rollback that
    supersedes that serial (the images are the ones to go back to; `serial` is still a new one)."""
    resolved = [resolve_image(client, ref, platforms) for ref in images]
    blobs: dict[str, Blob] = {}
    for image in resolved:
        for blob in image_blobs(image):
            blobs.setdefault(blob.digest, blob)
    deltas: list[Delta] = []
    if delta_from is not None:
        if delta_dir is None:
            raise ValueError("--delta-from needs --delta-dir")
        target = _paired_image(resolved, delta_from)
        old = resolve_image(client, delta_from, platforms)
        deltas = layer_deltas(client, old, target, delta_dir, min_savings)
    return Catalog(
        name=name,
        serial=serial,
        created=now,
        expires=now + expires_in,
        images=tuple(Image(str(i.ref), i.top.digest, tuple(pm.platform for pm in i.manifests)) for i in resolved),
        blobs=tuple(blobs.values()),
        deltas=tuple(deltas),
        rollback=rollback_of is not None,
        supersedes=rollback_of,
    )


def _paired_image(resolved: list[ResolvedImage], old: Reference) -> ResolvedImage:
    # The new image a --delta-from pairs with: the one from the same repository, else the only one.
    same_repo = [i for i in resolved if i.ref.repository == old.repository]
    if same_repo:
        return same_repo[0]
    if len(resolved) == 1:
        return resolved[0]
    raise ValueError(f"--delta-from {old}: no --image from the same repository to pair with")


def _platform_string(platform: dict[str, Any]) -> str:
    parts = [platform.get("os", "unknown"), platform.get("architecture", "unknown")]
    if platform.get("variant"):
        parts.append(platform["variant"])
    return "/".join(parts)

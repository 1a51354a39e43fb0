"""Layer overlap and delta savings for a set of images: what a node must fetch, and what
zstd patch-from deltas (the ones catalogs carry) would save, computed rather than guessed.

Every blob of an image counts: index, per-platform manifests, configs and layers, at the sizes
the registry states. The deltas are computed exactly as `catalog build --delta-from` makes them
(on the blobs as stored, so gzip layers delta poorly and uncompressed or zstd layers well),
within a byte budget so that very large layers do not stall the analysis.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from catalog.build import ResolvedImage, image_blobs
from catalog.delta import make_delta
from catalog.models import Blob
from catalog.registry import Reference

Download = Callable[[Reference, str, Path], int]  # (image, digest, path) -> bytes written


@dataclass(frozen=True)
class LayerUse:
    digest: str
    size: int
    media_type: str
    kind: str  # index, manifest, config, layer
    images: tuple[str, ...]  # the refs of the set that use it
    in_old: bool  # held by one of the --against images


@dataclass(frozen=True)
class LayerDelta:
    platform: str
    old_digest: str
    new_digest: str
    new_size: int
    delta_size: int | None  # None: not computed (see `skipped`)
    skipped: str = ""

    @property
    def saved(self) -> int:
        return max(self.new_size - self.delta_size, 0) if self.delta_size is not None else 0


@dataclass(frozen=True)
class ImageSummary:
    ref: str
    platforms: tuple[str, ...]
    bytes: int  # every blob of the image
    marginal_bytes: int  # what a node holding every other image of the set (and the old ones) fetches


@dataclass
class Analysis:
    images: list[ImageSummary]
    blobs: list[LayerUse]
    deltas: list[LayerDelta] = field(default_factory=list)
    against: list[str] = field(default_factory=list)

    @property
    def separate_bytes(self) -> int:
        """Each image pulled on its own, nothing shared."""
        return sum(image.bytes for image in self.images)

    @property
    def unique_bytes(self) -> int:
        """The set pulled onto an empty node through a cache: each blob once."""
        return sum(blob.size for blob in self.blobs)

    @property
    def fetch_given_old(self) -> int:
        """The set pulled onto a node that holds the --against images."""
        return sum(blob.size for blob in self.blobs if not blob.in_old)

    @property
    def fetch_with_deltas(self) -> int:
        """As fetch_given_old, with each changed layer fetched as its delta when that is smaller."""
        return self.fetch_given_old - sum(delta.saved for delta in self.deltas)

    def totals(self) -> dict[str, int | float]:
        totals: dict[str, int | float] = {
            "separate_bytes": self.separate_bytes,
            "unique_bytes": self.unique_bytes,
            "shared_saving": _share(self.separate_bytes - self.unique_bytes, self.separate_bytes),
        }
        if self.against:
            totals |= {
                "fetch_given_old": self.fetch_given_old,
                "fetch_with_deltas": self.fetch_with_deltas,
                "cache_saving": _share(self.unique_bytes - self.fetch_given_old, self.unique_bytes),
                "delta_saving": _share(self.unique_bytes - self.fetch_with_deltas, self.unique_bytes),
            }
        return totals


def analyze(
    images: Sequence[ResolvedImage],
    old_images: Sequence[ResolvedImage] = (),
    *,
    download: Download | None = None,
    delta_budget: int = 0,
    work_dir: Path | None = None,
) -> Analysis:
    """`download` fetches blobs for deltas (None: no deltas); `delta_budget` caps the old + new
    layer bytes downloaded for them over the whole run."""
    users: dict[str, list[str]] = {}
    described: dict[str, tuple[int, str, str]] = {}
    per_image: dict[str, set[str]] = {}
    for image in images:
        ref = str(image.ref)
        per_image[ref] = set()
        for blob, kind in _blobs_with_kinds(image):
            described.setdefault(blob.digest, (blob.size, blob.media_type, kind))
            if ref not in users.setdefault(blob.digest, []):
                users[blob.digest].append(ref)
            per_image[ref].add(blob.digest)
    held_before = {blob.digest for old in old_images for blob in image_blobs(old)}
    blobs = [
        LayerUse(digest, size, media_type, kind, tuple(users[digest]), digest in held_before)
        for digest, (size, media_type, kind) in described.items()
    ]
    summaries = []
    for image in images:
        ref = str(image.ref)
        others = held_before.union(*(per_image[other] for other in per_image if other != ref))
        summaries.append(
            ImageSummary(
                ref,
                tuple(pm.platform for pm in image.manifests),
                sum(described[d][0] for d in per_image[ref]),
                sum(described[d][0] for d in per_image[ref] - others),
            )
        )
    analysis = Analysis(summaries, blobs, against=[str(old.ref) for old in old_images])
    if old_images and download is not None:
        analysis.deltas = _deltas(images, old_images, held_before, download, delta_budget, work_dir)
    return analysis


def _blobs_with_kinds(image: ResolvedImage) -> list[tuple[Blob, str]]:
    kinds = {}
    if image.top.digest != image.manifests[0].manifest.digest:
        kinds[image.top.digest] = "index"
    for pm in image.manifests:
        doc = pm.manifest.json()
        kinds[pm.manifest.digest] = "manifest"
        kinds[doc["config"]["digest"]] = "config"
        for layer in doc.get("layers", []):
            kinds.setdefault(layer["digest"], "layer")
    return [(blob, kinds.get(blob.digest, "layer")) for blob in image_blobs(image)]


def _deltas(
    images: Sequence[ResolvedImage],
    old_images: Sequence[ResolvedImage],
    held_before: set[str],
    download: Download,
    budget: int,
    work_dir: Path | None,
) -> list[LayerDelta]:
    """Pair each new image's layers with its old version's (same repository, else the only old
    image; same platform; same position) and delta those that changed."""
    deltas: list[LayerDelta] = []
    seen: set[tuple[str, str]] = set()
    left = budget
    with tempfile.TemporaryDirectory(prefix=".catalog-analyze-", dir=work_dir) as tmp:
        work = Path(tmp)
        for image in images:
            old = _previous(image, old_images)
            if old is None:
                continue
            old_layers = {pm.platform: pm.manifest.json().get("layers", []) for pm in old.manifests}
            for pm in image.manifests:
                for old_layer, new_layer in zip(
                    old_layers.get(pm.platform, []), pm.manifest.json().get("layers", []), strict=False
                ):
                    pair = (old_layer["digest"], new_layer["digest"])
                    if pair[1] in held_before or pair in seen:
                        continue  # unchanged (the node holds it) or already computed
                    seen.add(pair)
                    cost = int(old_layer["size"]) + int(new_layer["size"])
                    row = LayerDelta(pm.platform, pair[0], pair[1], int(new_layer["size"]), None)
                    if cost > left:
                        deltas.append(_skipped(row, f"over the byte budget ({cost} bytes, {left} left)"))
                        continue
                    left -= cost
                    deltas.append(_compute(row, old.ref, image.ref, download, work))
    return deltas


def _compute(row: LayerDelta, old_ref: Reference, new_ref: Reference, download: Download, work: Path) -> LayerDelta:
    old_path, new_path, out = work / "old", work / "new", work / "delta"
    download(old_ref, row.old_digest, old_path)
    download(new_ref, row.new_digest, new_path)
    try:
        info = make_delta(old_path, new_path, out)
        assert info is not None  # min_savings 0 keeps every delta
        return LayerDelta(row.platform, row.old_digest, row.new_digest, row.new_size, info.size)
    finally:
        for path in (old_path, new_path, out):
            path.unlink(missing_ok=True)


def _skipped(row: LayerDelta, why: str) -> LayerDelta:
    return LayerDelta(row.platform, row.old_digest, row.new_digest, row.new_size, None, why)


def _previous(image: ResolvedImage, old_images: Sequence[ResolvedImage]) -> ResolvedImage | None:
    same = [old for old in old_images if old.ref.repository == image.ref.repository]
    if same:
        return same[0]
    return old_images[0] if len(old_images) == 1 else None


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def to_json(analysis: Analysis) -> dict[str, object]:
    return {
        "images": [vars(image) | {"platforms": list(image.platforms)} for image in analysis.images],
        "against": analysis.against,
        "blobs": [
            vars(blob) | {"images": list(blob.images), "shared": len(blob.images) > 1} for blob in analysis.blobs
        ],
        "deltas": [vars(delta) | {"saved": delta.saved} for delta in analysis.deltas],
        "totals": analysis.totals(),
    }


def render_table(analysis: Analysis) -> str:
    """The human form: images, then layers, then deltas, then totals."""
    lines = ["IMAGE                                              PLATFORMS        BYTES      MARGINAL"]
    for image in analysis.images:
        lines.append(
            f"{image.ref:<50} {','.join(image.platforms):<16} {_size(image.bytes):>10} {_size(image.marginal_bytes):>10}"
        )
    lines += ["", "BLOB           KIND      SIZE       USED BY  HELD  IMAGES"]
    for blob in sorted(analysis.blobs, key=lambda b: -b.size):
        held = "yes" if blob.in_old else "no"
        lines.append(
            f"{blob.digest[7:19]:<14} {blob.kind:<9} {_size(blob.size):>10} {len(blob.images):>7}  "
            f"{held:<4}  {', '.join(blob.images)}"
        )
    if analysis.deltas:
        lines += ["", "CHANGED LAYER  FROM          PLATFORM      SIZE      DELTA  SAVED"]
        for delta in analysis.deltas:
            shown = _size(delta.delta_size) if delta.delta_size is not None else "-"
            saved = _share(delta.saved, delta.new_size) if delta.delta_size is not None else 0.0
            lines.append(
                f"{delta.new_digest[7:19]:<14} {delta.old_digest[7:19]:<13} {delta.platform:<13} "
                f"{_size(delta.new_size):>8} {shown:>10}  {saved:.0%}{'  ' + delta.skipped if delta.skipped else ''}"
            )
    totals = analysis.totals()
    lines += [
        "",
        f"pulled separately: {_size(analysis.separate_bytes)}; through a cache (each blob once): "
        f"{_size(analysis.unique_bytes)} ({totals['shared_saving']:.0%} saved by sharing)",
    ]
    if analysis.against:
        lines.append(
            f"given {', '.join(analysis.against)}: fetch {_size(analysis.fetch_given_old)} "
            f"({totals['cache_saving']:.0%} saved), with deltas {_size(analysis.fetch_with_deltas)} "
            f"({totals['delta_saving']:.0%} saved)"
        )
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"

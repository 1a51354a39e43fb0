"""`catalog analyze` on a realistic update: two versions of a Debian rootfs image built with
mmdebstrap (v1: bookworm main as released; v2: the same with bookworm-updates and -security
upgrades plus curl and ca-certificates added), each one rootfs layer, pushed to a local
docker-registry as an uncompressed tar layer and as a zstd layer. Reports the egress a node that
runs v1 saves on v2 through the cache (layer sharing) and through deltas, and how long the delta
took to compute; the seed literature quotes "20-60% lower egress with aggressive delta application".

    bench-run .venv/bin/python bench/layer_overlap.py [--rootfs-dir DIR]

The rootfs tarballs (~170 MB each, ~30 s per build) are kept in --rootfs-dir between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zstandard  # noqa: E402

from bench._common import OriginRegistry, Table, workdir, write_result  # noqa: E402
from catalog.analyze import analyze  # noqa: E402
from catalog.build import resolve_image  # noqa: E402
from catalog.registry import RegistryClient, parse_reference  # noqa: E402
from tests.support.images import OCI_MANIFEST, push_blob, push_manifest  # noqa: E402

EPOCH = "1704067200"  # SOURCE_DATE_EPOCH: unchanged files get identical tar entries in both builds
VERSIONS = {
    "v1": ["bookworm", "{out}", "deb http://deb.debian.org/debian bookworm main"],
    "v2": ["--include=curl,ca-certificates", "bookworm", "{out}"],  # the host's sources: updates, security
}
FORMATS = {"tar": "application/vnd.oci.image.layer.v1.tar", "zstd": "application/vnd.oci.image.layer.v1.tar+zstd"}


def build_rootfs(version: str, out: Path) -> Path:
    if not out.exists():
        args = [a.format(out=out.with_suffix(".partial.tar")) for a in VERSIONS[version]]
        subprocess.run(
            ["mmdebstrap", "--variant=minbase", "--mode=unshare", "--quiet", *args],
            check=True,
            env=os.environ | {"SOURCE_DATE_EPOCH": EPOCH},
        )
        out.with_suffix(".partial.tar").rename(out)
    return out


def zstd_of(source: Path, out: Path) -> Path:
    if not out.exists():
        with open(source, "rb") as src, open(out, "wb") as dst:
            zstandard.ZstdCompressor(level=3).copy_stream(src, dst)
    return out


def push_image(origin: OriginRegistry, repo: str, tag: str, layer: Path, media_type: str) -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": push_blob(origin, repo, config),
            "size": len(config),
        },
        "layers": [{"mediaType": media_type, "digest": push_blob(origin, repo, layer), "size": layer.stat().st_size}],
    }
    push_manifest(origin, repo, tag, json.dumps(manifest).encode(), OCI_MANIFEST)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rootfs-dir", type=Path, default=Path("/tmp/registry-mirror-bench-rootfs"))
    args = parser.parse_args()
    args.rootfs_dir.mkdir(parents=True, exist_ok=True)
    layers = {}
    for version in VERSIONS:
        tar = build_rootfs(version, args.rootfs_dir / f"{version}.tar")
        layers[(version, "tar")] = tar
        layers[(version, "zstd")] = zstd_of(tar, args.rootfs_dir / f"{version}.tar.zst")
    rows, results = [], {}
    with workdir("layer-overlap") as work, OriginRegistry(work / "origin") as origin:
        for fmt, media_type in FORMATS.items():
            repo = f"bench/rootfs-{fmt}"
            for version in VERSIONS:
                push_image(origin, repo, version, layers[(version, fmt)], media_type)
            with RegistryClient(origin.host, insecure=True) as client:
                new = resolve_image(client, parse_reference(f"{origin.host}/{repo}:v2"), ())
                old = resolve_image(client, parse_reference(f"{origin.host}/{repo}:v1"), ())
                started = time.perf_counter()
                result = analyze(
                    [new],
                    [old],
                    delta_budget=4 << 30,
                    work_dir=work,
                    download=lambda ref, digest, path: client.download_blob(ref.repository, digest, path),
                )
                seconds = time.perf_counter() - started
            totals = result.totals()
            [delta] = result.deltas
            results[fmt] = {
                "v1_layer": layers[("v1", fmt)].stat().st_size,
                "v2_layer": delta.new_size,
                "delta": delta.delta_size,
                "seconds": round(seconds, 2),
                **totals,
            }
            rows.append(
                [
                    fmt,
                    delta.new_size / 1e6,
                    (delta.delta_size or 0) / 1e6,
                    totals["fetch_given_old"] / 1e6,
                    totals["fetch_with_deltas"] / 1e6,
                    f"{totals['cache_saving']:.0%}",
                    f"{totals['delta_saving']:.0%}",
                    round(seconds, 1),
                ]
            )
    table = Table(
        [
            "layer",
            "v2 layer MB",
            "delta MB",
            "fetch, cache only MB",
            "fetch with delta MB",
            "saved: cache",
            "saved: cache+delta",
            "analyze s",
        ],
        rows,
    )
    write_result("layer_overlap", {"formats": results, "versions": VERSIONS}, [table])


if __name__ == "__main__":
    main()

"""A node's v1 -> v2 update of one layer, with and without a catalog delta: bytes the origin sent
(its access log) and the time until the v2 blob is committed in nvme_cache.

Cases: 256 MiB incompressible blob, 5% changed (4 regions, 2 of them insertions), and a gzip layer
of 64 MiB compressible content with the same kind of change. The delta path is the mirror's own
(`catalog.delta_source.DeltaSources` wrapping the aiohttp origin source, base blob cached); rebuild
throughput is `apply_delta` alone. Interleaved rounds, medians; results in bench/results/.

    .venv/bin/python bench/catalog_update.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datetime import UTC, datetime, timedelta  # noqa: E402

from bench._common import MiB, OriginRegistry, Table, interleaved, median, workdir, write_result  # noqa: E402
from catalog.delta import apply_delta, make_delta  # noqa: E402
from catalog.delta_source import DeltaSources, DeltaTable  # noqa: E402
from catalog.models import Blob, Catalog, Delta, DeltaBlob  # noqa: E402
from nvme_cache import BlobStore, Digest  # noqa: E402
from registry_mirror.api import SourceLayer  # noqa: E402
from registry_mirror.config import UpstreamSettings  # noqa: E402
from registry_mirror.upstream import origin_source  # noqa: E402
from registry_mirror.upstream._client import UpstreamClient  # noqa: E402
from tests.support.images import push_blob  # noqa: E402

REPO = "bench/update"
GOAL_DELTA_RATIO = 0.10
GOAL_REBUILD_MBPS = 200.0


def changed(data: bytes, share: float, seed: int) -> bytes:
    """`share` of the size changed in 4 regions: 2 overwritten, 2 inserted."""
    rng = random.Random(seed)
    out = bytearray(data)
    region = int(len(data) * share / 4)
    for i, where in enumerate(sorted(rng.sample(range(len(data) - region), 4), reverse=True)):
        patch = rng.randbytes(region)
        if i % 2:
            out[where:where] = patch
        else:
            out[where : where + region] = patch
    return bytes(out)


def compressible(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randint(3, 9)).hex() for _ in range(5000)]
    parts, total = [], 0
    while total < size:
        line = " ".join(rng.choices(words, k=12)) + "\n"
        parts.append(line)
        total += len(line)
    return "".join(parts).encode()[:size]


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def fill_once(
    origin: OriginRegistry, cache: Path, base: tuple[str, Path], target: tuple[str, int], delta: tuple[str, int] | None
) -> tuple[float, int, str]:
    """Cache `base`, then fill `target` (through the delta wrapper when `delta`): seconds, origin bytes, source."""
    store = BlobStore(cache, max_size=8 << 30)
    store.open()
    client = UpstreamClient(UpstreamSettings(name=origin.host, url=origin.url))
    try:
        await _fill(store, client, base[0])  # the node has v1 (fetched before the marker)
        deltas = DeltaSources(store, cache.parent / f"{cache.name}-work", insecure=True)
        deltas.prepare()
        if delta is not None:
            cat = Catalog(
                "bench",
                1,
                datetime.now(UTC),
                datetime.now(UTC) + timedelta(days=1),
                blobs=(Blob(target[0], target[1], "application/octet-stream", REPO),),
                deltas=(Delta(base[0], target[0], DeltaBlob(delta[0], delta[1])),),
            )
            deltas.use("bench", DeltaTable.of(cat, origin.host, REPO))
        marker = origin.clear_log_marker()
        started = time.perf_counter()
        source = await _fill(store, client, target[0], deltas.wrap)
        seconds = time.perf_counter() - started
        sent = sum(e.bytes for e in origin.blob_gets(since=marker))
        return seconds, sent, source
    finally:
        await client.aclose()
        await store.aclose()


async def _fill(store: BlobStore, client: UpstreamClient, digest: str, wrap: SourceLayer | None = None) -> str:
    d = Digest.parse(digest)
    source = origin_source(client, REPO, d, "origin")
    if wrap is not None:
        source = wrap(d, source, None)
    fill = store.get(d, source)
    await fill.wait()  # type: ignore[union-attr]
    assert store.stat(d) is not None, f"{digest} was not committed"
    return getattr(fill, "source", "cache")


def run_case(name: str, v1: bytes, v2: bytes, origin: OriginRegistry, work: Path, rounds: int) -> dict[str, object]:
    base_path, new_path = work / f"{name}.v1", work / f"{name}.v2"
    base_digest, new_digest = write(base_path, v1), write(new_path, v2)
    del v1, v2
    delta_path = work / f"{name}.delta"
    started = time.perf_counter()
    info = make_delta(base_path, new_path, delta_path)
    make_seconds = time.perf_counter() - started
    assert info is not None
    for path in (base_path, new_path, delta_path):
        push_blob(origin, REPO, path)
    rebuild_seconds = []
    for i in range(rounds):
        started = time.perf_counter()
        apply_delta(base_path, delta_path, work / f"{name}.rebuilt{i}", new_digest, new_path.stat().st_size)
        rebuild_seconds.append(time.perf_counter() - started)
        (work / f"{name}.rebuilt{i}").unlink()
    results: dict[str, list[tuple[float, int, str]]] = {"full blob": [], "delta": []}
    for index, variant in interleaved(list(results), rounds):
        cache = work / f"{name}-{variant.replace(' ', '-')}-{index}"
        delta = (info.digest, info.size) if variant == "delta" else None
        results[variant].append(
            asyncio.run(
                fill_once(origin, cache, (base_digest, base_path), (new_digest, new_path.stat().st_size), delta)
            )
        )
    size = new_path.stat().st_size
    return {
        "case": name,
        "blob_bytes": size,
        "delta_bytes": info.size,
        "delta_ratio": info.size / size,
        "make_delta_s": make_seconds,
        "rebuild_s": median(rebuild_seconds),
        "rebuild_MBps": size / median(rebuild_seconds) / 1e6,
        "full": {
            "origin_bytes": median([r[1] for r in results["full blob"]]),
            "seconds": median([r[0] for r in results["full blob"]]),
            "source": results["full blob"][0][2],
        },
        "delta": {
            "origin_bytes": median([r[1] for r in results["delta"]]),
            "seconds": median([r[0] for r in results["delta"]]),
            "source": results["delta"][0][2],
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=256, help="the uncompressed blob")
    args = parser.parse_args()
    cases = []
    with workdir("catalog-update") as work:
        origin = OriginRegistry(work / "origin").start()
        try:
            raw = b"".join(random.Random(i).randbytes(MiB) for i in range(args.size_mib))
            cases.append(
                run_case(
                    f"{args.size_mib} MiB uncompressed, 5% changed",
                    raw,
                    changed(raw, 0.05, 2),
                    origin,
                    work,
                    args.rounds,
                )
            )
            del raw
            text = compressible(64 * MiB, 3)
            cases.append(
                run_case(
                    "gzip layer of 64 MiB text, 5% changed",
                    gzip.compress(text, 6, mtime=0),
                    gzip.compress(changed(text, 0.05, 4), 6, mtime=0),
                    origin,
                    work,
                    args.rounds,
                )
            )
        finally:
            origin.stop()
    table = Table(
        [
            "case",
            "blob MiB",
            "origin MiB (full)",
            "s (full)",
            "origin MiB (delta)",
            "s (delta)",
            "delta/blob",
            "rebuild MB/s",
        ],
        [],
    )
    for c in cases:
        full, delta = c["full"], c["delta"]
        table.rows.append(
            [
                c["case"],
                c["blob_bytes"] / MiB,
                full["origin_bytes"] / MiB,
                full["seconds"],  # type: ignore[index,operator]
                delta["origin_bytes"] / MiB,
                delta["seconds"],
                c["delta_ratio"],
                c["rebuild_MBps"],
            ]
        )  # type: ignore[index,operator]
    goals = {
        "delta_ratio_uncompressed_max": GOAL_DELTA_RATIO,
        "rebuild_MBps_min": GOAL_REBUILD_MBPS,
        "met": cases[0]["delta_ratio"] <= GOAL_DELTA_RATIO and cases[0]["rebuild_MBps"] >= GOAL_REBUILD_MBPS,
    }  # type: ignore[operator]
    write_result("catalog_update", {"rounds": args.rounds, "cases": cases, "goals": goals}, [table])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

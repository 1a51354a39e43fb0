"""Measure delta sizes and costs for catalog layer deltas.

Cases: a seeded-random 256 MiB blob with 5% changed (a few replaced regions plus insertions, so
offsets shift), delta'd with (a) `zstandard` with the old blob as a raw-content dictionary,
(b) `pyzstd` with the old blob as a referenced prefix + long-distance matching (catalog.delta),
(c) the `zstd --patch-from` CLI as a reference; and a gzip layer case (gzip of a tar whose
content changed 5%). Each method runs in a child process so peak RSS is its own.

    .venv/bin/python bench/catalog_delta.py [--size-mib 256] [--gzip-mib 64]

Prints a table and writes bench/results/catalog_delta.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CHUNK = 1 << 20


def seeded_bytes(rng: random.Random, size: int, compressible: bool) -> bytes:
    # randbytes overflows above 256 MiB in one call: build it in 16 MiB pieces.
    raw = b"".join(rng.randbytes(min(16 << 20, size - i)) for i in range(0, size, 16 << 20))
    if not compressible:
        return raw
    # 16 symbols: about 50% compressible, like text or quantized data, so deflate really codes it.
    return raw.translate(bytes(b"abcdefghijklmnop"[i % 16] for i in range(256)))


def write_pair(old: Path, new: Path, size: int, seed: int, compressible: bool = False) -> None:
    """Old blob: seeded random. New: 5% of it changed in 4 regions, 2 of them insertions."""
    rng = random.Random(seed)
    base = bytearray(seeded_bytes(rng, size, compressible))
    old.write_bytes(base)
    changed = size // 20
    per_region = changed // 4
    for region in range(4):
        pos = rng.randrange(size - per_region)
        fresh = seeded_bytes(rng, per_region, compressible)
        if region % 2:
            base[pos:pos] = fresh  # insertion: shifts every later offset
        else:
            base[pos : pos + per_region] = fresh
    new.write_bytes(base)
    del base


def write_gzip_tar(tar_gz: Path, payload: Path) -> None:
    with open(tar_gz, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                info = tar.gettarinfo(str(payload), arcname="weights.bin")
                info.mtime = 0
                with open(payload, "rb") as f:
                    tar.addfile(info, f)


# ---- one method per child process -----------------------------------------------------


def run_method(method: str, old: str, new: str, out: str, level: int) -> None:
    if method == "pyzstd-prefix":
        from catalog.delta import make_delta

        make_delta(Path(old), Path(new), Path(out), level=level)
    elif method == "pyzstd-apply":
        import hashlib

        from catalog.delta import apply_delta

        digest = hashlib.sha256()
        with open(new, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
        # argv: old=base, new=target (for its digest), out=delta; rebuilt goes beside it
        apply_delta(Path(old), Path(out), Path(out + ".rebuilt"), "sha256:" + digest.hexdigest(), os.path.getsize(new))
    elif method == "zstandard-rawdict":
        import zstandard

        with open(old, "rb") as f:
            dictionary = zstandard.ZstdCompressionDict(f.read(), dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        compressor = zstandard.ZstdCompressor(level=level, dict_data=dictionary)
        with open(new, "rb") as src, open(out, "wb") as dst:
            compressor.copy_stream(src, dst, read_size=CHUNK, write_size=CHUNK)
    elif method == "zstd-plain":
        import zstandard

        with open(new, "rb") as src, open(out, "wb") as dst:
            zstandard.ZstdCompressor(level=level).copy_stream(src, dst, read_size=CHUNK, write_size=CHUNK)
    else:
        raise SystemExit(f"unknown method {method}")


def measure(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed with {proc.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss // 1024


def make_pair(old: Path, new: Path, size: int, seed: int, compressible: bool) -> None:
    # Generated in a child so this parent stays small: a forked child's peak RSS counts the
    # parent's pages until exec, which would hide the real cost of each method.
    cmd = [sys.executable, __file__, "--make-pair", str(old), str(new), str(size), str(seed), str(int(compressible))]
    subprocess.run(cmd, check=True)


def child(method: str, old: Path, new: Path, out: Path, level: int) -> list[str]:
    return [sys.executable, __file__, "--child", method, str(old), str(new), str(out), str(level)]


def bench_pair(label: str, old: Path, new: Path, work: Path, level: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    new_size = new.stat().st_size
    methods = ["zstd-plain", "zstandard-rawdict", "pyzstd-prefix"]
    for method in methods:
        out = work / f"{label}.{method}.zst"
        seconds, rss = measure(child(method, old, new, out, level))
        rows.append(row(label, method, out.stat().st_size, new_size, seconds, rss))
        if method == "pyzstd-prefix":
            seconds, rss = measure(child("pyzstd-apply", old, new, out, level))
            rebuilt = Path(str(out) + ".rebuilt")
            same = subprocess.run(["cmp", "-s", str(rebuilt), str(new)]).returncode == 0
            rows.append(
                row(label, "pyzstd-apply (rebuild)", rebuilt.stat().st_size, new_size, seconds, rss)
                | {"byte_exact": same}
            )
            rebuilt.unlink()
        out.unlink()
    if shutil.which("zstd"):
        out = work / f"{label}.cli.zst"
        seconds, rss = measure(["zstd", "-q", "-f", f"-{level}", f"--patch-from={old}", str(new), "-o", str(out)])
        rows.append(row(label, "zstd --patch-from (CLI)", out.stat().st_size, new_size, seconds, rss))
        out.unlink()
    return rows


def row(case: str, method: str, size: int, source: int, seconds: float, rss_mib: int) -> dict[str, object]:
    return {
        "case": case,
        "method": method,
        "output_bytes": size,
        "source_bytes": source,
        "ratio": round(size / source, 4),
        "seconds": round(seconds, 2),
        "peak_rss_mib": rss_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--gzip-mib", type=int, default=64)
    parser.add_argument("--level", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20240101)
    parser.add_argument("--child", nargs=5, metavar=("METHOD", "OLD", "NEW", "OUT", "LEVEL"))
    parser.add_argument("--make-pair", nargs=5, metavar=("OLD", "NEW", "SIZE", "SEED", "COMPRESSIBLE"))
    parser.add_argument("--gzip-tar", nargs=2, metavar=("PAYLOAD", "OUT"))
    args = parser.parse_args()
    if args.gzip_tar:
        write_gzip_tar(Path(args.gzip_tar[1]), Path(args.gzip_tar[0]))
        return
    if args.make_pair:
        old, new, size, seed, compressible = args.make_pair
        write_pair(Path(old), Path(new), int(size), int(seed), compressible == "1")
        return
    if args.child:
        method, old, new, out, level = args.child
        run_method(method, old, new, out, int(level))
        return
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="catalog-delta-bench-") as tmp:
        work = Path(tmp)
        old, new = work / "old.bin", work / "new.bin"
        make_pair(old, new, args.size_mib << 20, args.seed, False)
        rows += bench_pair(f"raw {args.size_mib} MiB, 5% changed", old, new, work, args.level)
        make_pair(old, new, args.gzip_mib << 20, args.seed + 1, True)
        rows += bench_pair(f"compressible {args.gzip_mib} MiB, raw", old, new, work, args.level)
        old_gz, new_gz = work / "old.tar.gz", work / "new.tar.gz"
        subprocess.run([sys.executable, __file__, "--gzip-tar", str(old), str(old_gz)], check=True)
        subprocess.run([sys.executable, __file__, "--gzip-tar", str(new), str(new_gz)], check=True)
        rows += bench_pair(f"tar.gz of {args.gzip_mib} MiB, 5% changed", old_gz, new_gz, work, args.level)
    header = f"{'case':34} {'method':26} {'output':>12} {'ratio':>7} {'sec':>7} {'RSS MiB':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['case']:34} {r['method']:26} {r['output_bytes']:>12} {r['ratio']:>7} {r['seconds']:>7} {r['peak_rss_mib']:>8}"
        )
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    meta = {
        "size_mib": args.size_mib,
        "gzip_mib": args.gzip_mib,
        "level": args.level,
        "seed": args.seed,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    (results / "catalog_delta.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

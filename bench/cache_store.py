"""nvme_cache on its own (no HTTP): warm read, fill, restart with 100,000 blobs, peak RSS of a fill
with 16 readers, and aiofiles vs run_in_executor(os.pread) for the 1 MiB chunk read loop.

- warm read: CachedBlob.read of a 1 GiB blob vs `cat FILE > /dev/null` and two bare loops
  (sequential run_in_executor(os.pread); aiofiles read(1 MiB)); the file is read just before each.
- fill: BlobStore fill from an in-memory source (chunks made on the fly) vs a plain loop that
  writes and sha256-hashes the same bytes; both end with fsync, as the fill's commit does.
- restart: BlobStore.open() over 100,000 tiny blob files with a valid index, and with the index
  deleted (full rebuild from the directory scan). The files sit on tmpfs by default (--many-root):
  creating them on this VM's disk costs ~1 ms each; open() reads directory entries only, which a
  restarted node has in its dentry cache too.
- peak RSS: a child process fills 1 GiB while 16 readers stream it; VmHWM after minus before.

    .venv/bin/python bench/cache_store.py [--size-mib 1024] [--rounds 3] [--blobs 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

from _common import MiB, Table, interleaved, median, proc_status_kib, read_warm, workdir, write_result

from nvme_cache import BlobStore, CachedBlob, Digest, Fill

_BLOCK = os.urandom(MiB)


# -- an in-memory source ----------------------------------------------------------------------------
def chunks(size: int, seed: int) -> Iterator[bytes]:
    """Distinct 1 MiB chunks made on the fly: a counter stamped on one random block."""
    for index in range(0, size, MiB):
        yield (index // MiB + seed).to_bytes(8, "little") + _BLOCK[8 : min(MiB, size - index)]


def digest_of(size: int, seed: int) -> Digest:
    hasher = hashlib.sha256()
    for chunk in chunks(size, seed):
        hasher.update(chunk)
    return Digest("sha256", hasher.hexdigest())


class MemoryStream:
    source = "origin"

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self._seed = seed

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in chunks(self.size, self._seed):
            yield chunk


def memory_source(size: int, seed: int) -> Callable[[], contextlib.AbstractAsyncContextManager[MemoryStream]]:
    @contextlib.asynccontextmanager
    async def open_source() -> AsyncIterator[MemoryStream]:
        yield MemoryStream(size, seed)

    return open_source


async def fill(store: BlobStore, digest: Digest, size: int, seed: int) -> Fill:
    handle = store.get(digest, memory_source(size, seed))
    assert isinstance(handle, Fill)
    await handle.wait()
    if not handle.committed:
        raise RuntimeError("fill did not commit")
    return handle


def new_store(root: Path) -> BlobStore:
    store = BlobStore(root, max_size=64 * 1024 * MiB, min_free_bytes=0)
    store.open()
    return store


# -- warm read --------------------------------------------------------------------------------------
async def read_store(store: BlobStore, digest: Digest, path: Path) -> int:
    info = store.stat(digest)
    assert info is not None
    return sum([len(c) async for c in CachedBlob(store, digest, info).read()])


async def read_pread(store: BlobStore, digest: Digest, path: Path) -> int:
    loop = asyncio.get_running_loop()
    fd = os.open(path, os.O_RDONLY)
    total = 0
    try:
        while data := await loop.run_in_executor(None, os.pread, fd, MiB, total):
            total += len(data)
    finally:
        os.close(fd)
    return total


async def read_aiofiles(store: BlobStore, digest: Digest, path: Path) -> int:
    import aiofiles

    total = 0
    async with aiofiles.open(path, "rb") as src:
        while data := await src.read(MiB):
            total += len(data)
    return total


async def read_cat(store: BlobStore, digest: Digest, path: Path) -> int:
    proc = await asyncio.create_subprocess_shell(f"cat {path} > /dev/null")
    if await proc.wait() != 0:
        raise RuntimeError("cat failed")
    return path.stat().st_size


READERS: dict[str, Callable[[BlobStore, Digest, Path], Awaitable[int]]] = {
    "cat > /dev/null": read_cat,
    "CachedBlob.read (pread + read-ahead)": read_store,
    "loop: run_in_executor(os.pread)": read_pread,
    "loop: aiofiles read(1 MiB)": read_aiofiles,
}


async def warm_read(root: Path, size: int, rounds: int) -> dict[str, list[float]]:
    store = new_store(root / "read")
    digest = digest_of(size, seed=1)
    await fill(store, digest, size, seed=1)
    path = store.layout.blob_path(digest)
    speeds: dict[str, list[float]] = {name: [] for name in READERS}
    try:
        for _, name in interleaved(list(READERS), rounds):
            read_warm(path)
            started = time.perf_counter()
            got = await READERS[name](store, digest, path)
            elapsed = time.perf_counter() - started
            if got != size:
                raise RuntimeError(f"{name} read {got} of {size}")
            speeds[name].append(size / elapsed / 1e9)
    finally:
        await store.aclose()
    return speeds


# -- fill ---------------------------------------------------------------------------------------------
async def fill_store(root: Path, size: int, seed: int) -> None:
    store = new_store(root)
    try:
        await fill(store, digest_of(size, seed), size, seed)
    finally:
        await store.aclose()


def write_and_hash(path: Path, size: int, seed: int) -> None:
    hasher = hashlib.sha256()
    with path.open("wb") as out:
        for chunk in chunks(size, seed):
            out.write(chunk)
            hasher.update(chunk)
        out.flush()
        os.fsync(out.fileno())


async def fill_throughput(root: Path, size: int, rounds: int) -> dict[str, list[float]]:
    variants = ["BlobStore fill", "write + sha256 loop"]
    speeds: dict[str, list[float]] = {name: [] for name in variants}
    for round_no, name in interleaved(variants, rounds):
        place = root / f"fill-{round_no}-{len(speeds[name])}-{name.split()[0]}"
        place.mkdir(parents=True)
        seed = 100 + round_no
        digest_of(size, seed)  # same warm-up for both: the chunk maker and the hasher
        started = time.perf_counter()
        if name == "BlobStore fill":
            await fill_store(place, size, seed)
        else:
            write_and_hash(place / "plain", size, seed)
        speeds[name].append(size / (time.perf_counter() - started) / 1e9)
        subprocess.run(["rm", "-rf", str(place)], check=True)
    return speeds


# -- restart --------------------------------------------------------------------------------------------
def make_many_blobs(root: Path, count: int) -> None:
    """`count` one-byte blob files named by made-up digests (open() reads only directory entries)."""
    base = root / "blobs" / "sha256"
    for prefix in range(256):
        (base / f"{prefix:02x}").mkdir(parents=True, exist_ok=True)
    for number in range(count):
        hex_ = hashlib.sha256(number.to_bytes(8, "little")).hexdigest()
        fd = os.open(base / hex_[:2] / hex_, os.O_WRONLY | os.O_CREAT, 0o644)
        os.ftruncate(fd, 1)
        os.close(fd)


def time_open(root: Path) -> tuple[float, int]:
    started = time.perf_counter()
    store = BlobStore(root, max_size=64 * 1024 * MiB, min_free_bytes=0)
    store.open()
    elapsed = time.perf_counter() - started
    count = len(store.index)
    store.close()
    return elapsed, count


def restart_times(root: Path, count: int, rounds: int) -> dict[str, list[float]]:
    place = root / "many"
    started = time.perf_counter()
    make_many_blobs(place, count)
    print(f"created {count} blob files in {time.perf_counter() - started:.1f}s")
    time_open(place)  # builds the index the first time
    variants = ["open() with valid index", "open() after index deleted (rebuild)"]
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _, name in interleaved(variants, rounds):
        if name.endswith("(rebuild)"):
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{place / 'index.sqlite'}{suffix}")
        elapsed, found = time_open(place)
        if found != count:
            raise RuntimeError(f"{name}: index holds {found} blobs, expected {count}")
        seconds[name].append(elapsed)
    subprocess.run(["rm", "-rf", str(place)], check=True)
    return seconds


# -- peak RSS (child process) ----------------------------------------------------------------------------
async def child_rss(root: Path, size: int, readers: int) -> dict[str, int]:
    store = new_store(root)
    digest = digest_of(size, seed=7)
    await asyncio.sleep(0)
    idle = proc_status_kib("self", "VmHWM")
    handle = store.get(digest, memory_source(size, seed=7))

    async def drain() -> int:
        return sum([len(c) async for c in handle.read()])

    got = await asyncio.gather(*(drain() for _ in range(readers)))
    await handle.wait()
    await store.aclose()
    if any(g != size for g in got):
        raise RuntimeError(f"a reader got {got}")
    peak = proc_status_kib("self", "VmHWM")
    return {"idle_hwm_kib": idle, "peak_hwm_kib": peak, "delta_kib": peak - idle, "readers": readers}


def peak_rss(root: Path, size: int, readers: int) -> dict[str, int]:
    place = root / "rss"
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child-rss",
            str(place),
            "--size-mib",
            str(size // MiB),
            "--readers",
            str(readers),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    subprocess.run(["rm", "-rf", str(place)], check=True)
    return json.loads(out.strip().splitlines()[-1])


# -- main ----------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blobs", type=int, default=100_000)
    parser.add_argument("--readers", type=int, default=16)
    parser.add_argument(
        "--many-root",
        type=Path,
        default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None,
        help="where the 100,000 tiny blobs go (default tmpfs: the VM disk takes ~1 ms per create)",
    )
    parser.add_argument("--read-rounds", type=int, default=7, help="warm reads are short: more rounds")
    parser.add_argument("--name", default="cache_store", help="results file name (A/B runs)")
    parser.add_argument("--child-rss", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.size_mib * MiB
    runner = _runner()
    if args.child_rss is not None:
        print(json.dumps(runner(child_rss(args.child_rss, size, args.readers))))
        return
    with workdir("store") as work:
        reads = runner(warm_read(work, size, args.read_rounds))
        fills = runner(fill_throughput(work, size, args.rounds))
        with workdir("many", args.many_root) as many:
            restarts = restart_times(many, args.blobs, args.rounds)
        rss = peak_rss(work, size, args.readers)
    report(reads, fills, restarts, rss, args)


def _runner() -> Callable[..., object]:
    try:
        import uvloop  # the app runs on uvloop

        return uvloop.run
    except ImportError:
        return asyncio.run


def report(
    reads: dict[str, list[float]],
    fills: dict[str, list[float]],
    restarts: dict[str, list[float]],
    rss: dict[str, int],
    args: argparse.Namespace,
) -> None:
    def speed_rows(speeds: dict[str, list[float]], base: str) -> list[list[object]]:
        ref = median(speeds[base])
        return [[name, median(v), min(v), max(v), median(v) / ref] for name, v in speeds.items()]

    tables = [
        Table(["warm read 1 GiB", "GB/s median", "min", "max", "x cat"], speed_rows(reads, "cat > /dev/null")),
        Table(
            ["fill 1 GiB (+fsync)", "GB/s median", "min", "max", "x plain loop"],
            speed_rows(fills, "write + sha256 loop"),
        ),
        Table(
            [f"restart, {args.blobs} blobs", "s median", "min", "max"],
            [[name, median(v), min(v), max(v)] for name, v in restarts.items()],
        ),
        Table(
            ["peak RSS, 1 GiB fill", "readers", "idle VmHWM MiB", "peak VmHWM MiB", "delta MiB"],
            [
                [
                    "fill + readers",
                    rss["readers"],
                    rss["idle_hwm_kib"] / 1024,
                    rss["peak_hwm_kib"] / 1024,
                    rss["delta_kib"] / 1024,
                ]
            ],
        ),
    ]
    write_result(
        args.name,
        {
            "blob_bytes": args.size_mib * MiB,
            "rounds": args.rounds,
            "read_rounds": args.read_rounds,
            "blobs": args.blobs,
            "warm_read_gb_per_s": reads,
            "fill_gb_per_s": fills,
            "restart_seconds": restarts,
            "peak_rss": rss,
        },
        tables,
    )


if __name__ == "__main__":
    main()

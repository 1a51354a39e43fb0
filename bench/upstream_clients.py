"""Relay a cold 1 GiB blob from a real local docker-registry: httpx vs aiohttp, side by side.

Each variant streams the whole blob from the origin and drops the bytes (the relay's socket send is
not what is measured here; the client's receive path is). Variants run in interleaved rounds so a
noisy neighbour hits all of them alike; the report gives medians and ratios against httpx aiter_raw.

    .venv/bin/python bench/upstream_clients.py [--size-mib 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx

MiB = 1024 * 1024
REPO = "bench/blob"
RESULTS = Path(__file__).parent / "results" / "upstream_clients.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_registry(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = workdir / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn, accesslog: {disabled: true}}\n"
        f"storage: {{filesystem: {{rootdirectory: {workdir / 'data'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}, secret: bench}}\n"
    )
    log = open(workdir / "registry.log", "wb")  # noqa: SIM115 - the server process writes it until stop
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/v2/", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("docker-registry did not start")


def make_blob(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        remaining = size
        while remaining:
            chunk = os.urandom(min(8 * MiB, remaining))
            digest.update(chunk)
            out.write(chunk)
            remaining -= len(chunk)
    return f"sha256:{digest.hexdigest()}"


def push_blob(url: str, path: Path, digest: str) -> None:
    """Monolithic upload: POST starts it, one PUT streams the file and names the digest."""
    with httpx.Client(timeout=120) as client:
        started = client.post(f"{url}/v2/{REPO}/blobs/uploads/")
        started.raise_for_status()
        location = httpx.URL(url).join(started.headers["location"])
        sep = "&" if location.query else "?"
        with path.open("rb") as body:
            headers = {"content-length": str(path.stat().st_size), "content-type": "application/octet-stream"}
            done = client.put(f"{location}{sep}digest={digest}", content=body, headers=headers)
        done.raise_for_status()


async def httpx_raw(url: str, digest: str) -> int:
    async with httpx.AsyncClient(timeout=60) as client:
        async with client.stream("GET", url) as response:
            return sum([len(chunk) async for chunk in response.aiter_raw(MiB)])


async def httpx_bytes(url: str, digest: str) -> int:
    async with httpx.AsyncClient(timeout=60) as client:
        async with client.stream("GET", url) as response:
            return sum([len(chunk) async for chunk in response.aiter_bytes(MiB)])


async def aiohttp_chunked(url: str, digest: str) -> int:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(url, read_bufsize=MiB) as response:
            return sum([len(chunk) async for chunk in response.content.iter_chunked(MiB)])


async def aiohttp_any(url: str, digest: str) -> int:
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(url, read_bufsize=MiB) as response:
            return sum([len(chunk) async for chunk in response.content.iter_any()])


async def aiohttp_sha256_thread(url: str, digest: str) -> int:
    """Hash chunk N on a worker thread while the loop receives chunk N+1 (one hash in flight)."""
    hasher = hashlib.sha256()
    total = 0
    pending: asyncio.Future[None] | None = None
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(url, read_bufsize=MiB) as response:
            async for chunk in response.content.iter_chunked(MiB):
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(asyncio.to_thread(hasher.update, chunk))
                total += len(chunk)
    if pending is not None:
        await pending
    if f"sha256:{hasher.hexdigest()}" != digest:
        raise RuntimeError("digest mismatch")
    return total


VARIANTS: dict[str, Callable[[str, str], Awaitable[int]]] = {
    "httpx aiter_raw": httpx_raw,
    "httpx aiter_bytes": httpx_bytes,
    "aiohttp iter_chunked(1MiB)": aiohttp_chunked,
    "aiohttp iter_any": aiohttp_any,
    "aiohttp + sha256 thread": aiohttp_sha256_thread,
}


async def run_rounds(blob_url: str, digest: str, size: int, rounds: int) -> dict[str, list[float]]:
    speeds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_no in range(rounds):
        order = list(VARIANTS) if round_no % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            started = time.perf_counter()
            received = await VARIANTS[name](blob_url, digest)
            elapsed = time.perf_counter() - started
            if received != size:
                raise RuntimeError(f"{name}: got {received} of {size} bytes")
            speeds[name].append(size / elapsed / 1e9)
    return speeds


def report(speeds: dict[str, list[float]], size: int, rounds: int) -> dict[str, object]:
    baseline = statistics.median(speeds["httpx aiter_raw"])
    rows = []
    print(f"{'variant':30} {'median GB/s':>12} {'min':>7} {'max':>7} {'x httpx raw':>12}")
    for name, values in speeds.items():
        median = statistics.median(values)
        rows.append(
            {"variant": name, "gb_per_s": values, "median_gb_per_s": median, "ratio_vs_httpx_raw": median / baseline}
        )
        print(f"{name:30} {median:12.2f} {min(values):7.2f} {max(values):7.2f} {median / baseline:12.2f}")
    return {
        "blob_bytes": size,
        "rounds": rounds,
        "origin": "docker-registry (filesystem)",
        "cpus": os.cpu_count(),
        "results": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * MiB
    workdir = Path(tempfile.mkdtemp(prefix="bench-upstream-"))
    proc, url = start_registry(workdir)
    try:
        blob = workdir / "blob.bin"
        digest = make_blob(blob, size)
        push_blob(url, blob, digest)
        blob.unlink()
        try:
            import uvloop  # the app runs on uvloop, so measure on it too

            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        speeds = runner(run_rounds(f"{url}/v2/{REPO}/blobs/{digest}", digest, size, args.rounds))
        result = report(speeds, size, args.rounds)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {RESULTS}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""CPU of one tracker request on the client side: `p2p.tracker_client.TrackerClient.peers` against
the embedded tracker of a real mirror, 1000 lookups after 50 to warm up, CPU of this process
(RUSAGE_SELF) per request. A downloading mirror asks every poll interval (0.2 s), and the CLI and
catalog registry use the same httpx stack.

Whether `sniffio` is importable matters: httpcore imports it inside `current_async_library()`,
about 17 times per request, and a failed import searches every `sys.path` entry each time. The
row says which case this run measured (`pip uninstall sniffio` for the other).

    .venv/bin/python bench/tracker_client.py [--requests 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import resource
import shutil
import time

from _common import MirrorProcess, OriginRegistry, Table, median, workdir, write_result
from datapath import tmpfs_dir

from p2p.tracker_client import TrackerClient
from tests.support.net import free_port

HOST = "127.0.0.31"
DIGEST = "sha256:" + "a" * 64
MIRROR_ARGS = ["--default-upstream", "origin", "--log-level", "warning", "--tracker", "embedded"]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def lookups(url: str, count: int) -> tuple[float, float]:
    """CPU-seconds and wall seconds per request of `count` peer lookups on one client."""
    async with TrackerClient(url, None) as client:
        for _ in range(50):
            await client.peers(DIGEST)
        cpu, started = cpu_seconds(), time.perf_counter()
        for _ in range(count):
            await client.peers(DIGEST)
        return (cpu_seconds() - cpu) / count, (time.perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sniffio = importlib.util.find_spec("sniffio") is not None
    with workdir("tracker-client") as work:
        origin = OriginRegistry(work / "origin").start()
        cache = tmpfs_dir("tracker-client")
        port = free_port(HOST)
        mirror = MirrorProcess(
            work / "mirror",
            {"origin": origin.url},
            [*MIRROR_ARGS, "--peer-listen", f"{HOST}:{port}"],
            host=HOST,
            cache_dir=cache,
        )
        try:
            mirror.start()
            runs = [asyncio.run(lookups(f"http://{HOST}:{port}/tracker", args.requests)) for _ in range(args.rounds)]
        finally:
            mirror.stop()
            origin.stop()
            shutil.rmtree(cache, ignore_errors=True)
    cpu_ms, wall_ms = median([c for c, _ in runs]) * 1000, median([w for _, w in runs]) * 1000
    label = "sniffio installed" if sniffio else "sniffio missing"
    table = Table(
        ["client", "CPU ms per request", "wall ms per request"], [(label, round(cpu_ms, 2), round(wall_ms, 2))]
    )
    write_result(
        "tracker_client",
        {"sniffio": sniffio, "requests": args.requests, "cpu_s_per_request": [c for c, _ in runs]},
        [table],
    )


if __name__ == "__main__":
    main()

"""CPU of one tracker request on the client side: `p2p.tracker_client.TrackerClient.peers` (aiohttp)
against the embedded tracker of a real mirror, beside the same lookup on an `httpx.AsyncClient`
(the client it used before, and what the CLI and catalog registry still use), rounds interleaved;
1000 lookups after 50 to warm up, CPU of this process (RUSAGE_SELF) per request, and the
tracker's own CPU per request (the mirror's /proc/PID/stat). A downloading mirror asks every poll
interval (0.2 s) and announces its pieces as they land.

For httpx, whether `sniffio` is importable matters: httpcore imports it inside
`current_async_library()`, about 17 times per request, and a failed import searches every
`sys.path` entry each time. The row says which case this run measured (`pip uninstall sniffio`
for the other).

    .venv/bin/python bench/tracker_client.py [--requests 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import resource
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from _common import MirrorProcess, OriginRegistry, Table, median, workdir, write_result
from _threads import stat_cpu_seconds
from datapath import tmpfs_dir

from p2p.tracker_client import TrackerClient
from tests.support.net import free_port

HOST = "127.0.0.31"
DIGEST = "sha256:" + "a" * 64
KINDS = ("TrackerClient (aiohttp)", "httpx")
MIRROR_ARGS = ["--default-upstream", "origin", "--log-level", "warning", "--tracker", "embedded"]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def lookups(url: str, count: int, kind: str) -> tuple[float, float]:
    """CPU-seconds and wall seconds per request of `count` peer lookups on one client."""
    async with TrackerClient(url, None) as tracker, httpx.AsyncClient(base_url=url) as http:

        async def with_httpx() -> None:
            answer = await http.get(f"/v1/peers/{DIGEST}")
            answer.raise_for_status()
            answer.json()

        async def with_tracker_client() -> None:
            await tracker.peers(DIGEST)

        lookup: Callable[[], Awaitable[None]] = with_httpx if kind == "httpx" else with_tracker_client
        for _ in range(50):
            await lookup()
        cpu, started = cpu_seconds(), time.perf_counter()
        for _ in range(count):
            await lookup()
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
        runs: dict[str, list[tuple[float, float, float]]] = {kind: [] for kind in KINDS}
        try:
            mirror.start()
            assert mirror.process is not None
            stat = Path(f"/proc/{mirror.process.pid}/stat")
            for round_no in range(args.rounds):
                for kind in KINDS if round_no % 2 == 0 else KINDS[::-1]:
                    before = stat_cpu_seconds(stat.read_text())
                    cpu, wall = asyncio.run(lookups(f"http://{HOST}:{port}/tracker", args.requests, kind))
                    server = (stat_cpu_seconds(stat.read_text()) - before) / (args.requests + 50)
                    runs[kind].append((cpu, wall, server))
        finally:
            mirror.stop()
            origin.stop()
            shutil.rmtree(cache, ignore_errors=True)
    rows = []
    for kind in KINDS:
        label = f"{kind}, sniffio {'installed' if sniffio else 'missing'}" if kind == "httpx" else kind
        cpu_ms, wall_ms, server_ms = (median([run[i] for run in runs[kind]]) * 1000 for i in range(3))
        rows.append((label, round(cpu_ms, 3), round(wall_ms, 3), round(server_ms, 3)))
    ours, reference = (median([run[0] for run in runs[kind]]) for kind in KINDS)
    rows.append(("TrackerClient / httpx", f"{ours / reference:.2f}x", "", ""))
    table = Table(["client", "client CPU ms per request", "wall ms per request", "tracker CPU ms per request"], rows)
    write_result(
        "tracker_client",
        {
            "sniffio": sniffio,
            "requests": args.requests,
            "cpu_s_per_request": {kind: [run[0] for run in runs[kind]] for kind in KINDS},
            "tracker_cpu_s_per_request": {kind: [run[2] for run in runs[kind]] for kind in KINDS},
        },
        [table],
    )


if __name__ == "__main__":
    main()

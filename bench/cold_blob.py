"""Cold blob GET: through the mirror vs straight from the origin (one client), and 32 concurrent cold
clients against the mirror vs docker-registry in proxy mode (origin GETs, origin bytes, total time),
and the mirror's peak RSS while 16 clients read one cold 1 GiB fill (issue 10: +100 MiB at most).

"Cold" means the mirror (or the proxy) has never seen the blob: each round starts a new process on
an empty cache directory. The origin's own file is read just before each round, so the origin side
is equally warm for every variant. Origin traffic is counted from the origin's access log.

    .venv/bin/python bench/cold_blob.py [--size-mib 1024] [--fanout-size-mib 256] [--clients 32] [--rounds 3]
        [--rss-clients 16]
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from _common import (
    REPO,
    MiB,
    OriginRegistry,
    ProxyRegistry,
    Table,
    curl_get_many,
    interleaved,
    median,
    mirror_blob_path,
    origin_blob_path,
    proc_status_kib,
    push,
    read_warm,
    start_mirror,
    wait_for_file,
    workdir,
    write_result,
)

SINGLE_GOAL = 0.9  # mirror / direct
RSS_BOUND_MIB = 100  # issue 10: a 1 GiB fill with 16 readers raises the mirror's RSS by this at most


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--fanout-size-mib", type=int, default=256)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fanout-rounds", type=int, default=2)
    parser.add_argument("--rss-clients", type=int, default=16)
    args = parser.parse_args()
    with workdir("cold") as work:
        origin = OriginRegistry(work / "origin").start()
        try:
            big = push(origin, work, args.size_mib * MiB, seed=1)
            fan = push(origin, work, args.fanout_size_mib * MiB, seed=2)
            single = single_client(origin, work, big, args.size_mib * MiB, args.rounds)
            fanout = many_clients(origin, work, fan, args.fanout_size_mib * MiB, args.clients, args.fanout_rounds)
            rss = peak_rss(origin, work, big, args.size_mib * MiB, args.rss_clients, args.fanout_rounds)
        finally:
            origin.stop()
    report(single, fanout, rss, args)


# -- one client ---------------------------------------------------------------------------------------
def single_client(origin: OriginRegistry, work: Path, digest: str, size: int, rounds: int) -> dict[str, list[float]]:
    speeds: dict[str, list[float]] = {"mirror (cold)": [], "origin direct": []}
    for round_no, name in interleaved(list(speeds), rounds):
        read_warm(origin_blob_path(origin, digest))
        if name == "origin direct":
            seconds = fetch_all([f"{origin.url}/v2/{REPO}/blobs/{digest}"], size)
        else:
            seconds = with_fresh_mirror(origin, work / f"single-{round_no}", digest, lambda url: fetch_all([url], size))
        speeds[name].append(size / seconds / 1e9)
    return speeds


def with_fresh_mirror(
    origin: OriginRegistry, work: Path, digest: str, run: Callable[[str], float], hwm: dict[str, int] | None = None
) -> float:
    """`hwm`, if given, gets the mirror's resident memory (KiB) before the run ("idle": VmRSS, its
    start-up's high-water mark may lie above it) and its high-water mark once the fill committed
    ("peak": VmHWM)."""
    mirror = start_mirror(work, origin.url)
    pid = mirror.process.pid  # type: ignore[union-attr]
    try:
        if hwm is not None:
            hwm["idle"] = proc_status_kib(pid, "VmRSS")
        seconds = run(f"{mirror.url}/v2/{REPO}/blobs/{digest}")
        wait_for_file(mirror_blob_path(mirror.cache_dir, digest))  # the fill committed
        if hwm is not None:
            hwm["peak"] = proc_status_kib(pid, "VmHWM")
        return seconds
    finally:
        mirror.stop()
        shutil.rmtree(work, ignore_errors=True)


def fetch_all(urls: list[str], size: int) -> float:
    started = time.perf_counter()
    results = curl_get_many(urls)
    elapsed = time.perf_counter() - started
    if any(got != size for got, _ in results):
        raise RuntimeError(f"short body: {[got for got, _ in results]}")
    return elapsed


# -- many clients ----------------------------------------------------------------------------------------
def many_clients(
    origin: OriginRegistry, work: Path, digest: str, size: int, clients: int, rounds: int
) -> dict[str, list[dict[str, float]]]:
    runs: dict[str, list[dict[str, float]]] = {"mirror": [], "docker-registry proxy": []}
    for round_no, name in interleaved(list(runs), rounds):
        read_warm(origin_blob_path(origin, digest))
        marker = origin.clear_log_marker()
        place = work / f"fan-{round_no}-{name.split()[0]}"
        if name == "mirror":
            seconds = with_fresh_mirror(origin, place, digest, lambda url: fetch_all([url] * clients, size))
        else:
            seconds = with_fresh_proxy(origin, place, digest, lambda url: fetch_all([url] * clients, size))
        gets = origin.blob_gets(digest, since=marker)
        runs[name].append(
            {
                "seconds": seconds,
                "origin_gets": len(gets),
                "origin_bytes": sum(entry.bytes for entry in gets),
                "client_gb_per_s": clients * size / seconds / 1e9,
            }
        )
    return runs


# -- peak RSS --------------------------------------------------------------------------------------------
def peak_rss(
    origin: OriginRegistry, work: Path, digest: str, size: int, clients: int, rounds: int
) -> list[dict[str, float]]:
    """The mirror's high-water mark of resident memory while `clients` cold GETs share one fill,
    over its resident memory before the first request (imports made on the first request count too)."""
    runs: list[dict[str, float]] = []
    for round_no in range(rounds):
        read_warm(origin_blob_path(origin, digest))
        hwm: dict[str, int] = {}
        seconds = with_fresh_mirror(
            origin, work / f"rss-{round_no}", digest, lambda url: fetch_all([url] * clients, size), hwm
        )
        runs.append(
            {
                "seconds": seconds,
                "idle_rss_mib": hwm["idle"] / 1024,
                "peak_hwm_mib": hwm["peak"] / 1024,
                "delta_mib": (hwm["peak"] - hwm["idle"]) / 1024,
            }
        )
    return runs


def with_fresh_proxy(origin: OriginRegistry, work: Path, digest: str, run: Callable[[str], float]) -> float:
    proxy = ProxyRegistry(work, origin.url).start()
    try:
        return run(f"{proxy.url}/v2/{REPO}/blobs/{digest}")
    finally:
        proxy.stop()
        shutil.rmtree(work, ignore_errors=True)


# -- report ----------------------------------------------------------------------------------------------
def report(
    single: dict[str, list[float]],
    fanout: dict[str, list[dict[str, float]]],
    rss: list[dict[str, float]],
    args: argparse.Namespace,
) -> None:
    direct = median(single["origin direct"])
    single_rows: list[list[object]] = []
    for name, values in single.items():
        ratio = median(values) / direct
        goal = f">= {SINGLE_GOAL} {'met' if ratio >= SINGLE_GOAL else 'MISSED'}" if name.startswith("mirror") else ""
        single_rows.append([name, median(values), min(values), max(values), ratio, goal])
    fan_rows: list[list[object]] = []
    size = args.fanout_size_mib * MiB
    for name, rounds in fanout.items():
        gets = [r["origin_gets"] for r in rounds]
        origin_bytes = [r["origin_bytes"] for r in rounds]
        # Single flight is one blob's worth of origin bytes: a range fill spreads them over a few
        # GETs of distinct ranges (nvme_cache/inflight.py), each byte still fetched once.
        once = all(abs(b / size - 1) < 0.005 for b in origin_bytes)
        goal = ("bytes == 1x " + ("met" if once else "MISSED")) if name == "mirror" else ""
        fan_rows.append(
            [
                name,
                "/".join(str(int(g)) for g in gets),
                "/".join(f"{b / size:.2f}" for b in origin_bytes),
                median([r["seconds"] for r in rounds]),
                median([r["client_gb_per_s"] for r in rounds]),
                goal,
            ]
        )
    tables = [
        Table(["1 client, cold", "GB/s median", "min", "max", "x direct", "goal"], single_rows),
        Table(
            [
                f"{args.clients} cold clients",
                "origin GETs per round",
                "origin bytes / blob size",
                "total s median",
                "client GB/s (sum)",
                "goal",
            ],
            fan_rows,
        ),
        Table(
            [
                f"peak RSS, {args.size_mib} MiB cold fill",
                "clients",
                "idle VmRSS MiB",
                "peak VmHWM MiB",
                "delta MiB",
                "goal",
            ],
            [
                [
                    f"round {number}",
                    args.rss_clients,
                    run["idle_rss_mib"],
                    run["peak_hwm_mib"],
                    run["delta_mib"],
                    f"<= {RSS_BOUND_MIB} {'met' if run['delta_mib'] <= RSS_BOUND_MIB else 'MISSED'}",
                ]
                for number, run in enumerate(rss, 1)
            ],
        ),
    ]
    write_result(
        "cold_blob",
        {
            "blob_bytes": args.size_mib * MiB,
            "fanout_blob_bytes": size,
            "clients": args.clients,
            "client": "curl -o /dev/null",
            "single": {k: {"gb_per_s": v, "median": median(v)} for k, v in single.items()},
            "single_ratio_vs_direct": median(single["mirror (cold)"]) / direct,
            "fanout": fanout,
            "rss_clients": args.rss_clients,
            "peak_rss": rss,
        },
        tables,
    )


if __name__ == "__main__":
    main()

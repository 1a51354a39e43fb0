"""Warm 1 GiB blob GET: the mirror (cache hit) vs nginx sendfile vs docker-registry, 1 and 4 clients.

nginx serves a hard link to the mirror's own cache file, so both read the very same page-cache
pages; docker-registry serves its own copy. Every file is read just before each measurement (the
VM drops idle page cache after ~60 s). The client is curl -o /dev/null: 2.3 GB/s from nginx here,
where wrk managed 1.2 GB/s, so curl is the client that is not the bottleneck.

    .venv/bin/python bench/warm_blob.py [--size-mib 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import time

from _common import (
    REPO,
    MiB,
    NginxServer,
    OriginRegistry,
    Table,
    curl_get,
    curl_get_many,
    interleaved,
    make_blob,
    median,
    mirror_blob_path,
    origin_blob_path,
    read_warm,
    start_mirror,
    wait_for_file,
    workdir,
    write_result,
)

from tests.support.images import push_blob

GOALS = {1: 0.8, 4: 0.6}  # mirror / nginx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * MiB
    with workdir("warm") as work:
        origin = OriginRegistry(work / "origin").start()
        mirror = nginx = None
        try:
            blob = work / "blob.bin"
            digest = make_blob(blob, size)
            push_blob(origin, REPO, blob)
            blob.unlink()
            mirror = start_mirror(work / "mirror", origin.url)
            mirror_url = f"{mirror.url}/v2/{REPO}/blobs/{digest}"
            if curl_get(mirror_url)[0] != size:  # the cold GET that fills the cache
                raise RuntimeError("mirror fill returned a short body")
            cached = wait_for_file(mirror_blob_path(mirror.cache_dir, digest))
            root = work / "www"
            root.mkdir()
            os.link(cached, root / "blob")
            nginx = NginxServer.static(work, root, access_log=False).start()
            targets = {
                "mirror": (mirror_url, cached),
                "nginx": (f"{nginx.url}/blob", cached),
                "docker-registry": (f"{origin.url}/v2/{REPO}/blobs/{digest}", origin_blob_path(origin, digest)),
            }
            speeds = measure(targets, size, args.rounds)
        finally:
            for server in (nginx, mirror, origin):
                if server is not None:
                    server.stop()
    report(speeds, size, args.rounds)


def measure(targets: dict[str, tuple[str, object]], size: int, rounds: int) -> dict[str, dict[int, list[float]]]:
    speeds: dict[str, dict[int, list[float]]] = {name: {1: [], 4: []} for name in targets}
    for clients in (1, 4):
        for _, name in interleaved(list(targets), rounds):
            url, path = targets[name]
            read_warm(path)  # type: ignore[arg-type]
            started = time.perf_counter()
            results = curl_get_many([url] * clients)
            elapsed = time.perf_counter() - started
            if any(got != size for got, _ in results):
                raise RuntimeError(f"{name}: short body {results}")
            speeds[name][clients].append(clients * size / elapsed / 1e9)
    return speeds


def report(speeds: dict[str, dict[int, list[float]]], size: int, rounds: int) -> None:
    rows: list[list[object]] = []
    result_rows = []
    for clients in (1, 4):
        base = median(speeds["nginx"][clients])
        for name, by_clients in speeds.items():
            values = by_clients[clients]
            ratio = median(values) / base
            goal = GOALS[clients] if name == "mirror" else None
            rows.append(
                [
                    clients,
                    name,
                    median(values),
                    min(values),
                    max(values),
                    ratio,
                    "" if goal is None else f">= {goal} {'met' if ratio >= goal else 'MISSED'}",
                ]
            )
            result_rows.append(
                {
                    "clients": clients,
                    "server": name,
                    "gb_per_s": values,
                    "median_gb_per_s": median(values),
                    "ratio_vs_nginx": ratio,
                    "goal": goal,
                }
            )
    table = Table(["clients", "server", "GB/s median", "min", "max", "x nginx", "goal"], rows)
    write_result(
        "warm_blob",
        {"blob_bytes": size, "rounds": rounds, "client": "curl -o /dev/null", "results": result_rows},
        [table],
    )


if __name__ == "__main__":
    main()

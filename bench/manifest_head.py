"""Manifest HEAD by tag at concurrency 64: the mirror (tag cached within its TTL) vs docker-registry,
with nginx HEAD of a small static file as the ceiling of the load tool itself.

Debian's wrk waits for a body on HEAD, so the load comes from ApacheBench (`ab -k -i`, one C
event loop, keep-alive) or `hey -m HEAD` (Go): `--tool` picks one; the nginx row shows the tool's
own ceiling on this machine, far above the mirror's figure when the tool is not the bottleneck.
The mirror runs with a one-hour tag TTL so no revalidation falls inside a measurement.

    .venv/bin/python bench/manifest_head.py [--seconds 5] [--rounds 3] [--concurrency 64] [--tool ab|hey]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess

from _common import (
    REPO,
    NginxServer,
    OriginRegistry,
    Table,
    interleaved,
    median,
    start_mirror,
    workdir,
    write_result,
)

from tests.support.images import OCI_MANIFEST, push_blob, push_manifest

GOAL_RPS = 10_000
TAG = "v1"
# What containerd 1.6 sends (TESTBED.md); docker-registry answers 404 to an OCI manifest without it.
ACCEPT = (
    "Accept: application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.oci.image.index.v1+json, */*"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--tool", choices=("ab", "hey"), default="ab")
    args = parser.parse_args()
    if shutil.which(args.tool) is None:  # before any server starts
        how = " (`make bench-deps` installs it: apache2-utils)" if args.tool == "ab" else ""
        parser.error(f"{args.tool} is not on PATH{how}")
    with workdir("head") as work:
        origin = OriginRegistry(work / "origin").start()
        mirror = nginx = None
        try:
            body = push_image(origin)
            mirror = start_mirror(work / "mirror", origin.url, env={"REGISTRY_MIRROR_TAG_TTL": "3600"})
            www = work / "www"
            www.mkdir()
            (www / "manifest.json").write_bytes(body)
            nginx = NginxServer.static(work, www, access_log=False).start()
            path = f"/v2/{REPO}/manifests/{TAG}"
            targets = {
                "mirror": mirror.url + path,
                "docker-registry": origin.url + path,
                "nginx (tool ceiling)": nginx.url + "/manifest.json",
            }
            check_head(targets["mirror"], body)  # also puts the tag into the mirror's cache
            runs = measure(targets, args)
        finally:
            for server in (nginx, mirror, origin):
                if server is not None:
                    server.stop()
    report(runs, args)


def push_image(origin: OriginRegistry) -> bytes:
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = b"bench layer"
    config_digest = push_blob(origin, REPO, config)
    layer_digest = push_blob(origin, REPO, layer)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config),
        },
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": len(layer)}],
    }
    body = json.dumps(manifest).encode()
    push_manifest(origin, REPO, TAG, body, OCI_MANIFEST)
    return body


def check_head(url: str, body: bytes) -> None:
    out = subprocess.run(["curl", "-sSI", "-H", ACCEPT, url], capture_output=True, text=True, check=True).stdout.lower()
    expected = f"sha256:{hashlib.sha256(body).hexdigest()}"
    if " 200" not in out.splitlines()[0] or expected not in out:
        raise RuntimeError(f"mirror HEAD did not answer the pushed manifest:\n{out}")


def measure(targets: dict[str, str], args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    for _, name in interleaved(list(targets), args.rounds):
        load = run_ab if args.tool == "ab" else run_hey
        runs[name].append(load(targets[name], args.concurrency, args.seconds))
    return runs


def run_ab(url: str, concurrency: int, seconds: int) -> dict[str, float]:
    argv = ["ab", "-q", "-k", "-i", "-c", str(concurrency), "-t", str(seconds), "-n", "100000000", "-H", ACCEPT, url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    failed = int(_find(r"Failed requests:\s+(\d+)", out)) + int(_find(r"Non-2xx responses:\s+(\d+)", out, "0"))
    return {
        "rps": float(_find(r"Requests per second:\s+([\d.]+)", out)),
        "p99_ms": float(_find(r"^\s*99%\s+(\d+)", out)),  # ab rounds latencies to whole ms
        "requests": float(_find(r"Complete requests:\s+(\d+)", out)),
        "failed": failed,
    }


def run_hey(url: str, concurrency: int, seconds: int) -> dict[str, float]:
    argv = ["hey", "-m", "HEAD", "-c", str(concurrency), "-z", f"{seconds}s", "-H", ACCEPT, url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    ok = int(_find(r"\[200\]\s+(\d+) responses", out, "0"))
    total = sum(int(n) for n in re.findall(r"\[\d+\]\s+(\d+) responses", out))
    return {
        "rps": float(_find(r"Requests/sec:\s+([\d.]+)", out)),
        "p99_ms": 1000 * float(_find(r"99% in ([\d.]+) secs", out)),
        "requests": float(total),
        "failed": total - ok,
    }


def _find(pattern: str, text: str, default: str | None = None) -> str:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        if default is not None:
            return default
        raise RuntimeError(f"load tool output lacks {pattern!r}:\n{text[-2000:]}")
    return match.group(1)


def report(runs: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    registry = median([r["rps"] for r in runs["docker-registry"]])
    rows: list[list[object]] = []
    for name, values in runs.items():
        rps = [r["rps"] for r in values]
        failed = sum(r["failed"] for r in values)
        goal = ""
        if name == "mirror":
            goal = f">= {GOAL_RPS} {'met' if median(rps) >= GOAL_RPS else 'MISSED'} ({median(rps) / GOAL_RPS:.2f}x)"
        rows.append(
            [
                name,
                median(rps),
                min(rps),
                max(rps),
                median([r["p99_ms"] for r in values]),
                median(rps) / registry,
                int(failed),
                goal,
            ]
        )
    table = Table(
        [
            f"HEAD c={args.concurrency} ({args.tool})",
            "req/s median",
            "min",
            "max",
            "p99 ms",
            "x docker-registry",
            "failed",
            "goal",
        ],
        rows,
    )
    write_result(
        "manifest_head",
        {
            "concurrency": args.concurrency,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "tool": args.tool,
            "runs": runs,
        },
        [table],
    )


if __name__ == "__main__":
    main()

"""Cold and warm `snapshot_download` of a repo with one big weights file (default 512 MiB):
straight from olah (offline, serving the git repo), and through the mirror. Interleaved rounds,
medians, a table and JSON (`--json FILE`).

    .venv/bin/python bench/hf_snapshot.py [--size-mib 512] [--rounds 3] [--json out.json]

olah's own caching proxy mode would need a second olah pointed at the first as its hf-netloc;
olah 0.5.4 buffers whole files, so that column is left out (see docs/models.md)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.hub.olah_origin import OlahOrigin  # noqa: E402
from tests.support.net import free_port, wait_http  # noqa: E402
from tests.support.procs import ManagedProcess  # noqa: E402

SNAPSHOT = "import sys; from huggingface_hub import snapshot_download; snapshot_download(sys.argv[1])"


def download(endpoint: str, home: Path) -> float:
    shutil.rmtree(home, ignore_errors=True)
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": str(home), "HF_HUB_DISABLE_XET": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_ETAG_TIMEOUT": "600",
           "HF_HUB_DOWNLOAD_TIMEOUT": "600"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", SNAPSHOT, "bench/model"], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hf-bench-"))
    weights = work / "weights.bin"
    with open(weights, "wb") as handle:
        for _ in range(args.size_mib):
            handle.write(os.urandom(1 << 20))
    olah = OlahOrigin(work)
    olah.add_repo("bench/model", {"config.json": b"{}\n"}, {"model.safetensors": weights})
    olah.start()
    results: dict[str, list[float]] = {"olah direct": [], "mirror cold": [], "mirror warm": []}
    try:
        for round_ in range(args.rounds):
            results["olah direct"].append(download(olah.url, work / "home"))
            port = free_port()
            mirror = ManagedProcess([sys.executable, "-m", "tests.hub.serve_hub", str(port), str(work / f"cache-{round_}"),
                                     olah.url, "http://127.0.0.1:1"], work / "mirror.log",
                                    cwd=Path(__file__).resolve().parents[1]).start()
            try:
                wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, alive=mirror.alive)
                results["mirror cold"].append(download(f"http://127.0.0.1:{port}/hf", work / "home"))
                results["mirror warm"].append(download(f"http://127.0.0.1:{port}/hf", work / "home"))
            finally:
                mirror.stop()
                shutil.rmtree(work / f"cache-{round_}", ignore_errors=True)
    finally:
        olah.stop()
        shutil.rmtree(work, ignore_errors=True)
    size = args.size_mib * (1 << 20)
    summary = {name: {"median_s": statistics.median(times), "mb_per_s": size / statistics.median(times) / 1e6,
                      "runs_s": times} for name, times in results.items()}
    print(f"{'path':<14} {'median s':>9} {'MB/s':>8}   ({args.size_mib} MiB weights, {args.rounds} rounds)")
    for name, row in summary.items():
        print(f"{name:<14} {row['median_s']:>9.2f} {row['mb_per_s']:>8.0f}")
    if args.json:
        args.json.write_text(json.dumps({"size_mib": args.size_mib, "results": summary}, indent=2))


if __name__ == "__main__":
    main()

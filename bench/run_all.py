"""Run every front-end and cache benchmark in sequence (never two at once: they share two cores).

    .venv/bin/python bench/run_all.py [--only warm_blob cold_blob ...] [--quick]

`--quick` shrinks sizes and rounds to check that the scripts still work (minutes -> seconds); its
numbers mean nothing and go to a temporary directory, not bench/results/. Each script writes bench/results/<name>.json and prints its table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).parent
SCRIPTS: dict[str, list[str]] = {
    "warm_blob": [],
    "cold_blob": [],
    "manifest_head": [],
    "cache_store": [],
    "hf_snapshot": [],
    "datapath": ["--baseline", "b3a2d48"],
    "piece_hash": [],
}
QUICK: dict[str, list[str]] = {
    "warm_blob": ["--size-mib", "64", "--rounds", "1"],
    "cold_blob": [
        "--size-mib",
        "64",
        "--fanout-size-mib",
        "8",
        "--clients",
        "8",
        "--rounds",
        "1",
        "--fanout-rounds",
        "1",
    ],
    "manifest_head": ["--seconds", "1", "--rounds", "1"],
    "cache_store": ["--size-mib", "64", "--rounds", "1", "--blobs", "2000"],
    "hf_snapshot": ["--size-mib", "16", "--rounds", "1"],
    "datapath": ["--quick"],
    "piece_hash": ["--gib", "0.25", "--rounds", "1"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(SCRIPTS), default=list(SCRIPTS))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.quick:  # smoke-run numbers must not replace real results
        env["BENCH_RESULTS_DIR"] = tempfile.mkdtemp(prefix="bench-quick-results-")
    failed = []
    for name in args.only:
        extra = QUICK[name] if args.quick else SCRIPTS[name]
        print(f"== {name} {' '.join(extra)}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, str(BENCH / f"{name}.py"), *extra], env=env)
        print(f"== {name}: exit {code} in {time.monotonic() - started:.0f}s\n", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"failed: {' '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

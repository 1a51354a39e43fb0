"""Piece hash candidates, CPU-seconds per GiB on one core: BLAKE3 (p2p.pieces) against sha256
(hashlib, what pieces used before and what the whole-blob digest still uses) and `openssl dgst
-sha256` as the floor, over the same 4 MiB pieces, interleaved rounds.

    .venv/bin/python bench/piece_hash.py [--gib 1] [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import tempfile
import time
from collections.abc import Callable

import blake3
from _common import GiB, MiB, Table, median, write_result

PIECE = 4 * MiB


def cpu_per_gib(hash_piece: Callable[[bytes], object], pieces: list[bytes], gib: float) -> float:
    started = time.process_time()
    for piece in pieces:
        hash_piece(piece)
    return (time.process_time() - started) / gib


def openssl_per_gib(path: str, gib: float) -> float:
    before = os.times()
    subprocess.run(["openssl", "dgst", "-sha256", path], check=True, capture_output=True)
    after = os.times()
    return ((after.children_user - before.children_user) + (after.children_system - before.children_system)) / gib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    count = max(1, int(args.gib * GiB // PIECE))
    gib = count * PIECE / GiB
    # Distinct pieces, as a download sees them (one piece would stay in the CPU cache).
    pieces = [os.urandom(PIECE) for _ in range(count)]
    candidates: dict[str, Callable[[bytes], object]] = {
        "blake3 (1 thread)": lambda piece: blake3.blake3(piece, max_threads=1).digest(),
        "sha256 (hashlib)": lambda piece: hashlib.sha256(piece).digest(),
    }
    results: dict[str, list[float]] = {name: [] for name in [*candidates, "openssl dgst -sha256"]}
    with tempfile.NamedTemporaryFile(dir="/dev/shm") as file:
        for piece in pieces:
            file.write(piece)
        file.flush()
        for _ in range(args.rounds):
            for name, hash_piece in candidates.items():
                results[name].append(cpu_per_gib(hash_piece, pieces, gib))
            results["openssl dgst -sha256"].append(openssl_per_gib(file.name, gib))
    floor = median(results["openssl dgst -sha256"])
    rows = [
        [name, median(values), min(values), max(values), median(values) / floor] for name, values in results.items()
    ]
    write_result(
        "piece_hash",
        {"gib": gib, "rounds": args.rounds, "cpu_per_gib": results},
        [Table(["hash", "CPU-s/GiB median", "min", "max", "x openssl sha256"], rows)],
    )


if __name__ == "__main__":
    main()

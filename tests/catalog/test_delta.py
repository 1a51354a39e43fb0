from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from catalog.delta import apply_delta, make_delta
from catalog.errors import DeltaMismatch

SIZE = 4 * 1024 * 1024


def sha(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    rng = random.Random(7)
    old = bytearray(rng.randbytes(SIZE))
    (tmp_path / "old").write_bytes(old)
    old[100_000:150_000] = rng.randbytes(50_000)  # replaced
    old[3_000_000:3_000_000] = rng.randbytes(60_000)  # inserted: later offsets shift
    (tmp_path / "new").write_bytes(old)
    return tmp_path / "old", tmp_path / "new"


def test_round_trip_is_byte_exact_and_small(pair: tuple[Path, Path], tmp_path: Path) -> None:
    old, new = pair
    info = make_delta(old, new, tmp_path / "d")
    assert info is not None
    assert info.size == (tmp_path / "d").stat().st_size < SIZE // 10
    assert info.digest == sha(tmp_path / "d") and info.source_size == new.stat().st_size
    apply_delta(old, tmp_path / "d", tmp_path / "out", sha(new), new.stat().st_size)
    assert (tmp_path / "out").read_bytes() == new.read_bytes()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name not in {"old", "new", "d", "other"})


@pytest.mark.parametrize("wrong", ["digest", "size"])
def test_mismatch_leaves_nothing(pair: tuple[Path, Path], tmp_path: Path, wrong: str) -> None:
    old, new = pair
    make_delta(old, new, tmp_path / "d")
    digest, size = sha(new), new.stat().st_size
    if wrong == "digest":
        digest = "sha256:" + "0" * 64
    else:
        size += 1
    with pytest.raises(DeltaMismatch):
        apply_delta(old, tmp_path / "d", tmp_path / "out", digest, size)
    assert leftovers(tmp_path) == []


def test_output_larger_than_expected_stops_early(pair: tuple[Path, Path], tmp_path: Path) -> None:
    old, new = pair
    make_delta(old, new, tmp_path / "d")
    with pytest.raises(DeltaMismatch, match="larger"):
        apply_delta(old, tmp_path / "d", tmp_path / "out", sha(new), 1024)
    assert leftovers(tmp_path) == []


def test_wrong_base_is_a_mismatch(pair: tuple[Path, Path], tmp_path: Path) -> None:
    old, new = pair
    make_delta(old, new, tmp_path / "d")
    (tmp_path / "other").write_bytes(os.urandom(SIZE))
    with pytest.raises(DeltaMismatch):
        apply_delta(tmp_path / "other", tmp_path / "d", tmp_path / "out", sha(new), new.stat().st_size)
    assert leftovers(tmp_path) == []


def test_truncated_or_corrupt_delta(pair: tuple[Path, Path], tmp_path: Path) -> None:
    old, new = pair
    make_delta(old, new, tmp_path / "d")
    data = (tmp_path / "d").read_bytes()
    for broken in (data[: len(data) // 2], data[:10] + bytes([data[10] ^ 0xFF]) + data[11:], b"not zstd"):
        (tmp_path / "d").write_bytes(broken)
        with pytest.raises(DeltaMismatch):
            apply_delta(old, tmp_path / "d", tmp_path / "out", sha(new), new.stat().st_size)
        assert leftovers(tmp_path) == []


def test_min_savings_drops_useless_delta(tmp_path: Path) -> None:
    (tmp_path / "old").write_bytes(os.urandom(1 << 20))
    (tmp_path / "new").write_bytes(os.urandom(1 << 20))  # unrelated: the delta saves nothing
    assert make_delta(tmp_path / "old", tmp_path / "new", tmp_path / "d", min_savings=0.5) is None
    assert not (tmp_path / "d").exists() and leftovers(tmp_path) == []


def test_empty_base_and_empty_target(tmp_path: Path) -> None:
    (tmp_path / "old").write_bytes(b"")
    (tmp_path / "new").write_bytes(b"abc" * 1000)
    assert make_delta(tmp_path / "old", tmp_path / "new", tmp_path / "d") is not None
    apply_delta(tmp_path / "old", tmp_path / "d", tmp_path / "out", sha(tmp_path / "new"), 3000)
    assert (tmp_path / "out").read_bytes() == b"abc" * 1000
    (tmp_path / "new").write_bytes(b"")
    make_delta(tmp_path / "old", tmp_path / "new", tmp_path / "d")
    apply_delta(tmp_path / "old", tmp_path / "d", tmp_path / "out", sha(tmp_path / "new"), 0)
    assert (tmp_path / "out").read_bytes() == b""

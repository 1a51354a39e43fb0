"""Fills write around the page cache where they can (nvme_cache/fileio.py): aligned chunks with
O_DIRECT, the rest buffered, one file either way. Resident pages are read with util-linux
`fincore`, the kernel's own count."""

from __future__ import annotations

import mmap
import os
import random
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nvme_cache.fileio import DIRECT_ALIGNMENT, DirectWriter, aligned_buffer, no_read_ahead
from tests.support.procs import require_binary

MiB = 1 << 20
CHUNK = 256 * 1024


def _resident_bytes(path: Path) -> int:
    require_binary("fincore")
    out = subprocess.run(["fincore", "-b", "-n", "-o", "RES", str(path)], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[0])


def _writer_for(path: Path) -> DirectWriter:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    writer = DirectWriter(fd)
    if not writer.direct:
        os.close(fd)
        pytest.skip(f"{path.parent} takes no O_DIRECT")
    return writer


def _close(writer: DirectWriter) -> None:
    writer.close()
    os.close(writer.fd)


def test_aligned_chunks_bypass_the_page_cache_and_the_tail_does_not(tmp_path: Path) -> None:
    path = tmp_path / "fill"
    writer = _writer_for(path)
    data = random.Random(1).randbytes(8 * MiB + 1000)  # whole chunks, then a tail of 1000 bytes
    buffer = aligned_buffer(CHUNK)
    try:
        for offset in range(0, len(data), CHUNK):
            part = data[offset : offset + CHUNK]
            buffer[: len(part)] = part
            writer.write(buffer[: len(part)], offset)
    finally:
        _close(writer)
    # Only the buffered tail's page is in the page cache; the 8 MiB before it never were.
    assert _resident_bytes(path) == mmap.PAGESIZE
    assert path.read_bytes() == data


def test_written_without_o_direct_the_same_bytes_stay_in_the_page_cache(tmp_path: Path) -> None:
    """The reference for the test above: `fincore` does see buffered writes."""
    path = tmp_path / "buffered"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    writer = DirectWriter(fd, direct=False)
    try:
        writer.write(aligned_buffer(8 * MiB), 0)
    finally:
        _close(writer)
    assert _resident_bytes(path) == 8 * MiB


def test_unaligned_writes_and_bytes_objects_go_buffered_into_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "mixed"
    writer = _writer_for(path)
    try:
        aligned = aligned_buffer(DIRECT_ALIGNMENT * 2)
        aligned[:] = b"a" * len(aligned)
        writer.write(aligned, 0)  # direct
        writer.write(b"b" * DIRECT_ALIGNMENT, len(aligned))  # bytes: buffered
        writer.write(aligned[1:], len(aligned) + DIRECT_ALIGNMENT)  # unaligned address: buffered
    finally:
        _close(writer)
    expected = b"a" * (2 * DIRECT_ALIGNMENT) + b"b" * DIRECT_ALIGNMENT + b"a" * (2 * DIRECT_ALIGNMENT - 1)
    assert path.read_bytes() == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(
        st.sampled_from([DIRECT_ALIGNMENT, 3 * DIRECT_ALIGNMENT, CHUNK, 1, 777, CHUNK - 1]), min_size=1, max_size=24
    ),
    order_seed=st.integers(0, 2**32 - 1),
)
def test_any_mix_of_chunks_in_any_order_reads_back_whole(tmp_path: Path, sizes: list[int], order_seed: int) -> None:
    """Chunks of a fill at their offsets, written in any order, some aligned, some not, with a
    reader (read-ahead off) reading each chunk back as soon as it is written, as a fill's
    readers do: every byte reads back as written, then and at the end."""
    path = tmp_path / f"any-{order_seed}-{len(sizes)}"
    data = random.Random(order_seed).randbytes(sum(sizes))
    offsets = [sum(sizes[:index]) for index in range(len(sizes))]
    order = list(range(len(sizes)))
    random.Random(order_seed).shuffle(order)
    writer = _writer_for(path)
    os.posix_fallocate(writer.fd, 0, len(data))
    reader = os.open(path, os.O_RDONLY)
    no_read_ahead(reader)
    try:
        for index in order:
            offset, size = offsets[index], sizes[index]
            buffer = aligned_buffer(size)
            buffer[:] = data[offset : offset + size]
            writer.write(buffer, offset)
            assert os.pread(reader, size, offset) == data[offset : offset + size]
    finally:
        os.close(reader)
        _close(writer)
    assert path.read_bytes() == data
    path.unlink()

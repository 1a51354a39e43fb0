"""The fill's system calls in variants, each alone in this process: what a design choice of the data
path costs before any of the mirror's own code runs (issue 10). 1 GiB onto tmpfs, CPU of this
process (RUSAGE_SELF) per GiB, interleaved rounds, medians.

Variants:
- `recv + pwrite`: a loopback socket (another thread sendfile()s a tmpfs file into it; its CPU is
  counted too, the same in every variant) read with recv_into 256 KiB (MSG_WAITALL: whole chunks, as
  http.client's readinto gives the mirror), each read pwrite()n into a
  new, allocated tmpfs file and sha256-hashed: what the mirror's receiving thread does;
- `recv + pwrite with O_DIRECT`: the same through the mirror's `DirectWriter` (whole 256 KiB
  chunks from a page-aligned buffer around the page cache; on tmpfs it writes buffered, so run it
  with `--dir` on a disk to see the difference);
- `recv into mmap, W MiB windows`: the same, but received straight into a shared mapping of the
  temp file (no pwrite copy), the mapping moved in windows of W MiB, sha256 from the mapping;
- `pwrite, one thread` / `two threads` / `two threads, one lock`: 4 MiB pieces written into one
  allocated tmpfs file by one thread, or by two threads at once (alternate pieces), or two threads
  taking turns under a lock: why landed P2P pieces share one lock per file.

    .venv/bin/python bench/fill_variants.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import mmap
import os
import resource
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from _common import GiB, MiB, Table, median, write_result

from nvme_cache.fileio import DirectWriter, aligned_buffer

CHUNK = 256 * 1024
PIPE = 1024 * 1024  # one splice moves at most a pipe's size
STRETCH = 4 * 1024 * 1024  # spliced bytes hashed in stretches of this size
PIECE = 4 * MiB


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _sender(listener: socket.socket, source: Path) -> None:
    connection, _ = listener.accept()
    with connection, source.open("rb") as handle:
        offset, size = 0, source.stat().st_size
        while offset < size:
            offset += os.sendfile(connection.fileno(), handle.fileno(), offset, size - offset)


@contextlib.contextmanager
def _transfer(source: Path, target: Path) -> Iterator[tuple[socket.socket, int, int]]:
    """A loopback socket that another thread sendfile()s `source` into, and `target` allocated
    for it: (the receiving socket, target's descriptor, the size). Everything closed afterwards."""
    size = source.stat().st_size
    listener = socket.create_server(("127.0.0.1", 0))
    sender = threading.Thread(target=_sender, args=(listener, source))
    sender.start()
    client = socket.create_connection(listener.getsockname())
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.posix_fallocate(fd, 0, size)
        yield client, fd, size
    finally:
        os.close(fd)
        client.close()
        sender.join()
        listener.close()
        target.unlink()


def received(source: Path, target: Path, window_mib: int | None, direct: bool = False) -> None:
    """One 1 GiB transfer over loopback into `target`, by recv + pwrite or into a mapping;
    `direct`: through the mirror's own `DirectWriter` (O_DIRECT where the filesystem takes it)."""
    with _transfer(source, target) as (client, fd, size):
        sha = hashlib.sha256()
        offset = 0
        if window_mib is None:
            buffer = aligned_buffer(CHUNK)
            writer = DirectWriter(fd, direct)
            while count := client.recv_into(buffer, CHUNK, socket.MSG_WAITALL):
                writer.write(buffer[:count], offset)
                sha.update(buffer[:count])
                offset += count
            writer.close()
        else:
            window = window_mib * MiB
            while offset < size:
                length = min(window, size - offset)
                mapping = mmap.mmap(fd, length, flags=mmap.MAP_SHARED, offset=offset)
                view = memoryview(mapping)
                at = 0
                while at < length and (count := client.recv_into(view[at : at + CHUNK])):
                    sha.update(view[at : at + count])
                    at += count
                view.release()
                mapping.close()
                offset += at
        assert offset == size


def spliced(source: Path, target: Path, hash_from: str) -> None:
    """One 1 GiB transfer over loopback into `target` by splice (socket -> pipe -> file: the only
    copy is into the page cache), then sha256 of each spliced stretch from the file, read back
    with pread or from a mapping."""
    pipe_out, pipe_in = os.pipe()
    try:
        fcntl.fcntl(pipe_in, fcntl.F_SETPIPE_SZ, PIPE)
        with _transfer(source, target) as (client, fd, size):
            sha = hashlib.sha256()
            buffer = memoryview(bytearray(STRETCH))
            offset = hashed = 0
            while offset < size:
                moved = os.splice(client.fileno(), pipe_in, min(PIPE, size - offset))
                if not moved:
                    break
                while moved:
                    count = os.splice(pipe_out, fd, moved, offset_dst=offset)
                    moved -= count
                    offset += count
                if offset - hashed >= STRETCH or offset == size:
                    length = offset - hashed
                    if hash_from == "pread":
                        got = os.preadv(fd, [buffer[:length]], hashed)
                        sha.update(buffer[:got])
                    else:
                        start = hashed - hashed % mmap.ALLOCATIONGRANULARITY
                        mapping = mmap.mmap(
                            fd, offset - start, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=start
                        )
                        with memoryview(mapping) as view:
                            sha.update(view[hashed - start :])
                        mapping.close()
                    hashed = offset
            assert hashed == size
    finally:
        os.close(pipe_in)
        os.close(pipe_out)


def written(target: Path, threads: int, locked: bool) -> None:
    """1 GiB of 4 MiB pieces into one allocated tmpfs file, by `threads` threads at once."""
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.posix_fallocate(fd, 0, GiB)
    lock = threading.Lock()
    pieces = [bytearray(os.urandom(PIECE)) for _ in range(4)]

    def write(first: int) -> None:
        for index in range(first, GiB // PIECE, threads):
            if locked:
                with lock:
                    os.pwrite(fd, pieces[index % 4], index * PIECE)
            else:
                os.pwrite(fd, pieces[index % 4], index * PIECE)

    workers = [threading.Thread(target=write, args=(first,)) for first in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    os.close(fd)
    target.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path("/dev/shm"), help="where the files go (a tmpfs by default)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-fill-variants-", dir=args.dir))
    source = work / "source"
    with source.open("wb") as handle:
        for _ in range(GiB // (64 * MiB)):
            handle.write(os.urandom(64 * MiB))
    target = work / "target"
    variants: dict[str, Callable[[], None]] = {
        "recv + pwrite": lambda: received(source, target, None),
        "recv + pwrite with O_DIRECT": lambda: received(source, target, None, direct=True),
        "recv into mmap, 4 MiB windows": lambda: received(source, target, 4),
        "recv into mmap, 64 MiB windows": lambda: received(source, target, 64),
        "splice, sha256 by pread": lambda: spliced(source, target, "pread"),
        "splice, sha256 from mmap": lambda: spliced(source, target, "mmap"),
        "pwrite, one thread": lambda: written(target, 1, locked=False),
        "pwrite, two threads at once": lambda: written(target, 2, locked=False),
        "pwrite, two threads, one lock": lambda: written(target, 2, locked=True),
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for round_no in range(args.rounds):
            for name in variants if round_no % 2 == 0 else reversed(list(variants)):
                before = cpu_seconds()
                variants[name]()
                results[name].append(cpu_seconds() - before)
    finally:
        source.unlink()
        work.rmdir()
    recv_base, write_base = median(results["recv + pwrite"]), median(results["pwrite, one thread"])
    rows = []
    for name, runs in results.items():
        base = write_base if name.startswith("pwrite") else recv_base
        rows.append((name, median(runs), f"{median(runs) / base:.2f}x"))
    table = Table([f"variant (1 GiB, {args.dir})", "CPU-s/GiB", "vs the first of its kind"], rows)
    write_result("fill_variants", {"rounds": args.rounds, "cpu_seconds": results}, [table])


if __name__ == "__main__":
    main()

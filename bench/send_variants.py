"""The floor under a warm hit and a piece upload: what sending a cached file to a loopback socket
costs the sending thread before any of the mirror's own code runs (issue 10's warm-hit and
piece-upload rows). 1 GiB file in the page cache (tmpfs), one reader thread draining the socket
with recv_into 1 MiB, CPU of the sending thread alone (`time.thread_time`) per GiB, interleaved
rounds, medians.

Variants:
- `sendfile, N MiB calls`: `os.sendfile` in calls of 2 MiB (nginx's `sendfile_max_chunk`) or
  64 MiB (the mirror's longest segment), the kernel's default send buffer;
- `sendfile, SO_SNDBUF M MiB`: the same with the send buffer set (fewer wake-ups, in theory);
- `send from memory`: `socket.send` of the file's bytes already in a buffer of this process
  (what serving a reader from the receive buffers would cost; the reading is not counted);
- `pread + send`: each piece read from the page cache into one reused buffer, then sent: the
  copy sendfile avoids, made on purpose.

On loopback the sender's CPU includes the TCP receive processing of the other end (softirq runs
on the sending thread), which is why this is a floor for our process and for nginx alike.

    .venv/bin/python bench/send_variants.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import mmap
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _common import GiB, MiB, Table, median, write_result


def _drain(listener: socket.socket, spent: list[float]) -> None:
    connection, _ = listener.accept()
    buffer = memoryview(bytearray(MiB))
    started = time.thread_time()
    with connection:
        while connection.recv_into(buffer):
            pass
    spent.append(time.thread_time() - started)


def sent(
    source: Path, call: int, sndbuf: int | None, from_memory: bool = False, by_pread: bool = False
) -> tuple[float, float]:
    """CPU-seconds of the sending thread and of the receiving one for the whole file."""
    size = source.stat().st_size
    with socket.create_server(("127.0.0.1", 0)) as listener:
        received: list[float] = []
        reader = threading.Thread(target=_drain, args=(listener, received), name="drain")
        reader.start()
        with socket.create_connection(listener.getsockname()) as sock:
            if sndbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            fd = os.open(source, os.O_RDONLY)
            try:
                mapping = mmap.mmap(fd, size, prot=mmap.PROT_READ, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE)
                held = bytearray(mapping) if from_memory else None  # read before the clock starts
                mapping.close()
                started = time.thread_time()
                offset = 0
                if by_pread:  # each piece read into one reused buffer, then sent
                    buffer = memoryview(bytearray(call))
                    while offset < size:
                        count = os.preadv(fd, [buffer], offset)
                        done = 0
                        while done < count:
                            done += sock.send(buffer[done:count])
                        offset += count
                elif held is not None:
                    view = memoryview(held)
                    while offset < size:
                        offset += sock.send(view[offset : offset + call])
                else:
                    while offset < size:
                        offset += os.sendfile(sock.fileno(), fd, offset, min(call, size - offset))
                spent = time.thread_time() - started
            finally:
                os.close(fd)
        reader.join()
    return spent, received[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-send-variants-", dir="/dev/shm"))
    source = work / "source"
    with source.open("wb") as handle:
        for _ in range(GiB // (64 * MiB)):
            handle.write(os.urandom(64 * MiB))
    variants: dict[str, Callable[[], tuple[float, float]]] = {
        "sendfile, 2 MiB calls": lambda: sent(source, 2 * MiB, None),
        "sendfile, 64 MiB calls": lambda: sent(source, 64 * MiB, None),
        "sendfile, 64 MiB calls, SO_SNDBUF 1 MiB": lambda: sent(source, 64 * MiB, MiB),
        "sendfile, 64 MiB calls, SO_SNDBUF 4 MiB": lambda: sent(source, 64 * MiB, 4 * MiB),
        "sendfile, 64 MiB calls, SO_SNDBUF 16 MiB": lambda: sent(source, 64 * MiB, 16 * MiB),
        "send from memory, 1 MiB calls": lambda: sent(source, MiB, None, from_memory=True),
        "pread + send, 256 KiB buffer": lambda: sent(source, 256 * 1024, None, by_pread=True),
        "pread + send, 1 MiB buffer": lambda: sent(source, MiB, None, by_pread=True),
        "pread + send, 4 MiB buffer": lambda: sent(source, 4 * MiB, None, by_pread=True),
        "pread + send, 16 MiB buffer": lambda: sent(source, 16 * MiB, None, by_pread=True),
        "send from memory, 4 MiB calls": lambda: sent(source, 4 * MiB, None, from_memory=True),
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    receiver: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for round_no in range(args.rounds):
            for name in variants if round_no % 2 == 0 else reversed(list(variants)):
                sender_cpu, receiver_cpu = variants[name]()
                results[name].append(sender_cpu)
                receiver[name].append(receiver_cpu)
    finally:
        source.unlink()
        work.rmdir()
    base = median(results["sendfile, 64 MiB calls"])
    rows = [
        (name, median(runs), f"{median(runs) / base:.2f}x", median(receiver[name])) for name, runs in results.items()
    ]
    table = Table(
        [
            "variant (1 GiB from tmpfs to loopback)",
            "sender CPU-s/GiB",
            "vs sendfile, 64 MiB calls",
            "receiver CPU-s/GiB",
        ],
        rows,
    )
    write_result(
        "send_variants", {"rounds": args.rounds, "cpu_seconds": results, "receiver_cpu_seconds": receiver}, [table]
    )


if __name__ == "__main__":
    main()
